"""Cold start through the activator, next to the floors under it, measured in one run.

Three measurements on the local cluster, ``--trials`` each:

* **bare pod start** — ``bench/pod_start.py``'s approach: scale a plain Deployment of a
  tiny HTTP server from 0 to 1 and poll its pod IP every 10 ms (the scale is written
  with the API client, not a ``kubectl`` process, whose start would count otherwise).
* **runtime pod start** — the same with the function's own image (kfn's Python
  runtime and a trivial handler), polled at ``/_kfn/ready``: the floor a cold start
  through kfn could reach, since the runtime must start either way.
* **cold start through the activator** — a Function at zero replicas (no pod left),
  one ``POST /_kfn/functions/<ns>/<name>/invoke`` to the invoke Service's ClusterIP,
  timed from sending to the complete 200 response. It includes the poke to the
  autoscaler, the scale subresource write, the pod start, the activator's own
  readiness probing and the invocation.

* **cold start per runtime** — the same through the activator for a Function built by kfn
  from inline source on each runtime's image (``--runtimes``, by default every runtime the
  local cluster makes an image for): what the interpreter's own start adds.
* **cold start from a warm pool** (``--pools``) — the bench namespace opts in to warm pools
  (docs/warm-pools.md) and three Functions at zero are invoked once each trial: Python and
  Node.js with no dependencies, and Python with one (``requests``). Each trial waits until the
  function is at zero with no pod of its own, its previous pool pod gone and an idle pool pod
  ready, so every trial is a first request; the answer names the pod that served it, and a
  trial served by anything but a pool pod is counted as a fallback.

They run interleaved, trial by trial, so the machine's load weighs on them alike.
Prints every trial and p50/p99 of each, and the activator's margin over both floors.
Targets: p50 ≤ 1.0 s and ≤ 0.3 s above the bare pod-start floor.

    .venv/bin/python bench/cold_start.py --trials 20
    .venv/bin/python bench/cold_start.py --trials 10 --runtimes nodejs22 python3.13
    .venv/bin/python bench/cold_start.py --trials 5 --plot docs/img/cold-start.png
    .venv/bin/python bench/cold_start.py --trials 30 --runtimes --pools

With ``--plot PATH`` it also draws every path's trials (a row of dots per path) against the
two pod-start floors of the same run (grey rows; dashed lines at their medians), as a PNG.

Expects kfn installed (``make up``). Everything it creates lives in one namespace that
is deleted at the end. All traffic goes to cluster addresses on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import statistics
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable

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
from tests.cluster.kubeutil import KUBECONFIG, kubectl, kubectl_json, push_python_app  # noqa: E402

import plots  # noqa: E402
import pod_start  # noqa: E402
from kfncluster import fnimage, runtimeimages  # noqa: E402

HANDLER = "def handler(event, context):\n    return {'ok': True}\n"
NODE_HANDLER = "exports.handler = async () => ({ ok: true });\n"
#: The pool trials' handlers answer with the pod that served them.
POOL_HANDLERS = {
    "pool-python": {
        "runtime": "python3.11",
        "source": {"inline": {"files": [{"name": "app.py", "content": (
            "import socket\n\n\ndef handler(event, context):\n"
            "    return {'pod': socket.gethostname()}\n"
        )}]}},
    },
    "pool-node": {
        "runtime": "nodejs22",
        "source": {"inline": {"files": [{"name": "app.js", "content": (
            "const os = require('os');\n"
            "exports.handler = async () => ({ pod: os.hostname() });\n"
        )}]}},
    },
    "pool-requests": {
        "runtime": "python3.11",
        "dependencies": ["requests"],
        "source": {"inline": {"files": [{"name": "app.py", "content": (
            "import socket\n\nimport requests\n\n\ndef handler(event, context):\n"
            "    return {'pod': socket.gethostname(), 'requests': requests.__version__}\n"
        )}]}},
    },
}  # fmt: skip
#: The namespaced Role an admin opting a namespace in creates (docs/warm-pools.md).
POOL_ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "Role",
    "metadata": {"name": "kfn-warm-pool"},
    "rules": [
        {"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["patch", "delete"]},
    ],
}
RESTRICTED = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


#: What the operator sets for a function container (the runtime contract), for the runtime floor.
RUNTIME_ENV = {
    "KFN_FUNCTION_NAME": "runtime",
    "KFN_HANDLER": "app.handler",
    "_HANDLER": "app.handler",
    "KFN_TIMEOUT_MS": "30000",
    "KFN_CONCURRENCY": "1",
    "KFN_MEMORY_MB": "128",
}


def deployment(name: str, image: str, env: dict[str, str] | None = None) -> dict[str, object]:
    container: dict[str, object] = {
        "name": "app",
        "image": image,
        "ports": [{"containerPort": 8080}],
        "securityContext": RESTRICTED,
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 0, "containers": [container]},
            },
        },
    }


def warm(api: client.CoreV1Api, ns: str, name: str) -> None:
    """Start the Deployment once so its image is on the node: trials measure starts, not pulls."""
    kubectl("-n", ns, "scale", f"deployment/{name}", "--replicas=1")
    kubectl("-n", ns, "rollout", "status", f"deployment/{name}", "--timeout=120s")
    _scale_to_zero(api, ns, name)


def pod_start_trial(
    api: client.CoreV1Api, apps: client.AppsV1Api, ns: str, name: str, path: str
) -> float:
    """pod_start.py's measurement, scaling through the API: 0→1 until HTTP 200 at the pod IP.

    The scale is written with the API client rather than a ``kubectl`` process, whose own
    start (0.3 s and more on a busy machine) would otherwise count as pod start.
    """
    t0 = time.monotonic()
    apps.patch_namespaced_deployment_scale(name, ns, {"spec": {"replicas": 1}})
    elapsed = _wait_answer(api, ns, f"app={name}", path, t0)
    _scale_to_zero(api, ns, name)
    return elapsed


TRIAL_TIMEOUT = 60.0


def _wait_answer(api: client.CoreV1Api, ns: str, label: str, path: str, t0: float) -> float:
    while time.monotonic() - t0 < TRIAL_TIMEOUT:
        for pod in api.list_namespaced_pod(ns, label_selector=label).items:
            ip = pod.status.pod_ip if pod.status else None
            if not ip or (pod.metadata and pod.metadata.deletion_timestamp):
                continue
            try:
                with urllib.request.urlopen(f"http://{ip}:8080{path}", timeout=1) as resp:
                    if resp.status == 200:
                        return time.monotonic() - t0
            except OSError:
                pass
        time.sleep(0.01)
    raise SystemExit(f"no answer within {TRIAL_TIMEOUT}s")


def _scale_to_zero(api: client.CoreV1Api, ns: str, name: str) -> None:
    kubectl("-n", ns, "scale", f"deployment/{name}", "--replicas=0")
    while api.list_namespaced_pod(ns, label_selector=f"app={name}").items:
        time.sleep(0.1)


def deploy_function(ns: str, address: tuple[str, int], name: str, spec: dict[str, object]) -> str:
    """A Function at zero that scales back to zero one second after each request."""
    fn = {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"handler": "app.handler", "scale": {"idleTimeout": "1s"}, **spec},
    }
    kubectl("apply", "-f", "-", input=json.dumps(fn))
    path = f"/_kfn/functions/{ns}/{name}/invoke"
    wait_until(lambda: _known(address, path), f"the activators to know {name}", timeout=900)
    return path


def runtime_function(runtime: str) -> dict[str, object]:
    """The spec of a trivial handler on ``runtime``, built by kfn from inline source."""
    file = {"name": "app.py", "content": HANDLER}
    if not runtime.startswith("python"):
        file = {"name": "app.js", "content": NODE_HANDLER}
    return {"runtime": runtime, "source": {"inline": {"files": [file]}}}


def activator_trial(
    api: client.CoreV1Api, ns: str, name: str, path: str, address: tuple[str, int]
) -> float:
    """One invocation of the Function once it is at zero with no pod left."""
    label = f"kfn.dev/function={name},app.kubernetes.io/component=function"
    wait_until(
        lambda: (
            _replicas(ns, name) == 0 and not api.list_namespaced_pod(ns, label_selector=label).items
        ),
        f"{name} at zero with no pod left",
    )
    response = asyncio.run(httpload.request(*address, "POST", path, b"{}", headers=bearer()))
    if response.status != 200:
        raise SystemExit(f"cold invocation answered {response.status}: {response.body!r}")
    return response.seconds


def opt_in(ns: str, release_namespace: str, size: int) -> None:
    """The namespace asks for warm pools of ``size`` and grants the activator the Role."""
    kubectl("label", "namespace", ns, "kfn.dev/warm-pools=enabled", "--overwrite")
    kubectl("annotate", "namespace", ns, f"kfn.dev/warm-pool-size={size}", "--overwrite")
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(POOL_ROLE))
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "kfn-warm-pool"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "kfn-warm-pool",
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": "kfn-activator", "namespace": release_namespace}
        ],
    }
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(binding))


def _pool_pods(api: client.CoreV1Api, ns: str, selector: str) -> list[client.V1Pod]:
    return list(
        api.list_namespaced_pod(
            ns, label_selector=f"app.kubernetes.io/component=function-pool,{selector}"
        ).items
    )


def pod_ready(pod: client.V1Pod) -> bool:
    return pod.metadata.deletion_timestamp is None and any(
        c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or [])
    )


def settled(api: client.CoreV1Api, ns: str) -> bool:
    """No pod of the namespace is starting or stopping: the previous trial's aftermath (its
    function's own pod, its pool's refill, their scale-down) is over, so it does not take the
    2-core node's CPU from this trial."""
    for pod in api.list_namespaced_pod(ns).items:
        if pod.status.phase in ("Succeeded", "Failed"):
            continue
        if not pod_ready(pod):
            return False
    return True


