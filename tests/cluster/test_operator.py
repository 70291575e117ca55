"""The operator keeps each Function's children and status true, whatever happens around it."""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kfncluster import config, fnimage, install
from tests.cluster.kubeutil import kubectl, kubectl_json, scratch_namespace, wait_for

pytestmark = pytest.mark.cluster

HANDLER = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'ok'}\n"
OPERATOR = ("-n", install.NAMESPACE, "deploy/kfn-operator")


@pytest.fixture(scope="session")
def image(cluster: pathlib.Path) -> str:
    return fnimage.push_python_function("tests/operator", "v1", {"app.py": HANDLER})


@pytest.fixture
def namespace(kfn: str) -> Iterator[str]:
    with scratch_namespace("op") as name:
        yield name


def function(name: str, image: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name},
        "spec": {
            "runtime": "python3.11",
            "handler": "app.handler",
            "source": {"image": image},
            **spec,
        },
    }


def apply(namespace: str, *objects: dict[str, Any]) -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(doc))


def condition(fn: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in fn.get("status", {}).get("conditions", []) if c["type"] == type_), None)


def ready(namespace: str, name: str) -> dict[str, Any] | None:
    fn = kubectl_json("-n", namespace, "get", "function", name)
    cond = condition(fn, "Ready")
    current = fn.get("status", {}).get("observedGeneration") == fn["metadata"]["generation"]
    if cond and cond["status"] == "True" and current:
        return fn
    return None


def test_a_function_gets_its_children_and_reports_ready_for_its_current_generation(
    namespace: str, image: str
) -> None:
    apply(namespace, function("web", image, scale={"minReplicas": 1}))
    fn = wait_for("Function web Ready", lambda: ready(namespace, "web"), timeout=90)

    deployment = kubectl_json("-n", namespace, "get", "deployment", "web")
    service = kubectl_json("-n", namespace, "get", "service", "web")
    account = kubectl_json("-n", namespace, "get", "serviceaccount", "web")
    for child in (deployment, service, account):
        (owner,) = child["metadata"]["ownerReferences"]
        assert owner["kind"] == "Function"
        assert owner["uid"] == fn["metadata"]["uid"]
        assert owner["controller"] is True
    pod_spec = deployment["spec"]["template"]["spec"]
    assert pod_spec["automountServiceAccountToken"] is False
    assert pod_spec["serviceAccountName"] == "web"
    assert account["automountServiceAccountToken"] is False
    assert pod_spec["containers"][0]["image"] == image
    assert pod_spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert fn["status"]["image"] == image
    # The invoke door's URL: a caller needs a token RBAC allows to invoke.
    assert fn["status"]["url"] == (
        f"http://kfn-invoke.{install.NAMESPACE}.svc.cluster.local"
        f"/_kfn/functions/{namespace}/web/invoke"
    )
    assert condition(fn, "Active")["status"] == "True"  # type: ignore[index]
    fields = kubectl_json("-n", namespace, "get", "deployment", "web", "--show-managed-fields")
    managers = {m["manager"] for m in fields["metadata"]["managedFields"]}
    assert {"kfn-operator", "kfn-initial-scale"} <= managers


def test_a_function_at_zero_replicas_is_ready_but_not_active(namespace: str, image: str) -> None:
    apply(namespace, function("idle", image))
    fn = wait_for("Function idle Ready", lambda: ready(namespace, "idle"), timeout=60)
    active = condition(fn, "Active")
    assert active is not None
    assert (active["status"], active["reason"]) == ("False", "ScaledToZero")
    assert kubectl_json("-n", namespace, "get", "deployment", "idle")["spec"]["replicas"] == 0


