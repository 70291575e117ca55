"""The Function model: defaults like Lambda's, and the rules the API server also enforces."""

from __future__ import annotations

import re
from typing import Any

import pydantic
import pytest

from kfn.api import function


def _spec(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "runtime": "python3.11",
        "handler": "app.handler",
        "source": {"inline": {"files": [{"name": "app.py", "content": "def handler(e, c): ..."}]}},
    }
    spec.update(changes)
    return {key: value for key, value in spec.items() if value is not None}


def _function(name: str = "hello", **changes: Any) -> function.Function:
    return function.Function.model_validate(
        {"metadata": {"name": name, "namespace": "team", "uid": "u-1"}, "spec": _spec(**changes)}
    )


def test_defaults_follow_lambda() -> None:
    spec = _function().spec
    assert spec.timeout == "30s"
    assert spec.concurrency == 1
    assert spec.memory_bytes == 128 * 2**20
    assert spec.scale.min_replicas == 0
    assert spec.scale.max_replicas == 10
    assert spec.scale.idle_timeout == "60s"


def test_target_concurrency_defaults_to_concurrency() -> None:
    assert _function(concurrency=8).spec.target_concurrency == 8
    spec = _function(concurrency=8, scale={"targetConcurrency": 6}).spec
    assert spec.target_concurrency == 6


def test_memory_size_is_the_limit_before_the_request() -> None:
    spec = _function(resources={"requests": {"memory": "256Mi"}, "limits": {"memory": "1Gi"}}).spec
    assert spec.memory_bytes == 2**30
    assert _function(resources={"requests": {"memory": "256Mi"}}).spec.memory_bytes == 256 * 2**20


def test_wire_names_are_camel_case_and_python_names_snake_case() -> None:
    fn = _function(envFrom=[{"configMapRef": {"name": "settings"}}])
    assert fn.spec.env_from[0].config_map_ref is not None
    dumped = fn.spec.model_dump(by_alias=True, exclude_none=True)
    assert "envFrom" in dumped
    assert "configMapRef" in dumped["envFrom"][0]


@pytest.mark.parametrize(
    "handler", ["app.handler", "app.api.handler", "_private.main", "pkg.mod_2.fn_1"]
)
def test_python_handlers_name_a_module_and_a_function(handler: str) -> None:
    assert _function(handler=handler).spec.handler == handler


