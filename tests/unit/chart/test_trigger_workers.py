"""The cron, stream and bucket trigger workers as the chart renders them."""

from __future__ import annotations

import base64
import pathlib

import pytest

from tests.unit.chart import chart

TRIGGER_RULES = {
    *(("kfn.dev", "triggers", v) for v in ["get", "list", "watch"]),
    ("kfn.dev", "triggers/status", "patch"),
    ("", "secrets", "get"),
    ("kfn.dev", "functions", "invoke"),
}
WORKER_RULES = {
    "cron": TRIGGER_RULES,
    "stream": TRIGGER_RULES,
    "bucket": TRIGGER_RULES | {("", "configmaps", v) for v in ["get", "create", "patch", "update"]},
}
#: Leader election, and reading its own Deployment (to make it the Leases' owner).
LEASE_RULES = {
    *(("coordination.k8s.io", "leases", v) for v in ["get", "create", "update"]),
    ("apps", "deployments", "get"),
}


@pytest.mark.parametrize(("component", "replicas"), [("cron", 2), ("stream", 1), ("bucket", 2)])
def test_each_trigger_worker_runs_its_module_and_invokes_through_the_activator(
    helm: pathlib.Path, component: str, replicas: int
) -> None:
    objects = chart.render(helm)
    deployment = chart.one(objects, "Deployment", component)
    assert deployment["metadata"]["name"] == f"kfn-{component}"
    assert deployment["spec"]["replicas"] == replicas
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == f"kfn-{component}"
    container = chart.container(objects, component)
    assert container["command"] == ["python3", "-m", f"kfn.triggers.{component}"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KFN_INVOKE_URL"] == f"http://kfn-invoke.{chart.NAMESPACE}.svc.cluster.local"
    # Its own token for the invoke door: projected for the audience kfn, rotated.
    assert env["KFN_INVOKE_TOKEN_FILE"] == "/var/run/secrets/kfn/invoke/token"
    mount = {m["name"]: m for m in container["volumeMounts"]}["invoke-token"]
    assert mount["mountPath"] == "/var/run/secrets/kfn/invoke"
    volume = {v["name"]: v for v in pod["volumes"]}["invoke-token"]
    (source,) = volume["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "kfn"
    assert source["serviceAccountToken"]["path"] == "token"
    kinds = ["ClusterRole", "ClusterRoleBinding", "Deployment", "NetworkPolicy"]
    kinds += ["PodDisruptionBudget"] if replicas > 1 else []
    kinds += ["Role", "RoleBinding"] if component != "stream" else []
    kinds += ["Secret"] if component == "bucket" else []
    # Each has a Service: the bucket worker's for stores and metrics, the others' for metrics.
    assert chart.kinds(chart.of(objects, component)) == [*kinds, "Service", "ServiceAccount"]


def test_async_workers_retry_after_lambdas_delays_unless_told_otherwise(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm, {"bucket": {"asyncRetryDelays": ["1s", "2s"]}})
    bucket = {e["name"]: e.get("value") for e in chart.container(objects, "bucket")["env"]}
    cron = {e["name"]: e.get("value") for e in chart.container(objects, "cron")["env"]}
    assert bucket["KFN_ASYNC_RETRY_DELAYS"] == "1s,2s"
    assert cron["KFN_ASYNC_RETRY_DELAYS"] == "60s,120s"
    assert "KFN_ASYNC_RETRY_DELAYS" not in {
        e["name"] for e in chart.container(objects, "stream")["env"]
    }


def test_every_trigger_worker_sends_a_secret_only_where_it_opted_in_unless_told_otherwise(
    helm: pathlib.Path,
) -> None:
    for values, expected in (({}, "true"), ({"requireEndpointOptIn": False}, "false")):
        objects = chart.render(helm, {"triggerCredentials": values} if values else None)
        for component in ("cron", "stream", "bucket"):
            env = {e["name"]: e.get("value") for e in chart.container(objects, component)["env"]}
            assert env["KFN_REQUIRE_ENDPOINT_OPT_IN"] == expected, component


def test_object_stores_reach_the_bucket_worker_through_its_service(helm: pathlib.Path) -> None:
    objects = chart.render(helm)
    service = chart.one(objects, "Service", "bucket")
    port, metrics = service["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (80, "http")
    assert (metrics["name"], metrics["port"], metrics["targetPort"]) == ("metrics", 9090, "metrics")
    container = chart.container(objects, "bucket")
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    deployment = chart.one(objects, "Deployment", "bucket")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_bucket_replicas_hand_events_over_through_their_service_with_a_shared_key(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm, {"bucket": {"service": {"port": 8081}}})
    secret = chart.one(objects, "Secret", "bucket")
    assert secret["metadata"]["name"] == "kfn-bucket"
    assert len(base64.b64decode(secret["data"]["handoff-key"])) == 48
    env = {e["name"]: e for e in chart.container(objects, "bucket")["env"]}
    assert (
        env["KFN_SERVICE_URL"]["value"]
        == f"http://kfn-bucket.{chart.NAMESPACE}.svc.cluster.local:8081"
    )
    assert env["KFN_HANDOFF_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "kfn-bucket",
        "key": "handoff-key",
    }
    pod = chart.one(objects, "Deployment", "bucket")["spec"]["template"]["spec"]
    # The longest drain (15 s), grace (35 s), last answers and one hand-off fit in.
    assert pod["terminationGracePeriodSeconds"] >= 15 + 35 + 3 + 10


def test_bucket_replicas_check_notifications_with_keys_of_their_secret(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm)
    secret = chart.one(objects, "Secret", "bucket")
    for key in ("events-key", "events-token"):
        assert len(base64.b64decode(secret["data"][key])) == 48
    assert secret["data"]["events-key"] != secret["data"]["events-token"]
    env = {e["name"]: e for e in chart.container(objects, "bucket")["env"]}
    assert env["KFN_EVENTS_AUTH"]["value"] == "token"
    assert env["KFN_EVENTS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "kfn-bucket",
        "key": "events-key",
    }
    assert env["KFN_EVENTS_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "kfn-bucket",
        "key": "events-token",
    }
    for other in ("cron", "stream"):
        assert "KFN_EVENTS_AUTH" not in {e["name"] for e in chart.container(objects, other)["env"]}


def test_unsigned_notifications_are_taken_only_when_asked_for(helm: pathlib.Path) -> None:
    objects = chart.render(helm, {"bucket": {"events": {"auth": "none"}}})
    env = {e["name"]: e for e in chart.container(objects, "bucket")["env"]}
    assert env["KFN_EVENTS_AUTH"]["value"] == "none"
    assert "KFN_EVENTS_KEY" not in env
    # The operator writes the tokens all the same, so stores can sign before they must.
    operator_env = {e["name"] for e in chart.operator_container(objects)["env"]}
    assert "KFN_BUCKET_EVENTS_KEY" in operator_env


def test_cron_values_reach_the_pod(helm: pathlib.Path) -> None:
    objects = chart.render(
        helm,
        {"cron": {"replicas": 3, "invokeUrl": "http://gw.example:8080", "logLevel": "DEBUG"}},
    )
    assert chart.one(objects, "Deployment", "cron")["spec"]["replicas"] == 3
    env = {e["name"]: e.get("value") for e in chart.container(objects, "cron")["env"]}
    assert env["KFN_INVOKE_URL"] == "http://gw.example:8080"
    assert env["KFN_LOG_LEVEL"] == "DEBUG"


@pytest.mark.parametrize("component", ["cron", "stream", "bucket"])
def test_a_trigger_worker_gets_only_the_rights_its_triggers_need(
    helm: pathlib.Path, component: str
) -> None:
    objects = chart.render(helm)
    assert chart.granted(chart.one(objects, "ClusterRole", component)) == WORKER_RULES[component]
    if component != "stream":
        role = chart.one(objects, "Role", component)
        assert role["metadata"]["namespace"] == chart.NAMESPACE
        assert chart.granted(role) == LEASE_RULES
        named = [r.get("resourceNames") for r in role["rules"] if "deployments" in r["resources"]]
        assert named == [[f"kfn-{component}"]]
    kinds = (
        ("ClusterRoleBinding", "RoleBinding") if component != "stream" else ("ClusterRoleBinding",)
    )
    for kind in kinds:
        (subject,) = chart.one(objects, kind, component)["subjects"]
        assert subject == {
            "kind": "ServiceAccount",
            "name": f"kfn-{component}",
            "namespace": chart.NAMESPACE,
        }


def test_the_stream_worker_gets_its_byte_budget_and_only_it(helm: pathlib.Path) -> None:
    default = chart.render(helm, {})
    told = chart.render(helm, {"stream": {"maxBufferedMiB": 64}})
    env = {e["name"]: e.get("value") for e in chart.container(default, "stream")["env"]}
    assert env["KFN_STREAM_MAX_BUFFERED_MIB"] == "192"
    env = {e["name"]: e.get("value") for e in chart.container(told, "stream")["env"]}
    assert env["KFN_STREAM_MAX_BUFFERED_MIB"] == "64"
    for other in ("cron", "bucket"):
        names = {e["name"] for e in chart.container(default, other)["env"]}
        assert "KFN_STREAM_MAX_BUFFERED_MIB" not in names