def pool_trial(
    api: client.CoreV1Api, ns: str, name: str, path: str, address: tuple[str, int]
) -> tuple[float, bool]:
    """One first request of a Function at zero with an idle pool pod ready: the seconds to
    the complete answer, and whether a pool pod served it."""
    label = f"kfn.dev/function={name},app.kubernetes.io/component=function"
    wait_until(
        lambda: (
            _replicas(ns, name) == 0
            and not api.list_namespaced_pod(ns, label_selector=label).items
            and not _pool_pods(api, ns, f"kfn.dev/function={name}")
            and any(pod_ready(p) for p in _pool_pods(api, ns, "kfn.dev/pool-state=idle"))
            and settled(api, ns)
        ),
        f"{name} at zero with an idle pool pod ready",
    )
    time.sleep(1.0)  # the kubelet's clean-up of the pods that went (cgroups, networks) ends
    response = asyncio.run(httpload.request(*address, "POST", path, b"{}", headers=bearer()))
    if response.status != 200:
        raise SystemExit(f"pool invocation of {name} answered {response.status}: {response.body!r}")
    pod = str(json.loads(response.body).get("pod", ""))
    return response.seconds, pod.startswith("kfn-pool-")


def function_ready(ns: str, name: str) -> bool:
    conditions = (kubectl_json("-n", ns, "get", "function", name).get("status") or {}).get(
        "conditions"
    ) or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _replicas(ns: str, name: str) -> int:
    return int(kubectl_json("-n", ns, "get", "deployment", name)["spec"].get("replicas", 0))