@pytest.mark.parametrize("handler", ["handler", "app/handler", "app.", ".handler", "1app.fn"])
def test_malformed_python_handlers_are_refused(handler: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        _function(handler=handler)


@pytest.mark.parametrize("handler", ["index.handler", "src/app.handler", "my-file.main"])
def test_node_handlers_name_a_file_and_an_export(handler: str) -> None:
    assert _function(runtime="nodejs18", handler=handler).spec.handler == handler


@pytest.mark.parametrize("handler", ["index", "index.js/handler", "../up.handler"])
def test_malformed_node_handlers_are_refused(handler: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        _function(runtime="nodejs18", handler=handler)


def test_prebuilt_image_needs_neither_runtime_nor_handler() -> None:
    fn = _function(runtime=None, handler=None, source={"image": "registry.local/fn:1"})
    assert fn.spec.runtime is None


def test_timeout_bounds_are_lambdas() -> None:
    assert _function(timeout="15m").spec.timeout == "15m"
    with pytest.raises(pydantic.ValidationError, match="must be at most 15m"):
        _function(timeout="15m1s")
    with pytest.raises(pydantic.ValidationError, match="must be at least 1s"):
        _function(timeout="999ms")


def test_inline_source_at_the_limit_is_accepted_and_one_more_character_is_not() -> None:
    half = function.INLINE_SOURCE_LIMIT // 2
    files = [{"name": "a.py", "content": "x" * half}, {"name": "b.py", "content": "x" * half}]
    assert _function(source={"inline": {"files": files}}).spec.source.inline is not None
    files[1]["content"] += "x"
    with pytest.raises(pydantic.ValidationError, match="limited to 262144 characters"):
        _function(source={"inline": {"files": files}})


@pytest.mark.parametrize("name", ["a/../b.py", "./a.py", "a/./b.py", ".."])
def test_file_names_with_dot_segments_are_refused(name: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=r"'\.' or '\.\.' segments"):
        _function(source={"inline": {"files": [{"name": name, "content": ""}]}})


def test_dotfiles_are_allowed() -> None:
    files = [{"name": ".npmrc", "content": ""}, {"name": "lib/..hidden", "content": ""}]
    assert _function(source={"inline": {"files": files}}).spec.source.inline is not None


@pytest.mark.parametrize("name", ["KFN_PORT", "AWS_LAMBDA_FUNCTION_NAME", "_HANDLER"])
def test_runtime_contract_variables_cannot_be_overridden(name: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="set by kfn"):
        _function(env=[{"name": name, "value": "x"}])


def test_aws_region_may_be_overridden() -> None:
    assert _function(env=[{"name": "AWS_REGION", "value": "eu-west-1"}]).spec.env[0].value


def test_duplicate_environment_variables_are_refused() -> None:
    env = [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]
    with pytest.raises(pydantic.ValidationError, match="Duplicate value"):
        _function(env=env)


def test_cpu_limit_below_request_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"limits.cpu must not be less"):
        _function(resources={"requests": {"cpu": "1"}, "limits": {"cpu": "500m"}})


def test_equal_limit_and_request_are_fine() -> None:
    resources = {"requests": {"cpu": "0.5"}, "limits": {"cpu": "500m"}}
    assert _function(resources=resources).spec.resources.limits is not None


@pytest.mark.parametrize("name", ["hello", "a", "fn-2", "x" * 63])
def test_function_names_that_can_name_a_service_are_accepted(name: str) -> None:
    assert _function(name=name).metadata.name == name


@pytest.mark.parametrize("name", ["Hello", "2fn", "fn-", "a.b", "x" * 64])
def test_function_names_that_cannot_name_a_service_are_refused(name: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="DNS-1035"):
        _function(name=name)


def test_unknown_spec_fields_are_refused_offline() -> None:
    with pytest.raises(pydantic.ValidationError, match="timeOut"):
        _function(timeOut="5s")


def test_status_tolerates_fields_it_does_not_know() -> None:
    status = function.FunctionStatus.model_validate({"replicas": 2, "somethingNew": True})
    assert status.replicas == 2


def test_ready_depends_on_everything_but_active() -> None:
    assert function.ConditionType.ACTIVE not in function.READY_DEPENDS_ON
    assert set(function.READY_DEPENDS_ON) == {
        function.ConditionType.SOURCE_READY,
        function.ConditionType.BUILD_SUCCEEDED,
        function.ConditionType.DEPLOYED,
    }


@pytest.mark.parametrize("name", ["..cfg", "..data", "...", "..a/b.py"])
def test_file_names_starting_with_two_dots_are_refused(name: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=re.escape("cannot start with '..'")):
        _function(source={"inline": {"files": [{"name": name, "content": ""}]}})


@pytest.mark.parametrize(
    ("names", "ok"),
    [
        (["a", "ab/b.py"], True),
        (["a.py", "a/b.py"], True),
        (["lib/a.py", "lib/b.py", "lib2/a.py"], True),
        (["a", "a/b.py"], False),
        (["a/b.py", "a"], False),
        (["a/b", "a/b/c/d.py"], False),
        (["x.py", "src/lib", "src/lib/util.js"], False),
    ],
)
def test_a_file_cannot_also_be_the_directory_of_another(names: list[str], ok: bool) -> None:
    files = [{"name": name, "content": ""} for name in names]
    if ok:
        assert _function(source={"inline": {"files": files}}).spec.source.inline is not None
    else:
        with pytest.raises(pydantic.ValidationError, match="cannot also be the directory"):
            _function(source={"inline": {"files": files}})


@pytest.mark.parametrize(
    ("prefix", "ok"),
    [
        ("DB_", True),
        ("KFN", True),
        ("AWS_", True),
        ("MY_KFN_", True),
        ("KFN_", False),
        ("KFN_DB_", False),
        ("AWS_LAMBDA_", False),
    ],
)
def test_env_from_prefixes_cannot_reach_kfns_variables(prefix: str, ok: bool) -> None:
    env_from = [{"prefix": prefix, "configMapRef": {"name": "settings"}}]
    if ok:
        assert _function(env_from=env_from).spec.env_from[0].prefix == prefix
    else:
        with pytest.raises(pydantic.ValidationError, match="would name variables that kfn sets"):
            _function(env_from=env_from)


# --- layers ----------------------------------------------------------------------------------

_SHA = "b" * 64
_IMAGE = "registry.example.com/layers/tools@sha256:" + "a" * 64


def _archive_layer(name: str, sha256: str = _SHA) -> dict[str, Any]:
    return {"name": name, "archive": {"url": f"https://example.com/{name}.zip", "sha256": sha256}}


def test_layers_keep_the_order_they_are_given_in() -> None:
    fn = _function(layers=[_archive_layer("b"), {"name": "a", "image": _IMAGE}])
    assert [layer.name for layer in fn.spec.layers] == ["b", "a"]
    assert fn.spec.layers[1].image == _IMAGE


def test_five_layers_are_accepted_and_a_sixth_is_not() -> None:
    layers = [_archive_layer(f"l{i}") for i in range(5)]
    assert len(_function(layers=layers).spec.layers) == 5
    with pytest.raises(pydantic.ValidationError, match="at most 5 items"):
        _function(layers=[*layers, _archive_layer("l5")])


@pytest.mark.parametrize(
    "image",
    [
        "registry.example.com/layers/tools:1.0",
        "registry.example.com/layers/tools",
        "registry.example.com/layers/tools@sha256:abc",
    ],
)
def test_a_layer_image_must_be_pinned_by_digest(image: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="image"):
        _function(layers=[{"name": "tools", "image": image}])


def test_a_layer_archive_needs_its_sha256() -> None:
    with pytest.raises(pydantic.ValidationError, match="sha256"):
        _function(layers=[{"name": "tools", "archive": {"url": "https://example.com/t.zip"}}])


@pytest.mark.parametrize("layer", [{"name": "x"}, {**_archive_layer("x"), "image": _IMAGE}])
def test_a_layer_sets_exactly_one_of_archive_or_image(layer: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError, match="exactly one of archive or image"):
        _function(layers=[layer])


def test_layers_are_refused_with_a_prebuilt_image() -> None:
    with pytest.raises(
        pydantic.ValidationError, match=re.escape("layers cannot be used with source.image")
    ):
        _function(
            runtime=None, handler=None, source={"image": _IMAGE}, layers=[_archive_layer("x")]
        )


def test_logs_are_text_unless_the_function_asks_for_json() -> None:
    assert _function().spec.logging is None
    assert _function(logging={}).spec.logging == function.Logging(format="Text")
    json_logs = _function(logging={"format": "JSON", "applicationLogLevel": "ERROR"}).spec
    assert json_logs.logging is not None
    assert json_logs.logging.application_log_level == "ERROR"


@pytest.mark.parametrize("levels", [{"applicationLogLevel": "DEBUG"}, {"systemLogLevel": "WARN"}])
@pytest.mark.parametrize("log_format", [None, "Text"])
def test_log_levels_need_the_json_format_as_in_lambda(
    levels: dict[str, str], log_format: str | None
) -> None:
    logging = {**levels} if log_format is None else {"format": log_format, **levels}
    with pytest.raises(pydantic.ValidationError, match="need format: JSON"):
        _function(logging=logging)


@pytest.mark.parametrize("level", ["INFO ", "info", "WARNING", "CRITICAL"])
def test_log_levels_are_lambdas_names(level: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        _function(logging={"format": "JSON", "applicationLogLevel": level})


def test_scale_from_zero_starts_one_pod_and_creation_starts_min_replicas_by_default() -> None:
    scale = _function(scale={"minReplicas": 2}).spec.scale
    assert scale.activation_scale == 1
    assert scale.initial_scale is None
    assert scale.replicas_at_creation == 2
    assert _function(scale={"initialScale": 0}).spec.scale.replicas_at_creation == 0


@pytest.mark.parametrize(
    ("scale", "message"),
    [
        ({"maxReplicas": 3, "activationScale": 4}, "activationScale must not be greater"),
        ({"maxReplicas": 3, "initialScale": 4}, "initialScale must be between"),
        ({"minReplicas": 2, "initialScale": 1}, "initialScale must be between"),
    ],
)
def test_scale_settings_out_of_their_bounds_are_refused(
    scale: dict[str, int], message: str
) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        _function(scale=scale)
