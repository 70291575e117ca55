"""The activator, the autoscaler and the helm test as the chart renders them."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from kfn.activator import __main__ as main
from tests.unit.chart import chart

ACTIVATOR_RULES = {
    *(
        ("kfn.dev", r, v)
        for r in ["functions", "functionversions", "triggers"]
        for v in ["get", "list", "watch"]
    ),
    *(("", "pods", v) for v in ["get", "list", "watch"]),
    # The invoke door's reviews.
    ("authentication.k8s.io", "tokenreviews", "create"),
    ("authorization.k8s.io", "subjectaccessreviews", "create"),
    # The Lambda API's access keys (one Secret name, below).
    *(("", "secrets", v) for v in ["get", "list", "watch"]),
}
_LIMIT_FLAGS = {
    "--max-url-bytes",
    "--max-header-bytes",
    "--head-timeout",
    "--idle-timeout",
    "--max-connections",
    "--max-buffered-bytes",
}
AUTOSCALER_RULES = {
    *(("kfn.dev", "functions", v) for v in ["get", "list", "watch"]),
    *(("apps", "deployments/scale", v) for v in ["get", "patch", "update"]),
    # An alias's routing while a rollout moves it, and the rollout's Events.
    ("kfn.dev", "functions/status", "patch"),
    ("", "events", "create"),
    # Who sent a stats message.
    ("authentication.k8s.io", "tokenreviews", "create"),
}


def test_two_activators_run_the_activator_module_behind_the_kfn_activator_service(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm)
    deployment = chart.one(objects, "Deployment", "activator")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "kfn-activator"
    # preStop 3 + drain (900 longest timeout + 10 head timeout + 5) + 5 to exit.
    assert pod["terminationGracePeriodSeconds"] == 3 + 900 + 10 + 5 + 5
    container = chart.container(objects, "activator")
    assert container["command"] == ["python3", "-m", "kfn.activator"]
    url = "http://kfn-autoscaler.kfn-system.svc.cluster.local:8090/stats"
    assert f"--autoscaler-url={url}" in container["args"]
    assert "--queue-limit=1000" in container["args"]
    assert {
        "--max-url-bytes=8192",
        "--max-header-bytes=32768",
        "--head-timeout=10",
        "--idle-timeout=75",
        "--max-connections=2048",
        "--max-buffered-bytes=67108864",
    } <= set(container["args"])
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": 8080,
        "invoke": 8081,
        "metrics": 9090,
    }
    assert container["readinessProbe"]["httpGet"] == {"path": "/_kfn/health", "port": "http"}
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 3}}
    service = chart.one(objects, "Service", "activator")
    assert service["metadata"]["name"] == "kfn-activator"
    assert service["spec"]["type"] == "ClusterIP"
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        "http": (80, "http"),
        "metrics": (9090, "metrics"),
    }
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pod_labels | service["spec"]["selector"] == pod_labels


def test_the_invoke_api_has_a_door_and_a_service_of_its_own_behind_rbac(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm)
    args = chart.container(objects, "activator")["args"]
    assert {
        "--port=8080",
        "--invoke-port=8081",
        "--invoke-auth=rbac",
        "--invoke-audiences=kfn",
        "--invoke-auth-ttl=10",
    } <= set(args)
    service = chart.one(objects, "Service", "invoke")
    assert service["metadata"]["name"] == "kfn-invoke"
    assert service["spec"]["type"] == "ClusterIP"
    ((port, target),) = [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]]
    assert (port, target) == (80, "invoke")
    deployment = chart.one(objects, "Deployment", "activator")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pod_labels | service["spec"]["selector"] == pod_labels
    # The public Service never leads to the invoke door.
    public = chart.one(objects, "Service", "activator")
    assert "invoke" not in {p["targetPort"] for p in public["spec"]["ports"]}


def test_invoking_is_granted_by_a_role_aggregated_into_edit_and_admin(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm)
    role = chart.one(objects, "ClusterRole", "invoker")
    assert role["metadata"]["name"] == "kfn-invoker"
    labels = role["metadata"]["labels"]
    assert labels["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert labels["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert chart.granted(role) == {("kfn.dev", "functions", "invoke")}


def test_an_invoke_door_without_auth_asks_no_reviews_and_mounts_no_tokens(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm, {"activator": {"invoke": {"auth": "none"}}})
    assert "--invoke-auth=none" in chart.container(objects, "activator")["args"]
    granted = chart.granted(chart.one(objects, "ClusterRole", "activator"))
    assert ("authentication.k8s.io", "tokenreviews", "create") not in granted
    env = {e["name"] for e in chart.container(objects, "cron")["env"]}
    assert "KFN_INVOKE_TOKEN_FILE" not in env


def test_the_lambda_api_reads_only_secrets_named_kfn_lambda_access_keys(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm)
    role = chart.one(objects, "ClusterRole", "activator")
    secrets = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert secrets == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["kfn-lambda-access-keys"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    args = chart.container(objects, "activator")["args"]
    assert {"--lambda-api=on", "--lambda-region=us-east-1", "--lambda-account=000000000000"} <= set(
        args
    )


def test_the_lambda_apis_arns_take_the_charts_region_and_account(helm: pathlib.Path) -> None:
    objects = chart.render(
        helm, {"activator": {"lambdaApi": {"region": "eu-west-1", "accountId": "123456789012"}}}
    )
    args = chart.container(objects, "activator")["args"]
    parsed = main.parse_args([a for a in args if a.startswith("--lambda-")])
    assert (parsed.lambda_api, parsed.lambda_region, parsed.lambda_account) == (
        "on",
        "eu-west-1",
        "123456789012",
    )


def test_without_the_lambda_api_no_secret_is_readable(helm: pathlib.Path) -> None:
    objects = chart.render(helm, {"activator": {"lambdaApi": {"enabled": False}}})
    assert "--lambda-api=off" in chart.container(objects, "activator")["args"]
    granted = chart.granted(chart.one(objects, "ClusterRole", "activator"))
    assert not any(resource == "secrets" for _, resource, _ in granted)


def test_an_account_id_that_is_not_twelve_digits_is_refused_by_the_schema(
    helm: pathlib.Path,
) -> None:
    error = chart.render_error(helm, "activator.lambdaApi.accountId=abc")
    assert "accountId" in error


def test_activator_client_limits_reach_the_pod_and_parse_as_the_activators_flags(
    helm: pathlib.Path,
) -> None:
    limits = {
        "maxUrlBytes": 4096,
        "maxHeaderBytes": 16384,
        "headTimeoutSeconds": 2.5,
        "idleTimeoutSeconds": 30,
        "maxConnections": 500,
        "maxBufferedBytes": 268435456,
    }
    objects = chart.render(helm, {"activator": {"clientLimits": limits}})
    args = chart.container(objects, "activator")["args"]
    flags = [a for a in args if a.split("=")[0] in _LIMIT_FLAGS]
    assert flags == [
        "--max-url-bytes=4096",
        "--max-header-bytes=16384",
        "--head-timeout=2.5",
        "--idle-timeout=30",
        "--max-connections=500",
        "--max-buffered-bytes=268435456",
    ]


@pytest.mark.parametrize(
    ("key", "value"),
    [("maxConnections", 0), ("headTimeoutSeconds", 0), ("maxUrlBytes", "8k"), ("extra", 1)],
)
def test_activator_client_limits_out_of_range_are_refused_by_the_schema(
    helm: pathlib.Path, key: str, value: object
) -> None:
    assert chart.render_error(helm, f"activator.clientLimits.{key}={value}")


def test_activator_values_reach_the_pod(helm: pathlib.Path) -> None:
    objects = chart.render(helm, {"activator": {"replicas": 3, "queueLimit": 50}})
    deployment = chart.one(objects, "Deployment", "activator")
    assert deployment["spec"]["replicas"] == 3
    args = chart.container(objects, "activator")["args"]
    assert "--queue-limit=50" in args


def _stopping(objects: list[dict[str, Any]]) -> tuple[int, int, int, str, str]:
    """preStop, drain, grace, the activator's longest timeout and the operator's."""
    pod = chart.one(objects, "Deployment", "activator")["spec"]["template"]["spec"]
    container = chart.container(objects, "activator")
    flags = dict(a.removeprefix("--").split("=", 1) for a in container["args"])
    operator_env = {e["name"]: e.get("value") for e in chart.operator_container(objects)["env"]}
    return (
        container["lifecycle"]["preStop"]["sleep"]["seconds"],
        int(flags["drain-timeout"]),
        pod["terminationGracePeriodSeconds"],
        flags["max-function-timeout"],
        operator_env["KFN_MAX_FUNCTION_TIMEOUT_SECONDS"],
    )


@pytest.mark.parametrize(
    ("max_timeout", "head_timeout", "drain", "grace"),
    [(900, 10, 915, 923), (60, 10, 75, 83), (20, 2.5, 28, 36), (1, 0.1, 7, 15)],
)
def test_the_activators_drain_and_grace_period_derive_from_the_longest_function_timeout(
    helm: pathlib.Path, max_timeout: int, head_timeout: float, drain: int, grace: int
) -> None:
    objects = chart.render(
        helm,
        {
            "functions": {"maxTimeoutSeconds": max_timeout},
            "activator": {"clientLimits": {"headTimeoutSeconds": head_timeout}},
        },
    )
    pre_stop, drain_seconds, grace_seconds, activator_max, operator_max = _stopping(objects)
    # A request accepted just before SIGTERM may take its head's time, then its timeout.
    assert drain_seconds == drain >= max_timeout + head_timeout
    # The kubelet kills only after the preStop pause, the whole drain and a margin to exit.
    assert grace_seconds == grace == pre_stop + drain_seconds + 5
    assert pre_stop == 3
    # The operator refuses, and the activator never holds, a longer timeout.
    assert activator_max == operator_max == str(max_timeout)


@pytest.mark.parametrize("value", [0, 901, "15m", 30.5])
def test_a_longest_function_timeout_outside_1_to_900_seconds_is_refused_by_the_schema(
    helm: pathlib.Path, value: object
) -> None:
    assert "maxTimeoutSeconds" in chart.render_error(helm, f"functions.maxTimeoutSeconds={value}")


def test_the_old_drain_timeout_value_is_refused_rather_than_ignored(helm: pathlib.Path) -> None:
    assert "drainTimeoutSeconds" in chart.render_error(helm, "activator.drainTimeoutSeconds=30")


@pytest.mark.parametrize("component", ["activator", "cron", "bucket", "stream"])
def test_every_component_with_more_than_one_replica_has_a_disruption_budget_of_one(
    helm: pathlib.Path, component: str
) -> None:
    objects = chart.render(helm, {component: {"replicas": 3}})
    budget = chart.one(objects, "PodDisruptionBudget", component)
    # maxUnavailable never blocks a node drain outright, even with one node.
    assert budget["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in budget["spec"]
    pod_labels = chart.one(objects, "Deployment", component)["spec"]["template"]["metadata"][
        "labels"
    ]
    selector = budget["spec"]["selector"]["matchLabels"]
    assert pod_labels | selector == pod_labels


def test_a_single_replica_or_a_disabled_budget_gets_no_disruption_budget(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm, {"stream": {"replicas": 1}})
    assert not [o for o in chart.of(objects, "stream") if o["kind"] == "PodDisruptionBudget"]
    off = {"activator": {"podDisruptionBudget": {"enabled": False, "maxUnavailable": 1}}}
    assert not [
        o
        for o in chart.of(chart.render(helm, off), "activator")
        if o["kind"] == "PodDisruptionBudget"
    ]


def test_the_helm_test_creates_a_function_through_a_role_limited_to_functions(
    helm: pathlib.Path,
) -> None:
    objects = [
        o
        for o in chart.render(helm, tests=True)
        if o["metadata"]["labels"][chart.COMPONENT] == "test"
    ]
    assert chart.kinds(objects) == ["Pod", "Role", "RoleBinding", "ServiceAccount"]
    for obj in objects:
        assert obj["metadata"]["annotations"]["helm.sh/hook"] == "test"
        assert "hook-succeeded" in obj["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    role = next(o for o in objects if o["kind"] == "Role")
    assert chart.granted(role) == {
        ("kfn.dev", "functions", v) for v in ("get", "create", "patch", "delete", "invoke")
    }
    pod = next(o for o in objects if o["kind"] == "Pod")
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["python3", "-m", "kfn.smoketest"]
    # It invokes through the invoke door with its own projected token.
    assert "--token-file=/var/run/secrets/kfn/invoke/token" in container["args"]
    (volume,) = pod["spec"]["volumes"]
    assert volume["projected"]["sources"][0]["serviceAccountToken"]["audience"] == "kfn"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_one_autoscaler_runs_the_autoscaler_module_where_activators_send_stats(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm, {"autoscaler": {"stableWindowSeconds": 30}})
    deployment = chart.one(objects, "Deployment", "autoscaler")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = chart.container(objects, "autoscaler")
    assert container["command"] == ["python3", "-m", "kfn.autoscaler"]
    assert {"--port=8090", "--stable-window=30", "--panic-window=6"} <= set(container["args"])
    service = chart.one(objects, "Service", "autoscaler")
    assert service["metadata"]["name"] == "kfn-autoscaler"
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        "stats": (8090, "stats"),
        "metrics": (9090, "metrics"),
    }
    # Its metrics are served on --host at the default --metrics-port, 9090.
    assert "--host=0.0.0.0" in container["args"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "stats": 8090,
        "metrics": 9090,
    }


def test_the_autoscaler_takes_stats_only_with_the_activators_own_projected_token(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm)
    assert {
        "--stats-auth=token",
        "--stats-audience=kfn-stats",
        "--stats-senders=system:serviceaccount:kfn-system:kfn-activator",
    } <= set(chart.container(objects, "autoscaler")["args"])
    activator = chart.container(objects, "activator")
    assert "--autoscaler-token-file=/var/run/secrets/kfn/stats/token" in activator["args"]
    assert {
        "name": "stats-token",
        "mountPath": "/var/run/secrets/kfn/stats",
        "readOnly": True,
    } in activator["volumeMounts"]
    pod = chart.one(objects, "Deployment", "activator")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "stats-token")
    assert volume["projected"]["sources"] == [
        {"serviceAccountToken": {"audience": "kfn-stats", "expirationSeconds": 3600,
                                 "path": "token"}}
    ]  # fmt: skip


def test_stats_from_anyone_need_no_reviews_and_the_activators_pods_do_not_change(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm, {"autoscaler": {"statsAuth": "none"}})
    args = chart.container(objects, "autoscaler")["args"]
    assert "--stats-auth=none" in args
    assert not [a for a in args if a.startswith(("--stats-senders", "--stats-audience"))]
    granted = chart.granted(chart.one(objects, "ClusterRole", "autoscaler"))
    assert ("authentication.k8s.io", "tokenreviews", "create") not in granted
    # The activators send their token either way: turning the check on restarts none of them.
    pod = chart.one(objects, "Deployment", "activator")["spec"]["template"]
    default = chart.one(chart.render(helm), "Deployment", "activator")["spec"]["template"]
    assert pod == default


def test_a_stats_auth_other_than_token_or_none_is_refused_by_the_schema(
    helm: pathlib.Path,
) -> None:
    assert "statsAuth" in chart.render_error(helm, "autoscaler.statsAuth=mtls")


@pytest.mark.parametrize(
    ("component", "rules"), [("activator", ACTIVATOR_RULES), ("autoscaler", AUTOSCALER_RULES)]
)
def test_activator_and_autoscaler_are_granted_exactly_what_they_touch(
    helm: pathlib.Path, component: str, rules: set[tuple[str, str, str]]
) -> None:
    objects = chart.render(helm)
    role = chart.one(objects, "ClusterRole", component)
    assert chart.granted(role) == rules
    (subject,) = chart.one(objects, "ClusterRoleBinding", component)["subjects"]
    assert subject == {
        "kind": "ServiceAccount",
        "name": f"kfn-{component}",
        "namespace": chart.NAMESPACE,
    }


# --- asynchronous invocations ------------------------------------------------------------------


def _events_flags(objects: list[dict[str, Any]]) -> dict[str, str]:
    args = chart.container(objects, "activator")["args"]
    return dict(a.removeprefix("--").split("=", 1) for a in args if a.startswith("--events-"))


def test_events_wait_in_the_activators_memory_unless_a_store_is_chosen(helm: pathlib.Path) -> None:
    objects = chart.render(helm)
    assert _events_flags(objects) == {
        "events-store": "memory",
        "events-capacity": "10000",
        "events-workers": "64",
        "events-workers-per-function": "16",
    }
    pod = chart.one(objects, "Deployment", "activator")["spec"]["template"]["spec"]
    assert "events-nats" not in [v["name"] for v in pod["volumes"]]


def test_the_jetstream_store_gets_its_server_stream_and_credentials_secret(
    helm: pathlib.Path,
) -> None:
    events = {
        "store": "jetstream",
        "nats": {"url": "nats://nats.nats.svc:4222", "credentialsSecret": "kfn-events-nats"},
        "stream": "EVENTS_PROD",
        "maxBytes": 8589934592,
        "workersPerFunction": 4,
    }
    objects = chart.render(helm, {"activator": {"events": events}})
    assert _events_flags(objects) == {
        "events-store": "jetstream",
        "events-nats-url": "nats://nats.nats.svc:4222",
        "events-stream": "EVENTS_PROD",
        "events-max-bytes": "8589934592",
        "events-nats-credentials": "/etc/kfn/events-nats",
        "events-workers": "64",
        "events-workers-per-function": "4",
    }
    pod = chart.one(objects, "Deployment", "activator")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "events-nats")
    assert volume["secret"]["secretName"] == "kfn-events-nats"
    mount = next(
        m
        for m in chart.container(objects, "activator")["volumeMounts"]
        if m["name"] == "events-nats"
    )
    assert mount == {"name": "events-nats", "mountPath": "/etc/kfn/events-nats", "readOnly": True}


def test_the_jetstream_store_without_a_server_says_what_to_set(helm: pathlib.Path) -> None:
    message = chart.render_error(helm, "activator.events.store=jetstream")
    assert "activator.events.nats.url is empty" in message


@pytest.mark.parametrize(
    "setting",
    [
        "activator.events.store=kafka",
        "activator.events.workersPerFunction=0",
        "activator.events.stream=kfn.events",
        "activator.events.nats.token=x",
    ],
)
def test_event_settings_out_of_range_are_refused_by_the_schema(
    helm: pathlib.Path, setting: str
) -> None:
    assert chart.render_error(helm, setting)


def test_the_autoscaler_may_scale_every_versions_deployment_and_only_through_scale(
    helm: pathlib.Path,
) -> None:
    # A version runs in <function>-v<N>: a rule naming Deployments would leave it unscaled.
    role = chart.one(chart.render(helm), "ClusterRole", "autoscaler")
    apps = [r for r in role["rules"] if r["apiGroups"] == ["apps"]]
    assert apps == [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments/scale"],
            "verbs": ["get", "patch", "update"],
        }
    ]
