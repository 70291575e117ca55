"""What the builders promise beyond the golden files: replicas, owners, env, probes."""

from __future__ import annotations

from typing import Any

import pytest

from kfn import resources
from kfn.api import function
from kfn.resources import deployment as deployments

IMAGE = "registry.local/fn@sha256:" + "0" * 64


def _function(uid: str | None = "uid-1", **spec: Any) -> function.Function:
    return function.Function.model_validate(
        {
            "metadata": {"name": "hello", "namespace": "team", "uid": uid},
            "spec": {
                "runtime": "python3.11",
                "handler": "app.handler",
                "source": {"inline": {"files": [{"name": "app.py", "content": "x"}]}},
                **spec,
            },
        }
    )


def _container(fn: function.Function) -> Any:
    built = resources.build_deployment(fn, image=IMAGE, source_hash="h", initial_replicas=None)
    return built["spec"]["template"]["spec"]["containers"][0]


def _env(fn: function.Function) -> dict[str, Any]:
    return {var["name"]: var.get("value", var.get("valueFrom")) for var in _container(fn)["env"]}


def test_replicas_are_left_to_the_autoscaler_unless_given_at_creation() -> None:
    fn = _function()
    update = resources.build_deployment(fn, image=IMAGE, source_hash="h", initial_replicas=None)
    create = resources.build_deployment(fn, image=IMAGE, source_hash="h", initial_replicas=0)
    assert "replicas" not in update["spec"]
    assert create["spec"]["replicas"] == 0


def test_negative_initial_replicas_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        resources.build_deployment(_function(), image=IMAGE, source_hash="h", initial_replicas=-1)


def test_children_cannot_be_built_before_the_function_has_a_uid() -> None:
    with pytest.raises(ValueError, match="no uid"):
        resources.build_service(_function(uid=None))


def test_every_child_is_controlled_by_its_function() -> None:
    fn = _function()
    children = [
        resources.build_deployment(fn, image=IMAGE, source_hash="h", initial_replicas=None),
        resources.build_service(fn),
        resources.build_service_account(fn),
    ]
    for child in children:
        assert child is not None
        (owner,) = child["metadata"]["ownerReferences"]
        assert owner["uid"] == "uid-1"
        assert owner["controller"] is True
        assert owner["blockOwnerDeletion"] is True


def test_service_and_deployment_select_exactly_the_pods_of_the_template() -> None:
    fn = _function()
    built = resources.build_deployment(fn, image=IMAGE, source_hash="h", initial_replicas=None)
    pod_labels = built["spec"]["template"]["metadata"]["labels"]
    for selector in (
        built["spec"]["selector"]["matchLabels"],
        resources.build_service(fn)["spec"]["selector"],
    ):
        assert selector.items() <= pod_labels.items()
        assert selector[resources.LABEL_FUNCTION] == "hello"


def test_grace_period_outlasts_the_function_timeout() -> None:
    fn = _function(timeout="2m30s")
    built = resources.build_deployment(fn, image=IMAGE, source_hash="h", initial_replicas=None)
    assert built["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 160


def test_liveness_tolerates_a_handler_busy_for_the_whole_timeout() -> None:
    probe = _container(_function(timeout="15m"))["livenessProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] > 15 * 60


def test_readiness_reacts_within_a_second() -> None:
    probe = _container(_function())["readinessProbe"]
    assert probe["httpGet"]["path"] == "/_kfn/ready"
    assert (probe["periodSeconds"], probe["failureThreshold"]) == (1, 1)


def test_contract_environment_reflects_the_spec() -> None:
    env = _env(_function(timeout="1.5s", concurrency=3, resources={"limits": {"memory": "1Gi"}}))
    assert env["KFN_TIMEOUT_MS"] == "1500"
    assert env["KFN_CONCURRENCY"] == "3"
    assert env["KFN_MEMORY_MB"] == env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "1024"
    assert env["KFN_HANDLER"] == env["_HANDLER"] == "app.handler"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_REGION"] == "local"


def test_the_text_log_format_sets_no_logging_variables() -> None:
    for fn in (_function(), _function(logging={}), _function(logging={"format": "Text"})):
        env = _env(fn)
        assert not {"AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL", "KFN_SYSTEM_LOG_LEVEL"} & set(
            env
        )


def test_the_json_log_format_and_its_levels_reach_the_runtime() -> None:
    env = _env(_function(logging={"format": "JSON"}))
    assert env["AWS_LAMBDA_LOG_FORMAT"] == "JSON"
    assert env["AWS_LAMBDA_LOG_LEVEL"] == env["KFN_SYSTEM_LOG_LEVEL"] == "INFO"
    levels = {"format": "JSON", "applicationLogLevel": "DEBUG", "systemLogLevel": "WARN"}
    env = _env(_function(logging=levels))
    assert (env["AWS_LAMBDA_LOG_LEVEL"], env["KFN_SYSTEM_LOG_LEVEL"]) == ("DEBUG", "WARN")


def test_user_region_replaces_the_default_instead_of_duplicating_it() -> None:
    fn = _function(env=[{"name": "AWS_REGION", "value": "eu-west-1"}])
    names = [var["name"] for var in _container(fn)["env"]]
    assert names.count("AWS_REGION") == 1
    assert _env(fn)["AWS_REGION"] == "eu-west-1"


def test_user_values_reach_the_process_literally() -> None:
    """The kubelet turns $$ into $ and expands $(X); doubling every $ undoes both."""
    value = "$(HOME) costs $5 and $$"
    escaped = _env(_function(env=[{"name": "TEXT", "value": value}]))["TEXT"]
    assert _kubelet_expand(escaped) == value


def _kubelet_expand(text: str) -> str:
    """The kubelet's expansion of env values for variables that are not defined."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text) and text[i + 1] == "$":
            out.append("$")
            i += 2
        elif text[i] == "$" and i + 1 < len(text) and text[i + 1] == "(":
            end = text.index(")", i)
            out.append(text[i : end + 1])
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def test_no_service_account_is_built_when_the_user_names_one() -> None:
    fn = _function(serviceAccountName="reader")
    assert resources.build_service_account(fn) is None
    built = resources.build_deployment(fn, image=IMAGE, source_hash="h", initial_replicas=None)
    assert built["spec"]["template"]["spec"]["serviceAccountName"] == "reader"


def test_pods_follow_the_restricted_pod_security_standard() -> None:
    built = resources.build_deployment(
        _function(), image=IMAGE, source_hash="h", initial_replicas=None
    )
    pod = built["spec"]["template"]["spec"]
    container = pod["containers"][0]["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert container["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False


def test_built_objects_share_no_mutable_parts() -> None:
    built = resources.build_deployment(
        _function(), image=IMAGE, source_hash="h", initial_replicas=None
    )
    seen: dict[int, str] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict | list):
            assert id(node) not in seen, f"{path} is the same object as {seen.get(id(node))}"
            seen[id(node)] = path
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in items:
                walk(child, f"{path}.{key}")

    walk(built, "deployment")


def test_pod_template_changes_when_the_source_hash_changes() -> None:
    fn = _function()
    first = resources.build_deployment(fn, image=IMAGE, source_hash="a", initial_replicas=None)
    second = resources.build_deployment(fn, image=IMAGE, source_hash="b", initial_replicas=None)
    assert first["spec"]["template"] != second["spec"]["template"]
    assert deployments.CONTAINER_PORT == 8080
