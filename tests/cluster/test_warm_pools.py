"""Warm pools: a function at zero served by a pre-started pod specialised for it, which is
the pod the function would have had in every way a handler can see, serves only it, and is
replaced in its pool (docs/design/warm-pools.md).

Two namespaces: one that opted in (label, size annotation, the documented Role), one that did
not. Each Function is built from inline source, as pools take only built functions.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.invoking import invoke, invoke_address, known_to_every_activator
from tests.cluster.kubeutil import kubectl, kubectl_json, scratch_namespace, wait_at_zero, wait_for

pytestmark = pytest.mark.cluster

BUILD_TIMEOUT = 300

HANDLER = """\
import json, os, socket, subprocess, sys, urllib.request


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as exc:
        return "unreadable: " + exc.__class__.__name__


def _cgroup(v2, v1):
    # A cgroup limit of this container: cgroup v2's file, else v1's (the node decides).
    found = _read("/sys/fs/cgroup/" + v2)
    return found if not found.startswith("unreadable") else _read("/sys/fs/cgroup/" + v1)


def _writable(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return True
    except OSError:
        return False


def handler(event, context):
    event = event or {}
    if event.get("reach"):
        try:
            urllib.request.urlopen("http://%s:8080/_kfn/ready" % event["reach"], timeout=0.5)
            return {"reached": True}
        except Exception as exc:
            return {"reached": False, "error": repr(exc), "pod": socket.gethostname()}
    status = {}
    for line in _read("/proc/self/status").splitlines():
        name, _, value = line.partition(":")
        status[name] = value.strip()
    child = subprocess.run(
        [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
        capture_output=True, text=True, check=True,
    )
    return {
        "pod": socket.gethostname(),
        "ip": socket.gethostbyname(socket.gethostname()),
        "env": dict(os.environ),
        "child_env": json.loads(child.stdout),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": sorted(os.getgroups()),
        "cap_eff": status.get("CapEff"),
        "cap_prm": status.get("CapPrm"),
        "cap_bnd": status.get("CapBnd"),
        "no_new_privs": status.get("NoNewPrivs"),
        "seccomp": status.get("Seccomp"),
        "memory_max": _cgroup("memory.max", "memory/memory.limit_in_bytes"),
        "cpu_max": _cgroup("cpu.max", "cpu/cpu.cfs_quota_us") + " "
        + _cgroup("cpu.max", "cpu/cpu.cfs_period_us"),
        "token": os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token"),
        "root_writable": _writable("/etc/kfn-probe"),
        "tmp_writable": _writable("/tmp/kfn-probe"),
        "cwd": os.getcwd(),
        "function_name": context.function_name,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
"""


def _role(namespace: str) -> list[dict[str, Any]]:
    """The Role and RoleBinding docs/warm-pools.md tells the admin to create."""
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "kfn-warm-pool", "namespace": namespace},
            "rules": [
                {"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["patch", "delete"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "kfn-warm-pool", "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "kfn-warm-pool",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "kfn-activator", "namespace": "kfn-system"}
            ],
        },
    ]


def _apply(obj: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(obj))


@pytest.fixture(scope="module")
def pooled(kfn: str) -> Iterator[str]:
    with scratch_namespace("pools") as name:
        kubectl("label", "namespace", name, "kfn.dev/warm-pools=enabled")
        kubectl("annotate", "namespace", name, "kfn.dev/warm-pool-size=2")
        for obj in _role(name):
            _apply(obj)
        _apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "creds", "namespace": name},
                "stringData": {"password": "pa$$word-$(HOME)", "token": "t0k3n"},
            }
        )
        _apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "settings", "namespace": name},
                "data": {"MODE": "fast", "LEVEL": "3"},
            }
        )
        yield name


@pytest.fixture(scope="module")
def unpooled(kfn: str) -> Iterator[str]:
    with scratch_namespace("nopools") as name:
        yield name


@pytest.fixture(scope="module")
def door(kfn: str) -> tuple[str, int]:
    return invoke_address(kfn)


def _function(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "runtime": "python3.11",
            "handler": "app.handler",
            "source": {"inline": {"files": [{"name": "app.py", "content": HANDLER}]}},
            "resources": {
                "requests": {"cpu": "10m", "memory": "64Mi"},
                "limits": {"memory": "256Mi", "cpu": "500m"},
            },
            "scale": {"idleTimeout": "5s"},
            **spec,
        },
    }


def _conditions(namespace: str, name: str) -> dict[str, dict[str, Any]]:
    body = kubectl_json("-n", namespace, "get", "function", name)
    return {c["type"]: c for c in body.get("status", {}).get("conditions", [])}


def _deployed(namespace: str, name: str) -> None:
    def ready() -> bool:
        conditions = _conditions(namespace, name)
        build = conditions.get("BuildSucceeded", {})
        assert build.get("status") != "False", build.get("message")
        return conditions.get("Ready", {}).get("status") == "True"

    wait_for(f"Function {namespace}/{name} Ready", ready, timeout=BUILD_TIMEOUT, every=1)


def _pool_pods(namespace: str, state: str | None = None) -> list[dict[str, Any]]:
    selector = "app.kubernetes.io/component=function-pool"
    if state:
        selector += f",kfn.dev/pool-state={state}"
    return list(kubectl_json("-n", namespace, "get", "pods", "-l", selector)["items"])


def _ready(pod: dict[str, Any]) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def _idle_ready(namespace: str) -> list[str]:
    return [p["metadata"]["name"] for p in _pool_pods(namespace, "idle") if _ready(p)]


def _call(door: tuple[str, int], namespace: str, name: str, event: Any = None) -> dict[str, Any]:
    started = time.monotonic()
    response = asyncio.run(invoke(door, namespace, name, event))
    took = (time.monotonic() - started) * 1000
    assert response.status == 200, response.body[:500]
    body: dict[str, Any] = json.loads(response.body)
    body["took_ms"] = took
    return body


@pytest.fixture(scope="module")
def identity(pooled: str, door: tuple[str, int]) -> str:
    """A Function reading values from a Secret and a ConfigMap, deployed and at zero."""
    name = "identity"
    _apply(
        _function(
            pooled,
            name,
            env=[
                {"name": "PLAIN", "value": "a $(PLAIN) $$ value"},
                {
                    "name": "PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
                },
                {
                    "name": "MODE",
                    "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "MODE"}},
                },
            ],
            envFrom=[{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        )
    )
    _deployed(pooled, name)
    known_to_every_activator(door, pooled, name)
    wait_at_zero(pooled, name, timeout=120)
    return name


def test_a_namespace_that_opted_in_keeps_a_ready_pool_and_one_that_did_not_gets_none(
    pooled: str, unpooled: str, identity: str
) -> None:
    wait_for("a ready idle pool pod", lambda: _idle_ready(pooled), timeout=120)
    conditions = _conditions(pooled, identity)
    assert conditions["WarmPool"]["status"] == "True", conditions["WarmPool"]
    _apply(_function(unpooled, "lonely"))
    _deployed(unpooled, "lonely")
    warm = _conditions(unpooled, "lonely")["WarmPool"]
    assert warm["status"] == "False"
    assert warm["reason"] == "NamespaceNotOptedIn"
    assert "kfn.dev/warm-pools" in warm["message"]
    assert _pool_pods(unpooled) == []
    assert (
        kubectl_json(
            "-n", unpooled, "get", "replicasets", "-l", "app.kubernetes.io/component=function-pool"
        )["items"]
        == []
    )


def test_a_function_at_zero_is_served_by_a_pool_pod_that_is_the_pod_it_would_have_had(
    pooled: str, identity: str, door: tuple[str, int]
) -> None:
    before = wait_for("a ready idle pool pod", lambda: _idle_ready(pooled), timeout=120)
    cold = _call(door, pooled, identity)
    print(f"\nfirst request at zero answered by {cold['pod']} in {cold['took_ms']:.1f} ms")
    assert cold["pod"] in before, f"{cold['pod']} is not one of the idle pool pods {before}"

    # The Deployment's own pod takes over; the specialised pod goes.
    def own_pod_answers() -> dict[str, Any] | None:
        body = _call(door, pooled, identity)
        return body if body["pod"].startswith(f"{identity}-") else None

    normal = wait_for("the function's own pod to answer", own_pod_answers, timeout=60, every=0.5)
    wait_for(
        "the specialised pool pod to go",
        lambda: not any(p["metadata"]["name"] == cold["pod"] for p in _pool_pods(pooled)),
        timeout=60,
    )

    for body in (cold, normal):
        assert "KFN_POOL" not in body["env"]
    # Each pod has its own name, and its own log stream named after it (as each of Lambda's
    # execution environments has); everything else is the same.
    for body in (cold, normal):
        assert body["env"]["HOSTNAME"] == body["pod"]
        assert body["env"]["AWS_LAMBDA_LOG_STREAM_NAME"].endswith(f"[$LATEST]{body['pod']}")
    per_pod = ("HOSTNAME", "AWS_LAMBDA_LOG_STREAM_NAME")
    pool_env = {k: v for k, v in cold["env"].items() if k not in per_pod}
    normal_env = {k: v for k, v in normal["env"].items() if k not in per_pod}
    assert pool_env == normal_env
    assert {k: v for k, v in cold["child_env"].items() if k not in per_pod} == normal_env
    assert normal_env["PASSWORD"] == "pa$$word-$(HOME)"
    assert normal_env["MODE"] == "fast"
    assert normal_env["CFG_LEVEL"] == "3"
    assert normal_env["PLAIN"] == "a $(PLAIN) $$ value"
    for field in (
        "uid",
        "gid",
        "groups",
        "cap_eff",
        "cap_prm",
        "cap_bnd",
        "no_new_privs",
        "seccomp",
        "memory_max",
        "cpu_max",
        "token",
        "root_writable",
        "tmp_writable",
        "cwd",
        "function_name",
        "memory_limit_in_mb",
    ):
        assert cold[field] == normal[field], (
            f"{field}: pool {cold[field]!r}, own pod {normal[field]!r}"
        )
    assert cold["token"] is False
    assert cold["cap_eff"] == "0000000000000000"
    assert cold["seccomp"] == "2"
    assert cold["memory_max"] == str(256 * 2**20)
    assert cold["cpu_max"].split()[0] == "50000"  # 500m of a 100 ms period
    assert cold["root_writable"] is False


def test_the_pool_is_refilled_after_a_pod_is_taken(
    pooled: str, identity: str, door: tuple[str, int]
) -> None:
    wait_at_zero(pooled, identity, timeout=120)
    before = set(wait_for("a ready idle pool pod", lambda: _idle_ready(pooled), timeout=120))
    taken = _call(door, pooled, identity)["pod"]
    started = time.monotonic()
    assert taken in before

    def labelled() -> dict[str, Any] | None:
        pod: dict[str, Any] = kubectl_json("-n", pooled, "get", "pod", taken)
        labels = pod["metadata"]["labels"]
        return pod if labels.get("kfn.dev/pool-state") == "specialised" else None

    pod = wait_for("the taken pod labelled for its function", labelled, timeout=10, every=0.1)
    assert pod["metadata"]["labels"]["kfn.dev/function"] == identity
    owners = pod["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"], o["controller"]) for o in owners] == [
        ("Function", identity, True)
    ]
    refilled = wait_for(
        "a new ready idle pool pod",
        lambda: [p for p in _idle_ready(pooled) if p not in before],
        timeout=60,
    )
    print(f"\npool refilled with {refilled[0]} {time.monotonic() - started:.2f} s after the claim")


def test_a_second_function_never_reaches_a_pod_specialised_for_the_first(
    pooled: str, identity: str, door: tuple[str, int]
) -> None:
    other = "other"
    _apply(_function(pooled, other, env=[{"name": "WHO", "value": "other"}]))
    _deployed(pooled, other)
    known_to_every_activator(door, pooled, other)
    wait_at_zero(pooled, other, timeout=120)
    wait_at_zero(pooled, identity, timeout=120)
    wait_for("two ready idle pool pods", lambda: len(_idle_ready(pooled)) >= 2, timeout=120)
    first = _call(door, pooled, identity)
    # At once, while the first function's pool pod still serves it: the second function's
    # first request gets a pool pod of its own, and from there cannot reach the first's.
    second = _call(door, pooled, other, {"reach": first["ip"]})
    assert second["pod"] != first["pod"]
    assert second["pod"].startswith("kfn-pool-")
    assert second["reached"] is False, second
    # The first function's pool pod was still serving it then (not deleted yet): the reach
    # was refused by policy, not by a pod that had gone.
    alive = kubectl_json("-n", pooled, "get", "pod", first["pod"])
    assert alive["status"]["phase"] == "Running"
    for _ in range(20):
        body = _call(door, pooled, other)
        assert body["pod"] != first["pod"]
        assert body["function_name"] == other
        assert body["env"]["WHO"] == "other"
    # Nor an idle pool pod: only the activator may reach them.
    idle = wait_for("a ready idle pool pod", lambda: _idle_ready(pooled), timeout=60)
    ip = kubectl_json("-n", pooled, "get", "pod", idle[0])["status"]["podIP"]
    reached = _call(door, pooled, other, {"reach": ip})
    assert reached["reached"] is False, reached
