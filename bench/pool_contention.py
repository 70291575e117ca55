"""Cold starts from a warm pool under contention: many functions at zero invoked at once.

``--functions`` Python Functions (same runtime and resources, so one pool of that many pods)
in a namespace that opted in to warm pools. Each round waits until every function is at zero
with no pod of its own and the pool holds an idle ready pod for each, then:

* **one at a time** — each function invoked alone, in turn (the baseline of the same run);
* **all at once** — every function invoked in the same instant.

Each answer names the pod that served it; a request served by anything but a pool pod is
counted as a fallback. Prints p50, p95 and p95/p50 of both. It also prints what the pool costs
while it waits: the resident memory of each idle pool pod (its pod cgroup's ``total_rss``, read
on the node: this bench runs on the local cluster's one node) against a function pod of the
same runtime, and how fast the pool refills after a round all at once (pods per second)
against the functions' own pods the same round started. Target: all at once,
p95 <= 2x p50 (Fission's pool manager's p95 grew 3.85x while another function's burst warmed:
fission/fission#3623).

    .venv/bin/python bench/pool_contention.py --functions 20 --rounds 3

Expects kfn installed with ``warmPools.enabled`` (``make up`` does). Everything lives in one
namespace deleted at the end; all traffic goes to cluster addresses on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import statistics
import sys
import time
import uuid

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [
    str(REPO / "bench"),
    str(REPO),
    str(REPO / "operator"),
    str(REPO / "hack" / "cluster"),
]

from kubernetes import client, config  # noqa: E402
from tests.cluster import httpload  # noqa: E402
from tests.cluster.invoking import bearer  # noqa: E402
from tests.cluster.kubeutil import KUBECONFIG, kubectl, kubectl_json  # noqa: E402

import cold_start  # noqa: E402
import pod_start  # noqa: E402

SPEC = {
    "runtime": "python3.11",
    "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}},
    "source": cold_start.POOL_HANDLERS["pool-python"]["source"],
}


CGROUP = pathlib.Path("/sys/fs/cgroup/memory/kfn-cluster/kubepods")


def rss_mib(pod: client.V1Pod) -> float | None:
    """The pod's resident memory from its cgroup on this node (cgroup v1), in MiB."""
    for stat in [*CGROUP.glob(f"*/pod{pod.metadata.uid}/memory.stat"),
                 *CGROUP.glob(f"pod{pod.metadata.uid}/memory.stat")]:  # fmt: skip
        for line in stat.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "total_rss":
                return int(value) / 2**20
    return None


def _pods(api: client.CoreV1Api, ns: str, selector: str) -> list[client.V1Pod]:
    return [
        p
        for p in api.list_namespaced_pod(ns, label_selector=selector).items
        if cold_start.pod_ready(p)
    ]


def _refill(api: client.CoreV1Api, ns: str, size: int) -> tuple[float, float]:
    """Seconds until the pool holds ``size`` ready idle pods again, and until each of the
    ``size`` functions has had its own pod ready (both started by the round just ended; a
    function's pod may go again before the last one is up, so each is counted once seen)."""
    started = time.monotonic()
    pool = own = 0.0
    seen: set[str] = set()
    while not (pool and own) and time.monotonic() - started < 300:
        now = time.monotonic() - started
        if not pool and len(_pods(api, ns, "kfn.dev/pool-state=idle")) >= size:
            pool = now
        for pod in _pods(api, ns, "app.kubernetes.io/component=function"):
            seen.add((pod.metadata.labels or {}).get("kfn.dev/function", ""))
        if not own and len(seen) >= size:
            own = now
        time.sleep(0.1)
    return pool, own


def _settled(api: client.CoreV1Api, ns: str, names: list[str]) -> None:
    """Waits until every function is at zero with a full pool, twice 2.5 s apart: a pod just
    specialised is labelled for its function only once the activator is quiet a moment."""
    for _ in range(2):
        cold_start.wait_until(
            lambda: _at_zero_with_pool(api, ns, names), "every function at zero, pool full", 300
        )
        time.sleep(2.5)
    cold_start.wait_until(
        lambda: _at_zero_with_pool(api, ns, names), "every function at zero, pool full", 300
    )


