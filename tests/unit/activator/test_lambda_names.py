"""Lambda's API, the pure parts: paths, FunctionName forms, headers, facts, pages, keys."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from kfn.activator import answers, lambda_api, lambda_keys, sigv4
from kfn.api import function as function_api
from tests.unit.apiserver import ApiServer

# --- paths -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "operation", "namespace", "name"),
    [
        (b"POST", b"/2015-03-31/functions/hello/invocations", "Invoke", "", "hello"),
        (b"POST", b"/team-a/2015-03-31/functions/hello/invocations", "Invoke", "team-a", "hello"),
        (b"GET", b"/2015-03-31/functions/hello", "GetFunction", "", "hello"),
        (
            b"GET",
            b"/2015-03-31/functions/hello/configuration",
            "GetFunctionConfiguration",
            "",
            "hello",
        ),
        (b"GET", b"/2015-03-31/functions/", "ListFunctions", "", ""),
        (b"GET", b"/t/2015-03-31/functions?MaxItems=2", "ListFunctions", "t", ""),
        (
            b"POST",
            b"/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A1%3Afunction%3Ahello/invocations",
            "Invoke",
            "",
            "arn:aws:lambda:eu-west-1:1:function:hello",
        ),
    ],
)
def test_operations_are_read_from_the_method_and_path(
    method: bytes, url: bytes, operation: str, namespace: str, name: str
) -> None:
    call = lambda_api.parse(method, url)
    assert isinstance(call, lambda_api.Call)
    assert (call.operation, call.namespace, call.function_name) == (operation, namespace, name)


@pytest.mark.parametrize(
    ("method", "url", "error_type"),
    [
        (b"DELETE", b"/2015-03-31/functions/hello", "UnknownOperationException"),
        (b"POST", b"/2015-03-31/functions/", "UnknownOperationException"),
        (b"GET", b"/2015-03-31/functions/hello/policy", "UnknownOperationException"),
        (b"GET", b"/a/b/2015-03-31/functions/", "ResourceNotFoundException"),
        (b"GET", b"/Team_A/2015-03-31/functions/", "ResourceNotFoundException"),
    ],
)
def test_other_requests_are_refused_in_lambdas_shape(
    method: bytes, url: bytes, error_type: str
) -> None:
    answer = lambda_api.parse(method, url)
    assert isinstance(answer, answers.Answer)
    assert f"X-Amzn-ErrorType: {error_type}\r\n".encode() in answer.extra
    assert json.loads(answer.body)["Type"] == "User"


# --- FunctionName ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "qualifier", "name", "chosen"),
    [
        ("hello", None, "hello", "$LATEST"),
        ("hello:$LATEST", None, "hello", "$LATEST"),
        ("hello:7", None, "hello", "7"),
        ("hello", "prod", "hello", "prod"),
        ("123456789012:function:hello", None, "hello", "$LATEST"),
        ("123456789012:function:hello:$LATEST", "$LATEST", "hello", "$LATEST"),
        ("arn:aws:lambda:eu-west-1:123456789012:function:hello", None, "hello", "$LATEST"),
        ("arn:aws:lambda:eu-west-1:123456789012:function:hello:v2", None, "hello", "v2"),
    ],
)
def test_every_function_name_form_boto3_accepts_names_a_function(
    given: str, qualifier: str | None, name: str, chosen: str
) -> None:
    assert lambda_api.function_name(given, qualifier) == lambda_api.Target(name, chosen)


@pytest.mark.parametrize(
    ("given", "qualifier", "error_type"),
    [
        ("hello:1", "2", "InvalidParameterValueException"),
        ("arn:aws:s3:::bucket", None, "InvalidParameterValueException"),
        ("a:b:c:d:e", None, "InvalidParameterValueException"),
        ("Hello", None, "ResourceNotFoundException"),
    ],
)
def test_function_names_that_name_nothing_are_refused(
    given: str, qualifier: str | None, error_type: str
) -> None:
    answer = lambda_api.function_name(given, qualifier)
    assert isinstance(answer, answers.Answer)
    assert f"X-Amzn-ErrorType: {error_type}".encode() in answer.extra


def test_only_latest_is_served_and_another_qualifier_is_named_in_the_refusal() -> None:
    assert lambda_api.qualifier_refusal(lambda_api.Target("f", "$LATEST"), "r", "1") is None
    refused = lambda_api.qualifier_refusal(lambda_api.Target("f", "7"), "eu-west-1", "1")
    assert refused is not None
    assert refused.status == 404
    assert "arn:aws:lambda:eu-west-1:1:function:f:7" in json.loads(refused.body)["message"]


# --- Invoke's headers ------------------------------------------------------------------------


def b64(value: object) -> bytes:
    return base64.b64encode(json.dumps(value).encode())


def test_invoke_headers_are_read_as_lambda_reads_them() -> None:
    options = lambda_api.invoke_options(
        [(b"X-Amz-Log-Type", b"Tail"), (b"X-Amz-Client-Context", b64({"custom": {"a": 1}}))]
    )
    assert options == lambda_api.InvokeOptions(
        "RequestResponse", True, b64({"custom": {"a": 1}}).decode()
    )
    event = lambda_api.invoke_options(
        [(b"X-Amz-Invocation-Type", b"Event"), (b"X-Amz-Log-Type", b"Tail")]
    )
    assert isinstance(event, lambda_api.InvokeOptions)
    assert (event.invocation_type, event.log_tail) == ("Event", False)


@pytest.mark.parametrize(
    ("headers", "error_type"),
    [
        ([(b"X-Amz-Invocation-Type", b"Later")], "InvalidParameterValueException"),
        ([(b"X-Amz-Log-Type", b"Head")], "InvalidParameterValueException"),
        ([(b"X-Amz-Client-Context", b"not base64!")], "InvalidRequestContentException"),
        ([(b"X-Amz-Client-Context", b64([1, 2]))], "InvalidRequestContentException"),
        (
            [(b"X-Amz-Client-Context", b64({"custom": "x" * lambda_api.CLIENT_CONTEXT_LIMIT}))],
            "InvalidParameterValueException",
        ),
    ],
)
def test_invoke_headers_lambda_refuses_are_refused(
    headers: list[tuple[bytes, bytes]], error_type: str
) -> None:
    answer = lambda_api.invoke_options(headers)
    assert isinstance(answer, answers.Answer)
    assert f"X-Amzn-ErrorType: {error_type}".encode() in answer.extra


def test_a_function_error_is_200_with_function_error_and_throttling_is_429() -> None:
    failed = lambda_api.invoke_answer(
        lambda_api.Result(500, b'{"errorType": "E"}', True, b"bG9n"), b"id-1"
    )
    assert failed.status == 200
    assert b"X-Amz-Function-Error: Unhandled\r\n" in failed.extra
    assert b"X-Amz-Log-Result: bG9n\r\n" in failed.extra
    assert b"X-Amz-Request-Id: id-1\r\n" in failed.extra
    throttled = lambda_api.invoke_answer(
        lambda_api.Result(429, b'{"errorMessage": "Rate Exceeded."}', False), b"id-2"
    )
    assert throttled.status == 429
    assert b"X-Amzn-ErrorType: TooManyRequestsException" in throttled.extra


# --- GetFunction and ListFunctions -----------------------------------------------------------


def function(name: str, **spec: Any) -> function_api.Function:
    return function_api.Function.model_validate(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": name, "namespace": "team-a"},
            "spec": {
                "runtime": "nodejs18",
                "handler": "index.handler",
                "source": {"inline": {"files": [{"name": "index.js", "content": "x"}]}},
                **spec,
            },
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "BuildFailed",
                        "message": "the build failed",
                        "lastTransitionTime": "2026-05-01T10:00:00Z",
                    }
                ]
            },
        }
    )


def test_a_functions_configuration_is_lambdas_without_secret_values() -> None:
    fn = function(
        "report",
        timeout="30s",
        resources={"limits": {"memory": "512Mi"}},
        env=[
            {"name": "PLAIN", "value": "shown-by-name-only"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ],
    )
    config = lambda_api.configuration(lambda_api.facts_of(fn), "eu-west-1", "123456789012")
    assert config["FunctionArn"] == "arn:aws:lambda:eu-west-1:123456789012:function:report"
    assert config["Runtime"] == "nodejs18.x"
    assert (config["MemorySize"], config["Timeout"]) == (512, 30)
    assert (config["State"], config["StateReason"]) == ("Failed", "the build failed")
    assert config["LastModified"] == "2026-05-01T10:00:00.000+0000"
    assert config["Environment"] == {"Variables": {"PLAIN": ""}}
    assert "shown-by-name-only" not in json.dumps(config)
    assert config["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": "/aws/lambda/report"}


def test_a_json_logging_functions_configuration_gives_its_levels_as_lambda_does() -> None:
    fn = function("report", logging={"format": "JSON", "applicationLogLevel": "DEBUG"})
    config = lambda_api.configuration(lambda_api.facts_of(fn), "eu-west-1", "123456789012")
    assert config["LoggingConfig"] == {
        "LogFormat": "JSON",
        "LogGroup": "/aws/lambda/report",
        "ApplicationLogLevel": "DEBUG",
        "SystemLogLevel": "INFO",
    }


def test_list_functions_pages_by_name_with_a_marker() -> None:
    facts = [lambda_api.Facts("team-a", name) for name in ("c", "a", "e", "b", "d")]
    pages, marker = [], ""
    while True:
        query = {"MaxItems": "2", **({"Marker": marker} if marker else {})}
        page = lambda_api.list_page(facts, query, "r", "1")
        assert isinstance(page, dict)
        pages.append([f["FunctionName"] for f in page["Functions"]])
        marker = str(page.get("NextMarker", ""))
        if not marker:
            break
    assert pages == [["a", "b"], ["c", "d"], ["e"]]
    assert isinstance(lambda_api.list_page(facts, {"MaxItems": "0"}, "r", "1"), answers.Answer)


# --- access keys -----------------------------------------------------------------------------


def secret(namespace: str, data: dict[str, object]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": lambda_keys.SECRET_NAME, "namespace": namespace},
        "data": {
            key: base64.b64encode(
                value if isinstance(value, bytes) else json.dumps(value).encode()
            ).decode()
            for key, value in data.items()
        },
    }


def test_a_secrets_keys_are_read_and_entries_that_do_not_parse_are_skipped() -> None:
    body = secret(
        "team-a",
        {
            "AKIAGOOD": {"serviceAccount": "ci", "secretAccessKey": "s3cret"},
            "AKIANOACCOUNT": {"secretAccessKey": "s"},
            "AKIABADACCOUNT": {"serviceAccount": "Not_A_Name", "secretAccessKey": "s"},
            "AKIANOSECRET": {"serviceAccount": "ci"},
            "AKIANOTJSON": b"ci:s3cret",
        },
    )
    assert lambda_keys.keys_of(body) == (sigv4.Key("AKIAGOOD", "s3cret", "team-a", "ci"),)
    other_name = {**body, "metadata": {"name": "other", "namespace": "team-a"}}
    assert lambda_keys.keys_of(other_name) == ()


def test_the_watched_keys_follow_their_secrets_in_every_namespace() -> None:
    api = ApiServer()
    keys = lambda_keys.AccessKeys(reflect=api.reflect)
    keys.start()
    try:
        entry = {"serviceAccount": "ci", "secretAccessKey": "a"}
        api.send([secret("team-a", {"AKIASHARED": entry}), secret("team-b", {"AKIASHARED": entry})])
        assert [k.namespace for k in keys.holding("AKIASHARED")] == ["team-a", "team-b"]
        api.send(("DELETED", secret("team-a", {})))
        assert [k.namespace for k in keys.holding("AKIASHARED")] == ["team-b"]
        assert keys.holding("AKIAUNKNOWN") == ()
    finally:
        keys.stop()
        api.hang_up()
