"""Cron ticks without cold starts: a function at zero woken a lead before each tick.

Two functions in one namespace, each at zero between ticks (``idleTimeout`` 10 s), each fired
every 30 s (``--period``), in the same run:

* **kfn cron** — a cron Trigger ``@every 30s``: the cron worker wakes the function a lead
  before each tick (learned from the function's measured cold starts) and fires the tick on
  time.
* **baseline** — a loop in this process that invokes the other function at each 30 s mark
  (offset by half a period, so the two never start pods at once), with no wake: every
  invocation is a cold start, what a cron tick cost before.

Counted per function by the activators' cold-start metric (``kfn_function_cold_starts_total``,
which counts a start its waiting request gave up on too), and the lateness of each tick from
its scheduled instant to the handler running (read from the function's log, on the node's
one clock). Target: zero cold starts over ``--ticks`` (20) ticks of the cron Trigger, and
its fire lateness in line with docs/benchmarks.md's warm figure (p50 2.2 ms).

    .venv/bin/python bench/cron_warm.py --ticks 20

Expects kfn installed (``make up``). Everything lives in one namespace deleted at the end;
all traffic goes to cluster addresses on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import pathlib
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
from tests.cluster.invoking import activator_metric, bearer  # noqa: E402
from tests.cluster.kubeutil import apply, kubectl, kubectl_json  # noqa: E402

import cold_start  # noqa: E402
import cron_lateness  # noqa: E402
import pod_start  # noqa: E402

# The handler prints when it ran and for which tick, as bench/cron_lateness.py's does.
HANDLER, SEEN = cron_lateness.HANDLER, cron_lateness.SEEN
SPEC = {
    "runtime": "python3.11",
    "source": {"inline": {"files": [{"name": "app.py", "content": HANDLER}]}},
    "scale": {"idleTimeout": "10s"},
}
COLD_STARTS = "kfn_function_cold_starts_total"


def cold_starts(ns: str, name: str) -> float:
    return activator_metric(COLD_STARTS, namespace=ns, function=name)


def baseline(
    address: tuple[str, int], path: str, period: float, ticks: int, stop: threading.Event
) -> None:
    """Invokes the function at each period's mark plus half a period, with no wake."""
    for _ in range(ticks):
        now = time.time()
        tick = (now // period + 1) * period + period / 2
        if tick - now > period:
            tick -= period
        stop.wait(max(0.0, tick - time.time()))
        if stop.is_set():
            return
        body = json.dumps({"baselineTick": tick}).encode()
        asyncio.run(httpload.request(*address, "POST", path, body, headers=bearer()))


def lateness(logs: str) -> tuple[list[float], list[float]]:
    """The cron ticks' and the baseline's lateness (seconds), from the handlers' lines."""
    cron: list[float] = []
    base: list[float] = []
    for match in SEEN.finditer(logs):
        event = json.loads(match.group(1))
        if event["baseline"] is not None:
            base.append(event["seen"] - event["baseline"])
        elif event["time"]:
            tick = datetime.datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
            cron.append(event["seen"] - tick.timestamp())
    return cron, base


def report(name: str, values: list[float], cold: float) -> None:
    p50, p99 = (pod_start.percentile(values, q) for q in (50, 99))
    print(
        f"{name:<10} lateness p50 {p50 * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms   "
        f"(n={len(values)}), cold starts {cold:.0f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--period", type=int, default=30, help="seconds between ticks")
    parser.add_argument("--namespace", default="kfn-system", help="where kfn runs")
    args = parser.parse_args()
    service = kubectl_json("-n", args.namespace, "get", "service", "kfn-invoke")
    address = (service["spec"]["clusterIP"], 80)
    ns = f"bench-cron-warm-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", ns)
    try:
        paths = {
            name: cold_start.deploy_function(ns, address, name, SPEC) for name in ("cron", "loop")
        }
        for name in paths:
            cold_start.wait_until(
                lambda n=name: cold_start.function_ready(ns, n), f"{name} Ready", 1200
            )
        before = {name: cold_starts(ns, name) for name in paths}
        apply({
            "apiVersion": "kfn.dev/v1alpha1", "kind": "Trigger",
            "metadata": {"name": "every", "namespace": ns},
            "spec": {
                "functionRef": {"name": "cron"},
                "cron": {"schedule": f"@every {args.period}s"},
            },
        })  # fmt: skip
        print(f"firing {args.ticks} ticks every {args.period}s of each", flush=True)
        stop = threading.Event()
        loop = threading.Thread(
            target=baseline, args=(address, paths["loop"], args.period, args.ticks, stop)
        )
        loop.start()
        # The Trigger's first tick is one period after it was made; one more for the last.
        # Each tick's pod is gone 10 s after it, so its lines are gathered while it runs.
        deadline = time.monotonic() + (args.ticks + 1) * args.period + 10
        lines: set[str] = set()
        while time.monotonic() < deadline:
            time.sleep(3)
            for name in paths:
                logs = kubectl(
                    "-n", ns, "logs", "-l", f"kfn.dev/function={name}", "--tail=-1", check=False
                )  # fmt: skip
                lines.update(line for line in logs.splitlines() if SEEN.search(line))
            if len(lateness("\n".join(lines))[0]) >= args.ticks and not loop.is_alive():
                break
        stop.set()
        kubectl("-n", ns, "delete", "trigger", "every", "--wait=true")
        after = {name: cold_starts(ns, name) for name in paths}
    finally:
        kubectl("delete", "namespace", ns, "--wait=false")
    cron, base = lateness("\n".join(lines))
    print()
    report("kfn cron", cron, after["cron"] - before["cron"])
    report("baseline", base, after["loop"] - before["loop"])
    met = after["cron"] - before["cron"] == 0 and len(cron) >= args.ticks
    print(f"target (zero cold starts over {args.ticks} ticks): {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