def test_deleted_and_edited_children_are_restored(namespace: str, image: str) -> None:
    apply(namespace, function("heal", image))
    wait_for("Function heal Ready", lambda: ready(namespace, "heal"), timeout=60)
    uid = kubectl_json("-n", namespace, "get", "deployment", "heal")["metadata"]["uid"]

    kubectl("-n", namespace, "delete", "deployment", "heal")
    wait_for(
        "a new Deployment heal",
        lambda: (
            kubectl_json("-n", namespace, "get", "deployment", "heal")["metadata"]["uid"] != uid
        ),
        timeout=30,
    )
    kubectl("-n", namespace, "delete", "service", "heal")
    wait_for("Service heal back", lambda: kubectl("-n", namespace, "get", "service", "heal"))

    patch = {"spec": {"selector": {"kfn.dev/function": "someone-else"}}}
    kubectl("-n", namespace, "patch", "service", "heal", "--type=merge", "-p", json.dumps(patch))
    wait_for(
        "the Service selector restored",
        lambda: (
            kubectl_json("-n", namespace, "get", "service", "heal")["spec"]["selector"].get(
                "kfn.dev/function"
            )
            == "heal"
        ),
        timeout=30,
    )


def test_a_spec_change_rolls_out_and_status_follows_the_generation(
    namespace: str, image: str
) -> None:
    apply(namespace, function("roll", image, scale={"minReplicas": 1}))
    wait_for("Function roll Ready", lambda: ready(namespace, "roll"), timeout=90)
    apply(
        namespace,
        function(
            "roll", image, scale={"minReplicas": 1}, env=[{"name": "GREETING", "value": "hi"}]
        ),
    )
    fn = wait_for(
        "Function roll Ready at generation 2", lambda: ready(namespace, "roll"), timeout=90
    )
    assert fn["metadata"]["generation"] == 2
    env = kubectl_json("-n", namespace, "get", "deployment", "roll")["spec"]["template"]["spec"][
        "containers"
    ][0]["env"]
    assert {"name": "GREETING", "value": "hi"} in env


def test_deleting_a_function_removes_its_children_and_releases_the_finalizer(
    namespace: str, image: str
) -> None:
    apply(namespace, function("gone", image))
    fn = wait_for("Function gone Ready", lambda: ready(namespace, "gone"), timeout=60)
    assert "kfn.dev/finalizer" in fn["metadata"]["finalizers"]
    kubectl("-n", namespace, "delete", "function", "gone", "--timeout=60s")
    for kind in ("deployment", "service", "serviceaccount", "function"):
        wait_for(
            f"{kind} gone deleted",
            lambda kind=kind: (
                not kubectl("-n", namespace, "get", kind, "--ignore-not-found", "-o", "name").count(
                    "/gone"
                )
            ),
            timeout=60,
        )


def test_a_config_map_source_that_does_not_exist_reports_source_not_found(namespace: str) -> None:
    apply(
        namespace,
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": "fromcm"},
            "spec": {
                "runtime": "python3.11",
                "handler": "app.handler",
                "source": {"configMapRef": {"name": "no-such-code"}},
            },
        },
    )

    def not_ready() -> dict[str, Any] | None:
        fn = kubectl_json("-n", namespace, "get", "function", "fromcm")
        cond = condition(fn, "Ready")
        return fn if cond and cond["status"] == "False" else None

    fn = wait_for("Function fromcm Ready=False", not_ready, timeout=60)
    source = condition(fn, "SourceReady")
    assert source is not None
    assert (source["status"], source["reason"]) == ("False", "SourceNotFound")
    assert "no-such-code" in source["message"]
    assert not kubectl("-n", namespace, "get", "deployment", "--ignore-not-found", "-o", "name")
    assert not kubectl("-n", namespace, "get", "jobs", "--ignore-not-found", "-o", "name")


def test_an_image_that_cannot_be_pulled_sets_deployed_false_with_the_pull_error(
    namespace: str,
) -> None:
    missing = f"{config.REGISTRY}/tests/does-not-exist:v1"
    apply(namespace, function("nopull", missing, scale={"minReplicas": 1}))

    def failing() -> dict[str, Any] | None:
        fn = kubectl_json("-n", namespace, "get", "function", "nopull")
        cond = condition(fn, "Deployed")
        return fn if cond and cond["status"] == "False" else None

    fn = wait_for("Function nopull Deployed=False", failing, timeout=90)
    deployed = condition(fn, "Deployed")
    assert deployed is not None
    assert deployed["reason"] == "PodsFailing"
    assert "ErrImagePull" in deployed["message"] or "ImagePullBackOff" in deployed["message"]
    assert condition(fn, "Ready")["reason"] == "PodsFailing"  # type: ignore[index]


