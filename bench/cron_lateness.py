"""Cron fire lateness: from a tick's scheduled instant to the handler running, with a baseline.

Two schedules run side by side on the local cluster against one warm function (kept at one
replica, so pod starts do not count):

* **kfn** — a cron Trigger ``@every 1s`` served by the chart's cron workers (leader
  election, the Trigger's delivery policy, a synchronous invoke through the activator).
* **baseline** — a loop in this process that sleeps until each whole second and invokes the
  same function through the same activator Service: the least any scheduler sending through
  the activator could do.

The handler prints when it ran and which tick (the event's ``time``, or the baseline's
payload) it was for; both are read from the function's logs, on the node's one clock.
Prints p50/p99/max lateness of each and kfn's p50 and p99 over the baseline's.
Target: every tick within 1 s of its schedule.

    .venv/bin/python bench/cron_lateness.py --ticks 30

Expects kfn installed (``make up``). Everything it creates lives in one namespace that is
deleted at the end. All traffic goes to cluster addresses on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import pathlib
import re
import sys
import threading
import time
import uuid

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [
    str(REPO / "bench"),
    str(REPO),
    str(REPO / "operator"),
    str(REPO / "hack" / "cluster"),
]

from tests.cluster import httpload  # noqa: E402
from tests.cluster.invoking import bearer  # noqa: E402
from tests.cluster.kubeutil import (  # noqa: E402
    apply,
    kubectl,
    kubectl_json,
    python_function,
    wait_for,
)

import pod_start  # noqa: E402
from kfncluster import fnimage  # noqa: E402

HANDLER = """\
import json, time


def handler(event, context):
    seen = time.time()
    tick = event.get("baselineTick") if isinstance(event, dict) else None
    print("LATE " + json.dumps({"time": event.get("time"), "baseline": tick, "seen": seen}),
          flush=True)
    return {}
"""
SEEN = re.compile(r"LATE (\{.*\})")


def baseline(address: tuple[str, int], path: str, ticks: int, stop: threading.Event) -> None:
    """Invokes the function at each whole second, as a minimal scheduler would."""
    for _ in range(ticks):
        tick = float(int(time.time()) + 1)
        stop.wait(max(0.0, tick - time.time()))
        if stop.is_set():
            return
        body = json.dumps({"baselineTick": tick}).encode()
        asyncio.run(httpload.request(*address, "POST", path, body, headers=bearer()))


def report(name: str, values: list[float]) -> tuple[float, float]:
    p50, p99 = (pod_start.percentile(values, q) for q in (50, 99))
    print(
        f"{name:<10} p50 {p50 * 1000:6.1f} ms   p99 {p99 * 1000:6.1f} ms   "
        f"max {max(values) * 1000:6.1f} ms   (n={len(values)})"
    )
    return p50, p99


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=30)
    parser.add_argument("--namespace", default="kfn-system", help="where kfn runs")
    args = parser.parse_args()

    service = kubectl_json("-n", args.namespace, "get", "service", "kfn-invoke")
    address = (service["spec"]["clusterIP"], 80)
    image = fnimage.push_python_function("bench/cron-lateness", "v1", {"app.py": HANDLER})
    ns = f"bench-cron-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", ns)
    path = f"/_kfn/functions/{ns}/late/invoke"
    try:
        python_function(ns, "late", image, scale={"minReplicas": 1})

        def answers() -> bool:
            answer = httpload.request(*address, "POST", path, b"{}", headers=bearer())
            return asyncio.run(answer).status == 200

        wait_for("the function to answer", answers, timeout=120)
        print(f"function warm; firing {args.ticks} ticks of each schedule", flush=True)
        apply({
            "apiVersion": "kfn.dev/v1alpha1", "kind": "Trigger",
            "metadata": {"name": "every-second", "namespace": ns},
            "spec": {"functionRef": {"name": "late"}, "cron": {"schedule": "@every 1s"}},
        })  # fmt: skip
        stop = threading.Event()
        loop = threading.Thread(target=baseline, args=(address, path, args.ticks, stop))
        loop.start()
        loop.join()
        time.sleep(2)
        kubectl("-n", ns, "delete", "trigger", "every-second", "--wait=true")
        logs = kubectl("-n", ns, "logs", "-l", "kfn.dev/function=late", "--tail=-1")
    finally:
        kubectl("delete", "namespace", ns, "--wait=false")
    events = [json.loads(m.group(1)) for m in SEEN.finditer(logs)]
    kfn: list[float] = []
    base: list[float] = []
    for event in events:
        if event["baseline"] is not None:
            base.append(event["seen"] - event["baseline"])
        elif event["time"]:
            tick = datetime.datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
            kfn.append(event["seen"] - tick.timestamp())
    if len(kfn) < 3 or len(base) < 3:
        print(f"too few ticks seen (kfn {len(kfn)}, baseline {len(base)})")
        return 1
    kfn = kfn[1:]  # the first tick raced the Trigger's creation
    print()
    kfn50, kfn99 = report("kfn cron", kfn)
    base50, base99 = report("baseline", base)
    print(f"\nkfn over the baseline: p50 {kfn50 / base50:.2f}x, p99 {kfn99 / base99:.2f}x")
    met = max(kfn) <= 1.0
    print(f"target (every tick within 1 s): {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