def _known(address: tuple[str, int], path: str) -> bool:
    """Both activators route the function: GETs on the invoke API answer 405, not 404."""

    async def probe() -> bool:
        for _ in range(10):
            if (await httpload.request(*address, "GET", path, headers=bearer())).status != 405:
                return False
        return True

    return asyncio.run(probe())


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (AssertionError, OSError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def summary(name: str, values: list[float]) -> tuple[float, float]:
    p50, p99 = (pod_start.percentile(values, q) for q in (50, 99))
    print(
        f"{name:<34} p50 {p50 * 1000:6.0f} ms   p99 {p99 * 1000:6.0f} ms   "
        f"mean {statistics.mean(values) * 1000:6.0f} ms   (n={len(values)})"
    )
    return p50, p99


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--namespace", default="kfn-system", help="where kfn runs")
    parser.add_argument(
        "--runtimes",
        nargs="*",
        default=list(runtimeimages.IMAGES),
        help="runtimes whose cold start to time too (none: skip)",
    )
    parser.add_argument(
        "--pools",
        action="store_true",
        help="time cold starts from a warm pool too (needs warmPools.enabled in the chart)",
    )
    plots.add_argument(parser)
    return parser.parse_args()


def main() -> int:
    args = _parse_args()

    api_client = config.new_client_from_config(config_file=str(KUBECONFIG))  # type: ignore[no-untyped-call]
    api, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    service = kubectl_json("-n", args.namespace, "get", "service", "kfn-invoke")
    address = (service["spec"]["clusterIP"], 80)
    bare = push_python_app(
        "bench/pod-start", "v1", {"server.py": pod_start.SERVER}, ["python3", "server.py"]
    )
    image = fnimage.push_python_function("bench/cold-start", "v1", {"app.py": HANDLER})
    ns = f"bench-cold-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", ns)
    floor: list[float] = []
    runtime: list[float] = []
    cold: list[float] = []
    per_runtime: dict[str, list[float]] = {r: [] for r in args.runtimes}
    pooled: dict[str, list[float]] = {name: [] for name in POOL_HANDLERS} if args.pools else {}
    fallbacks: dict[str, int] = dict.fromkeys(pooled, 0)
    try:
        if args.pools:
            # Two: the two Python functions share a pool, each trial takes one pod of it.
            opt_in(ns, args.namespace, 2)
        for body in (deployment("bare", bare), deployment("runtime", image, RUNTIME_ENV)):
            kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(body))
        warm(api, ns, "bare")
        warm(api, ns, "runtime")
        path = deploy_function(
            ns, address, "cold", {"runtime": "python3.11", "source": {"image": image}}
        )
        # Each runtime's Function is built first (kfn's build Job), then timed from zero.
        runtime_paths = {
            r: deploy_function(ns, address, _name(r), runtime_function(r)) for r in args.runtimes
        }
        pool_paths = {
            name: deploy_function(ns, address, name, spec)
            for name, spec in POOL_HANDLERS.items()
            if name in pooled
        }
        for name in [*map(_name, args.runtimes), *pool_paths]:
            print(f"waiting for {name} to be built and Ready", flush=True)
            wait_until(
                lambda n=name: function_ready(ns, n),
                f"{name} built and Ready",
                timeout=1200,
            )
        # Interleaved, so that the machine's load weighs on them all alike.
        for trial in range(1, args.trials + 1):
            floor.append(pod_start_trial(api, apps, ns, "bare", "/"))
            runtime.append(pod_start_trial(api, apps, ns, "runtime", "/_kfn/ready"))
            cold.append(activator_trial(api, ns, "cold", path, address))
            for r, r_path in runtime_paths.items():
                per_runtime[r].append(activator_trial(api, ns, _name(r), r_path, address))
            for name, p_path in pool_paths.items():
                took, from_pool = pool_trial(api, ns, name, p_path, address)
                pooled[name].append(took)
                fallbacks[name] += not from_pool
            print(
                f"trial {trial:2d}: bare {floor[-1] * 1000:5.0f} ms   runtime "
                f"{runtime[-1] * 1000:5.0f} ms   activator {cold[-1] * 1000:5.0f} ms"
                + "".join(f"   {r} {v[-1] * 1000:5.0f} ms" for r, v in per_runtime.items())
                + "".join(f"   {n} {v[-1] * 1000:5.1f} ms" for n, v in pooled.items()),
                flush=True,
            )
    finally:
        kubectl("delete", "namespace", ns, "--wait=false")
    print()
    floor50, floor99 = summary("bare pod start (floor)", floor)
    runtime50, runtime99 = summary("runtime pod start", runtime)
    cold50, cold99 = summary("cold start through the activator", cold)
    for r, values in per_runtime.items():
        summary(f"cold start, {r} (built by kfn)", values)
    print(
        f"\nactivator over the bare floor:   p50 {(cold50 - floor50) * 1000:+.0f} ms, "
        f"p99 {(cold99 - floor99) * 1000:+.0f} ms, "
        f"ratio {cold50 / floor50:.2f}x at p50"
    )
    print(
        f"activator over the runtime pod:  p50 {(cold50 - runtime50) * 1000:+.0f} ms, "
        f"p99 {(cold99 - runtime99) * 1000:+.0f} ms"
    )
    met = cold50 <= 1.0 and cold50 - floor50 <= 0.3
    print(f"targets (p50 <= 1.0 s, <= 0.3 s above the floor): {'met' if met else 'NOT met'}")
    if pooled:
        pool_report(pooled, fallbacks, floor50, cold50)
    if args.plot:
        plot(args.plot, floor, runtime, cold, per_runtime)
    return 0