def test_the_operator_killed_mid_reconcile_converges_without_duplicate_children(
    namespace: str, image: str
) -> None:
    names = [f"batch-{i}" for i in range(20)]
    apply(namespace, *(function(n, image) for n in names))
    pod = kubectl(*OPERATOR[:2], "get", "pods", "-l", "app.kubernetes.io/component=operator",
                  "-o", "jsonpath={.items[0].metadata.name}")  # fmt: skip
    kubectl(*OPERATOR[:2], "delete", "pod", pod, "--grace-period=0", "--force")
    for name in names:
        wait_for(f"Function {name} Ready", lambda name=name: ready(namespace, name), timeout=120)
    deployments = kubectl_json("-n", namespace, "get", "deployments")["items"]
    assert sorted(d["metadata"]["name"] for d in deployments) == sorted(names)
    replicasets = kubectl_json("-n", namespace, "get", "replicasets")["items"]
    assert len(replicasets) == len(names)
    services = kubectl_json("-n", namespace, "get", "services")["items"]
    assert len(services) == len(names)


def test_kubectl_explains_the_scale_fields_and_shows_the_printer_columns(
    namespace: str, image: str
) -> None:
    explain = kubectl("explain", "function.spec.scale")
    for field in ("minReplicas", "maxReplicas", "targetConcurrency", "idleTimeout"):
        assert field in explain
    apply(namespace, function("cols", image))
    wait_for("Function cols Ready", lambda: ready(namespace, "cols"), timeout=60)
    header, row = kubectl("-n", namespace, "get", "fn", "cols").splitlines()
    assert header.split() == ["NAME", "READY", "REASON", "REPLICAS", "URL", "AGE"]
    assert row.split()[:4] == ["cols", "True", "Ready", "0"]
    wide = kubectl("-n", namespace, "get", "fn", "cols", "-o", "wide").splitlines()[0].split()
    assert wide == ["NAME", "READY", "REASON", "REPLICAS", "URL", "RUNTIME", "IMAGE",
                    "FUNCTION-URL", "AGE"]  # fmt: skip


def test_the_operator_stays_up_and_quiet_through_the_bad_input_catalogue(
    namespace: str, image: str
) -> None:
    """Invalid objects the API server accepts are the operator's to judge: without a crash,
    a restart or a hot loop."""
    restarts_before = _operator_restarts()
    since = time.time()
    bad = [
        function("no-such-sa", image, scale={"minReplicas": 1}, serviceAccountName="missing"),
        function(
            "missing-secret",
            image,
            scale={"minReplicas": 1},
            env=[{"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}],
        ),
        function(
            "bad-image", f"{config.REGISTRY}/tests/nope@sha256:{'0' * 64}", scale={"minReplicas": 1}
        ),
    ]
    apply(namespace, *bad)
    for fn in bad:
        name = fn["metadata"]["name"]
        wait_for(
            f"Function {name} to report Ready=False",
            lambda name=name: (
                (c := condition(kubectl_json("-n", namespace, "get", "function", name), "Ready"))
                and c["status"] == "False"
            ),
            timeout=120,
        )
    time.sleep(10)  # long enough for a hot loop to show in the log
    assert _operator_restarts() == restarts_before
    logs = kubectl(*OPERATOR[:2], "logs", OPERATOR[2], f"--since-time={_rfc3339(since)}")
    assert len(logs.splitlines()) < 200, logs[-3000:]


def _operator_restarts() -> int:
    pods = kubectl_json(*OPERATOR[:2], "get", "pods", "-l", "app.kubernetes.io/component=operator")
    return sum(
        s.get("restartCount", 0)
        for p in pods["items"]
        for s in p["status"].get("containerStatuses", [])
    )


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
