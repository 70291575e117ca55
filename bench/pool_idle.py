"""What a warm pool costs while it waits: memory per idle pod, and how fast a pool refills.

In one namespace that opted in to warm pools, one Python (python3.11) and one Node.js
(nodejs22) Function make one pool each. In the same run:

* **memory** — the resident memory (the pod cgroup's ``total_rss``, read on the node: this
  bench runs on the local cluster's only node) of every idle pool pod, against a pod of the
  same Function started the normal way (kept at one replica, after one request);
* **refill** — the pools' size raised from 0 to ``--size`` (the namespace annotation): the
  seconds until that many idle pods of each pool are ready, so pods per second, against the
  same number of pods of a plain Deployment of the Python runtime's image scaled from 0 in the
  same run.

    .venv/bin/python bench/pool_idle.py --size 5

Expects kfn installed (``make up``). Everything lives in one namespace deleted at the end;
all traffic goes to cluster addresses on this machine.
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
import pool_contention  # noqa: E402
from kfncluster import fnimage  # noqa: E402

RUNTIMES = {"python3.11": "pool-python", "nodejs22": "pool-node"}


def idle_pods(api: client.CoreV1Api, ns: str, runtime: str) -> list[client.V1Pod]:
    pods = api.list_namespaced_pod(ns, label_selector="kfn.dev/pool-state=idle").items
    return [
        p
        for p in pods
        if (p.metadata.annotations or {}).get("kfn.dev/pool-runtime") == runtime
        and cold_start.pod_ready(p)
    ]


def refill(api: client.CoreV1Api, ns: str, size: int) -> float:
    """Seconds from asking for ``size`` idle pods per pool to all of them ready."""
    kubectl("annotate", "namespace", ns, f"kfn.dev/warm-pool-size={size}", "--overwrite")
    started = time.monotonic()
    cold_start.wait_until(
        lambda: all(len(idle_pods(api, ns, r)) >= size for r in RUNTIMES),
        f"{size} idle pods per pool",
        timeout=600,
    )
    return time.monotonic() - started


def plain_start(
    api: client.CoreV1Api, apps: client.AppsV1Api, ns: str, image: str, size: int
) -> float:
    """Seconds for ``size`` pods of a plain Deployment of ``image`` to be ready from 0."""
    body = cold_start.deployment("plain", image, dict(cold_start.RUNTIME_ENV))
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(body))
    cold_start.warm(api, ns, "plain")  # its image on the node, as the pool's already is
    started = time.monotonic()
    apps.patch_namespaced_deployment_scale("plain", ns, {"spec": {"replicas": size}})
    cold_start.wait_until(
        lambda: (
            sum(
                cold_start.pod_ready(p)
                for p in api.list_namespaced_pod(ns, label_selector="app=plain").items
            )
            >= size
        ),
        f"{size} plain pods",
        timeout=600,
    )
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=5)
    parser.add_argument("--namespace", default="kfn-system", help="where kfn runs")
    args = parser.parse_args()
    api_client = config.new_client_from_config(config_file=str(KUBECONFIG))  # type: ignore[no-untyped-call]
    api, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    service = kubectl_json("-n", args.namespace, "get", "service", "kfn-invoke")
    address = (service["spec"]["clusterIP"], 80)
    ns = f"bench-pool-idle-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", ns)
    try:
        cold_start.opt_in(ns, args.namespace, 0)
        for name in RUNTIMES.values():
            # pool_contention's small CPU request: ten pool pods of the default request
            # would not fit beside the cluster's own on this 2-core node.
            spec = {
                **cold_start.POOL_HANDLERS[name],
                "resources": pool_contention.SPEC["resources"],
                "scale": {"minReplicas": 1},
            }
            path = cold_start.deploy_function(ns, address, name, spec)
            cold_start.wait_until(lambda n=name: cold_start.function_ready(ns, n), name, 1200)
            asyncio.run(httpload.request(*address, "POST", path, b"{}", headers=bearer()))
        pool_seconds = refill(api, ns, args.size)
        time.sleep(5)  # the runtimes settle after their start
        print(f"\n{'':<12} {'idle pool pod RSS':>24} {'function pod RSS':>24}")
        for runtime, name in RUNTIMES.items():
            pooled = [m for p in idle_pods(api, ns, runtime) if (m := pool_contention.rss_mib(p))]
            selector = f"kfn.dev/function={name},app.kubernetes.io/component=function"
            own = [
                m
                for p in api.list_namespaced_pod(ns, label_selector=selector).items
                if (m := pool_contention.rss_mib(p))
            ]
            print(
                f"{runtime:<12} {statistics.median(pooled):>14.1f} MiB (n={len(pooled)})"
                f" {statistics.median(own) if own else float('nan'):>14.1f} MiB (n={len(own)})"
            )
        # The Python runtime's image with a trivial handler (bench/cold_start.py's runtime
        # floor): the pod a pool pod is, started by a plain Deployment.
        image = fnimage.push_python_function(
            "bench/cold-start", "v1", {"app.py": cold_start.HANDLER}
        )
        plain_seconds = plain_start(api, apps, ns, image, args.size)
    finally:
        kubectl("delete", "namespace", ns, "--wait=false")
    pods = args.size * len(RUNTIMES)
    pool_rate, plain_rate = pods / pool_seconds, args.size / plain_seconds
    print(
        f"\nrefill: {pods} pool pods ready in {pool_seconds:.1f} s = {pool_rate:.2f} pods/s;"
        f" {args.size} plain pods in {plain_seconds:.1f} s = {plain_rate:.2f} pods/s"
        f" (pool {pool_rate / plain_rate:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