def _at_zero_with_pool(api: client.CoreV1Api, ns: str, names: list[str]) -> bool:
    pods = api.list_namespaced_pod(ns).items
    busy = {
        (p.metadata.labels or {}).get("kfn.dev/function")
        for p in pods
        if (p.metadata.labels or {}).get("app.kubernetes.io/component")
        in ("function", "function-pool")
    }
    idle = [
        p
        for p in pods
        if (p.metadata.labels or {}).get("kfn.dev/pool-state") == "idle" and cold_start.pod_ready(p)
    ]
    return not busy.intersection(names) and len(idle) >= len(names)


async def _invoke(address: tuple[str, int], path: str) -> tuple[float, bool]:
    response = await httpload.request(*address, "POST", path, b"{}", headers=bearer())
    if response.status != 200:
        raise SystemExit(f"{path} answered {response.status}: {response.body!r}")
    return response.seconds, str(json.loads(response.body)["pod"]).startswith("kfn-pool-")


async def _all_at_once(address: tuple[str, int], paths: list[str]) -> list[tuple[float, bool]]:
    return list(await asyncio.gather(*(_invoke(address, path) for path in paths)))


def _report(what: str, results: list[tuple[float, bool]]) -> tuple[float, float]:
    values = [seconds for seconds, _ in results]
    p50, p95 = (pod_start.percentile(values, q) for q in (50, 95))
    fallbacks = sum(1 for _, pooled in results if not pooled)
    print(
        f"{what:<14} p50 {p50 * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms   "
        f"p95/p50 {p95 / p50:4.2f}   "
        f"({len(values)} requests, {fallbacks} served by the normal path)"
    )
    return p50, p95


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--functions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--namespace", default="kfn-system", help="where kfn runs")
    args = parser.parse_args()
    api = client.CoreV1Api(config.new_client_from_config(config_file=str(KUBECONFIG)))  # type: ignore[no-untyped-call]
    service = kubectl_json("-n", args.namespace, "get", "service", "kfn-invoke")
    address = (service["spec"]["clusterIP"], 80)
    ns = f"bench-pools-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", ns)
    names = [f"f{i:02d}" for i in range(args.functions)]
    alone: list[tuple[float, bool]] = []
    together: list[tuple[float, bool]] = []
    memory: dict[str, list[float]] = {}
    refills: list[tuple[float, float]] = []
    try:
        cold_start.opt_in(ns, args.namespace, args.functions)
        paths = [cold_start.deploy_function(ns, address, name, SPEC) for name in names]
        for name in names:
            cold_start.wait_until(
                lambda n=name: cold_start.function_ready(ns, n), f"{name} Ready", timeout=1200
            )
        for round_ in range(1, args.rounds + 1):
            for path in paths:
                _settled(api, ns, names)
                alone.append(asyncio.run(_invoke(address, path)))
            _settled(api, ns, names)
            if round_ == 1:
                memory["pool"] = [
                    m for p in _pods(api, ns, "kfn.dev/pool-state=idle") if (m := rss_mib(p))
                ]
            started = time.monotonic()
            together.extend(asyncio.run(_all_at_once(address, paths)))
            print(
                f"round {round_}: {args.functions} at once answered within "
                f"{(time.monotonic() - started) * 1000:.0f} ms",
                flush=True,
            )
            pool_s, own_s = _refill(api, ns, args.functions)
            refills.append((pool_s, own_s))
            if round_ == 1:
                own = _pods(api, ns, "app.kubernetes.io/component=function")
                memory["own"] = [m for p in own if (m := rss_mib(p))]
    finally:
        kubectl("delete", "namespace", ns, "--wait=false")
    print()
    _report("one at a time", alone)
    p50, p95 = _report("all at once", together)
    print(f"target (all at once: p95 <= 2x p50): {'met' if p95 <= 2 * p50 else 'NOT met'}")
    for what, values in (
        ("idle pool pod", memory.get("pool")),
        ("function pod", memory.get("own")),
    ):
        if values:
            print(
                f"{what:<14} resident memory median {statistics.median(values):.1f} MiB "
                f"(n={len(values)})"
            )
    for pool_s, own_s in refills:
        if not (pool_s and own_s):
            print(f"refill: not complete within 300 s (pool {pool_s:.1f} s, own {own_s:.1f} s)")
            continue
        print(
            f"refill: {args.functions} pool pods ready in {pool_s:.1f} s = "
            f"{args.functions / pool_s:.2f} pods/s; the functions' own {args.functions} pods "
            f"in {own_s:.1f} s = {args.functions / own_s:.2f} pods/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
