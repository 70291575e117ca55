"""The invoke path of both runtimes: results, errors, context and logs."""

from __future__ import annotations

import re

import pytest

from .conftest import Starter


def test_invoke_returns_the_handlers_result_as_json(start_runtime: Starter, language: str) -> None:
    rt = start_runtime(language, "app.echo")
    r = rt.invoke({"answer": 42, "nested": {"list": [1, "two"]}}, {"Kfn-Request-Id": "req-1"})
    assert r.status == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["Kfn-Request-Id"] == "req-1"
    assert r.json()["event"] == {"answer": 42, "nested": {"list": [1, "two"]}}


def test_an_empty_invoke_body_is_an_empty_event(start_runtime: Starter, language: str) -> None:
    rt = start_runtime(language, "app.echo")
    r = rt.request("POST", "/_kfn/invoke", b"")
    assert r.status == 200
    assert r.json()["event"] == {}


def test_a_body_that_is_not_json_is_rejected_with_400(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(language, "app.echo")
    r = rt.request("POST", "/_kfn/invoke", b"{not json")
    assert r.status == 400
    assert r.json()["errorType"] == "InvalidRequestContentException"


def test_context_carries_the_function_and_request_attributes(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(language, "app.echo", KFN_FUNCTION_NAME="orders", AWS_REGION="eu-local-1")
    r = rt.invoke({}, {"Kfn-Request-Id": "ctx-1", "Kfn-Timeout-Ms": "2000"})
    ctx = r.json()["context"]
    assert ctx["function_name"] == "orders"
    assert ctx["function_version"] == "$LATEST"
    assert ctx["invoked_function_arn"] == "arn:aws:lambda:eu-local-1:000000000000:function:orders"
    assert ctx["memory_limit_in_mb"] == "256"
    assert ctx["aws_request_id"] == "ctx-1"
    assert ctx["log_group_name"] == "/aws/lambda/orders"
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\].+", ctx["log_stream_name"])
    assert 0 < ctx["remaining_ms"] <= 2000
    if language == "nodejs":
        assert ctx["callback_waits"] is True


def test_remaining_time_follows_the_function_timeout_without_a_timeout_header(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(language, "app.echo", KFN_TIMEOUT_MS="7000")
    remaining = rt.invoke({}).json()["context"]["remaining_ms"]
    assert 6000 < remaining <= 7000


def test_a_handler_exception_answers_500_with_lambdas_error_shape(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(language, "app.fail")
    r = rt.invoke({})
    assert r.status == 500
    assert r.headers["Kfn-Function-Error"] == "Unhandled"
    body = r.json()
    assert body["errorType"] == "BoomError"
    assert body["errorMessage"] == "the handler failed on purpose"
    assert body["stackTrace"]
    assert any("app." in line for line in body["stackTrace"])
    assert not any("kfn_runtime" in line for line in body["stackTrace"])


def test_handler_output_is_tagged_with_the_request_id_between_start_and_report(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(language, "app.echo")
    rt.invoke({}, {"Kfn-Request-Id": "log-1"})
    out = rt.wait_for_output("REPORT RequestId: log-1")
    lines = out.splitlines()
    start = lines.index("START RequestId: log-1 Version: $LATEST")
    end = lines.index("END RequestId: log-1")
    handler_lines = lines[start + 1 : end]
    assert any("log-1" in line and "echo says hi" in line for line in handler_lines)
    assert any("log-1" in line and "echo logs via logging" in line for line in handler_lines)
    report = next(line for line in lines if line.startswith("REPORT RequestId: log-1"))
    assert re.search(
        r"Duration: [\d.]+ ms\tBilled Duration: \d+ ms\tMemory Size: 256 MB\t"
        r"Max Memory Used: \d+ MB",
        report,
    )


def test_the_first_report_carries_the_init_duration_and_later_ones_do_not(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(language, "app.echo")
    rt.wait_ready()
    rt.invoke({}, {"Kfn-Request-Id": "first"})
    rt.invoke({}, {"Kfn-Request-Id": "second"})
    out = rt.wait_for_output("REPORT RequestId: second")
    first = next(x for x in out.splitlines() if x.startswith("REPORT RequestId: first"))
    second = next(x for x in out.splitlines() if x.startswith("REPORT RequestId: second"))
    assert "Init Duration" in first
    assert "Init Duration" not in second


def test_an_async_python_handler_is_awaited(start_runtime: Starter) -> None:
    rt = start_runtime("python", "app.slow_async")
    assert rt.invoke({"ms": 10}).json() == {"slept": 10}


def test_a_node_callback_handler_answers_with_the_callback_value(start_runtime: Starter) -> None:
    rt = start_runtime("nodejs", "app.callback")
    assert rt.invoke({"k": 1}).json() == {"via": "callback", "event": {"k": 1}}


def test_a_node_callback_error_answers_500(start_runtime: Starter) -> None:
    rt = start_runtime("nodejs", "app.callback_error")
    r = rt.invoke({})
    assert r.status == 500
    assert r.json()["errorType"] == "BoomError"


def test_many_invocations_share_one_keep_alive_connection(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(language, "app.echo")
    conn = rt.connection()
    try:
        for i in range(20):
            r = rt.request("POST", "/_kfn/invoke", f'{{"i": {i}}}'.encode(), conn=conn)
            assert r.json()["event"] == {"i": i}
    finally:
        conn.close()


@pytest.mark.parametrize("path", ["/_kfn/live", "/_kfn/ready"])
def test_health_paths_answer_200_once_the_handler_loaded(
    start_runtime: Starter, language: str, path: str
) -> None:
    rt = start_runtime(language, "app.echo")
    rt.wait_ready()
    assert rt.request("GET", path).status == 200


def test_other_runtime_paths_are_reserved(start_runtime: Starter, language: str) -> None:
    rt = start_runtime(language, "app.echo")
    assert rt.request("GET", "/_kfn/invoke").status == 405
    assert rt.request("GET", "/_kfn/other").status == 404