def pool_report(
    pooled: dict[str, list[float]], fallbacks: dict[str, int], floor50: float, cold50: float
) -> None:
    """The pool trials against the bare floor and the normal path of the same run."""
    print()
    for name, values in pooled.items():
        p50, _ = summary(f"from a warm pool, {name}", values)
        print(
            f"{'':<34} {p50 / floor50:.3f}x the bare floor, {p50 / cold50:.3f}x the normal "
            f"path at p50; {fallbacks[name]} of {len(values)} served by the normal path"
        )
    met = all(
        pod_start.percentile(pooled[n], 50) <= 0.05 and pod_start.percentile(pooled[n], 99) <= 0.25
        for n in ("pool-python", "pool-node")
    )
    print(
        "pool targets (python and node without dependencies: p50 <= 50 ms, p99 <= 250 ms): "
        + ("met" if met else "NOT met")
    )


def plot(
    path: pathlib.Path,
    floor: list[float],
    runtime: list[float],
    cold: list[float],
    per_runtime: dict[str, list[float]],
) -> None:
    """Every cold-start path's trials in ms, against the two pod-start floors of the run."""
    ms = {"activator, prebuilt image": [v * 1000 for v in cold]}
    ms |= {f"activator, {r}": [v * 1000 for v in values] for r, values in per_runtime.items()}
    plots.distribution(
        path,
        ms,
        floors={
            "bare pod start": [v * 1000 for v in floor],
            "runtime pod start": [v * 1000 for v in runtime],
        },
        title=f"Cold start through the activator vs pod start, {len(cold)} trials each",
        xlabel="ms from the request to the complete answer (floors: scale to HTTP 200)",
    )


def _name(runtime: str) -> str:
    """``cold-python313`` for python3.13: a Function name (DNS-1035)."""
    return "cold-" + runtime.replace(".", "")


if __name__ == "__main__":
    sys.exit(main())
