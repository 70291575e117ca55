"""500 Functions applied at once: time until all are Ready, and the operator's peak RSS.

Baseline, measured in the same run: the same children (ServiceAccount,
Service, Deployment at zero replicas) created straight through the API with
the same parallelism, until the Deployment controller has seen every one.
The ratio says what kfn's operator adds on top of what the API server and
controllers cost anyway. Targets: all Ready within 60 s; peak RSS ≤ 256 MiB.

    python bench/operator_scale.py --functions 500
"""

from __future__ import annotations

import argparse
import concurrent.futures
import pathlib
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator"), str(REPO / "hack" / "cluster")]

from kubernetes import client, config  # noqa: E402
from tests.cluster.kubeutil import KUBECONFIG, kubectl  # noqa: E402

from kfncluster import cluster as kcluster  # noqa: E402
from kfncluster import config as kconfig  # noqa: E402
from kfncluster import fnimage, install, kfnimage  # noqa: E402

HANDLER = "def handler(event, context):\n    return 'ok'\n"
THREADS = 16


def _parallel(work: list[Callable[[], Any]]) -> None:
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        for future in [pool.submit(w) for w in work]:
            future.result()


def _wait(what: str, done: Callable[[], int], total: int, timeout: float) -> float:
    t0 = time.monotonic()
    last = -1
    while True:
        count = done()
        if count != last:
            print(f"  {what}: {count}/{total} after {time.monotonic() - t0:.1f}s", flush=True)
            last = count
        if count >= total:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"{what}: only {count}/{total} after {timeout:.0f}s")
        time.sleep(0.5)


def baseline(api: client.ApiClient, image: str, n: int) -> float:
    """Children created directly: the cost of the objects themselves."""
    ns = f"bench-raw-{uuid.uuid4().hex[:6]}"
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespace({"metadata": {"name": ns}})
    labels = {"bench": "raw"}

    def make(i: int) -> None:
        name = f"f{i}"
        meta = {"name": name, "labels": {**labels, "fn": name}}
        core.create_namespaced_service_account(ns, {"metadata": meta})
        core.create_namespaced_service(
            ns,
            {
                "metadata": meta,
                "spec": {"selector": {"fn": name}, "ports": [{"port": 80, "targetPort": 8080}]},
            },
        )
        apps.create_namespaced_deployment(
            ns,
            {
                "metadata": meta,
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"fn": name}},
                    "template": {
                        "metadata": {"labels": {"fn": name}},
                        "spec": {"containers": [{"name": "function", "image": image}]},
                    },
                },
            },
        )

    t0 = time.monotonic()
    _parallel([lambda i=i: make(i) for i in range(n)])

    def observed() -> int:
        items = apps.list_namespaced_deployment(ns).items
        return sum(1 for d in items if (d.status.observed_generation or 0) >= d.metadata.generation)

    _wait("raw Deployments observed", observed, n, 300)
    elapsed = time.monotonic() - t0
    core.delete_namespace(ns)
    return elapsed


def functions(api: client.ApiClient, image: str, n: int) -> float:
    ns = f"bench-fn-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    core.create_namespace({"metadata": {"name": ns}})

    def make(i: int) -> None:
        custom.create_namespaced_custom_object(
            "kfn.dev",
            "v1alpha1",
            ns,
            "functions",
            {
                "apiVersion": "kfn.dev/v1alpha1",
                "kind": "Function",
                "metadata": {"name": f"f{i}"},
                "spec": {
                    "runtime": "python3.11",
                    "handler": "app.handler",
                    "source": {"image": image},
                    "scale": {"minReplicas": 0},
                },
            },
        )

    t0 = time.monotonic()
    _parallel([lambda i=i: make(i) for i in range(n)])

    def ready() -> int:
        items = custom.list_namespaced_custom_object("kfn.dev", "v1alpha1", ns, "functions")[
            "items"
        ]
        count = 0
        for fn in items:
            status = fn.get("status", {})
            conds = {c["type"]: c["status"] for c in status.get("conditions", [])}
            if (
                conds.get("Ready") == "True"
                and status.get("observedGeneration") == fn["metadata"]["generation"]
            ):
                count += 1
        return count

    _wait("Functions Ready", ready, n, 600)
    elapsed = time.monotonic() - t0
    kubectl("delete", "namespace", ns, "--wait=false")
    return elapsed


def operator_peak_rss_mib() -> float:
    status = kubectl(
        "-n", install.NAMESPACE, "exec", "deploy/kfn-operator", "--", "cat", "/proc/1/status"
    )
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in the operator's /proc/1/status")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--functions", type=int, default=500)
    parser.add_argument("--reinstall", action="store_true", help="build and install kfn first")
    args = parser.parse_args()
    paths = kconfig.Paths()
    if not kcluster.readiness("kube-apiserver", paths)[0]() and kcluster.up(paths) != 0:
        return 1
    if args.reinstall or not kubectl(
        "-n", install.NAMESPACE, "get", "deploy", "--ignore-not-found", "-o", "name"
    ):
        install.install_kfn(paths, kfnimage.build(paths))
    # A fresh operator, so its peak RSS is this run's.
    kubectl("-n", install.NAMESPACE, "rollout", "restart", "deploy/kfn-operator")
    kubectl("-n", install.NAMESPACE, "rollout", "status", "deploy/kfn-operator", "--timeout=120s")
    image = fnimage.push_python_function("bench/scale", "v1", {"app.py": HANDLER})
    api = config.new_client_from_config(config_file=str(KUBECONFIG))
    api.configuration.connection_pool_maxsize = THREADS

    print(f"baseline: {args.functions} x (ServiceAccount, Service, Deployment) created directly")
    raw = baseline(api, image, args.functions)
    rss_before = operator_peak_rss_mib()
    print(f"kfn: {args.functions} Functions applied at once")
    took = functions(api, image, args.functions)
    rss = operator_peak_rss_mib()
    print(
        f"\n{args.functions} Functions Ready in {took:.1f}s (target ≤ 60 s); "
        f"the same children created directly: {raw:.1f}s; ratio {took / raw:.2f}x\n"
        f"operator peak RSS {rss:.0f} MiB (target ≤ 256 MiB; {rss_before:.0f} MiB before the batch)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
