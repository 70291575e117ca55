"""A handler that cannot be loaded: the server still runs, classifies the failure with Lambda's
init error types and messages, and answers every invocation with it at once."""

from __future__ import annotations

import json
import re
import time

import pytest

from .conftest import Starter

CASES = [
    ("no_such_module.handler", "Runtime.ImportModuleError"),
    ("imports_missing.handler", "Runtime.ImportModuleError"),
    ("app.no_such_function", "Runtime.HandlerNotFound"),
    ("broken_syntax.handler", "Runtime.UserCodeSyntaxError"),
    ("nodot", "Runtime.MalformedHandlerName"),
]

# Lambda's messages, as its runtime interface clients word them (awslambdaric's bootstrap.py,
# aws-lambda-nodejs-runtime-interface-client's UserFunction.js): a pattern per case.
PYTHON_MESSAGES = {
    "no_such_module.handler": re.escape(
        "Unable to import module 'no_such_module': No module named 'no_such_module'"
    ),
    "imports_missing.handler": re.escape(
        "Unable to import module 'imports_missing': No module named 'kfn_no_such_dependency'"
    ),
    "app.no_such_function": re.escape("Handler 'no_such_function' missing on module 'app'"),
    "broken_syntax.handler": re.escape("Syntax error in module 'broken_syntax': ")
    + r".+ \(broken_syntax\.py, line 1\)",
    "pkg/broken_syntax.handler": re.escape("Syntax error in module 'pkg/broken_syntax': "),
}
NODE_MESSAGES = {
    "no_such_module.handler": re.escape("Error: Cannot find module 'no_such_module'"),
    "imports_missing.handler": re.escape("Error: Cannot find module 'kfn-no-such-dependency'")
    + r"\nRequire stack:\n- .*imports_missing\.js",
    "app.no_such_function": re.escape("app.no_such_function is undefined or not exported"),
    "broken_syntax.handler": r"SyntaxError: .+",
    "esm_broken.handler": r"SyntaxError: .+",
    "esm_imports_missing.handler": re.escape("Error: Cannot find package 'kfn-no-such-dependency'"),
}


@pytest.mark.parametrize(("handler", "error_type"), CASES)
def test_a_handler_that_cannot_load_makes_ready_503_and_invocations_502(
    start_runtime: Starter, language: str, handler: str, error_type: str
) -> None:
    rt = start_runtime(language, handler)
    ready = rt.wait_ready()
    assert ready.status == 503
    assert ready.json()["errorType"] == error_type
    assert ready.headers["Kfn-Init-Error"] == error_type
    assert ready.json()["errorMessage"]
    assert rt.request("GET", "/_kfn/live").status == 200
    invoked = rt.invoke({})
    assert invoked.status == 502
    assert invoked.headers["Kfn-Function-Error"] == "Unhandled"
    assert invoked.json() == ready.json()
    assert rt.request("GET", "/hello").status == 502


@pytest.mark.parametrize("handler", sorted(PYTHON_MESSAGES))
def test_the_python_runtime_words_init_errors_as_lambda_does(
    start_runtime: Starter, handler: str
) -> None:
    rt = start_runtime("python", handler)
    error = rt.wait_ready().json()
    assert re.match(PYTHON_MESSAGES[handler], error["errorMessage"]), error


@pytest.mark.parametrize("handler", sorted(NODE_MESSAGES))
def test_the_node_runtime_words_init_errors_as_lambda_does(
    start_runtime: Starter, handler: str
) -> None:
    rt = start_runtime("nodejs", handler)
    error = rt.wait_ready().json()
    assert re.match(NODE_MESSAGES[handler], error["errorMessage"]), error


@pytest.mark.parametrize(
    ("handler", "error_type"),
    [
        ("esm_broken.handler", "Runtime.UserCodeSyntaxError"),
        ("esm_imports_missing.handler", "Runtime.ImportModuleError"),
    ],
)
def test_the_node_runtime_classifies_es_modules_too(
    start_runtime: Starter, handler: str, error_type: str
) -> None:
    rt = start_runtime("nodejs", handler)
    ready = rt.wait_ready()
    assert ready.headers["Kfn-Init-Error"] == error_type
    assert ready.json()["errorType"] == error_type


def test_a_python_syntax_error_in_a_package_module_names_it_as_the_handler_does(
    start_runtime: Starter,
) -> None:
    rt = start_runtime("python", "pkg/broken_syntax.handler")
    error = rt.wait_ready().json()
    assert error["errorType"] == "Runtime.UserCodeSyntaxError"
    assert error["stackTrace"][0].startswith('  File "')
    assert 'broken_syntax.py" Line 1' in error["stackTrace"][0]


def test_an_export_that_is_not_a_function_is_named_so(start_runtime: Starter) -> None:
    rt = start_runtime("nodejs", "app.NOT_A_FUNCTION")
    error = rt.wait_ready().json()
    assert error == {
        "errorType": "Runtime.HandlerNotFound",
        "errorMessage": "app.NOT_A_FUNCTION is not a function",
        "stackTrace": [],
    }


def test_the_init_error_is_printed_once_and_reported_on_one_line_of_json(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(language, "app.no_such_function")
    rt.wait_ready()
    rt.invoke({})
    rt.invoke({})
    rt.wait_ready()
    reports = [line for line in rt.lines if line.startswith("kfn runtime: init error ")]
    assert len(reports) == 1
    reported = json.loads(reports[0].removeprefix("kfn runtime: init error "))
    assert reported["errorType"] == "Runtime.HandlerNotFound"
    assert reported["errorMessage"] == rt.invoke({}).json()["errorMessage"]
    records = [line for line in rt.lines if "Runtime.HandlerNotFound" in line]
    assert len(records) == 2  # Lambda's error record and the report


def test_started_answers_once_loading_ended_whether_or_not_the_handler_loaded(
    start_runtime: Starter, language: str
) -> None:
    failed = start_runtime(language, "app.no_such_function")
    failed.wait_ready()
    assert failed.request("GET", "/_kfn/started").status == 200
    loaded = start_runtime(language, "app.echo")
    assert loaded.wait_ready().status == 200
    assert loaded.request("GET", "/_kfn/started").json() == {"status": "started"}


def test_started_is_503_while_the_handler_still_loads(start_runtime: Starter) -> None:
    rt = start_runtime("python", "slow_import.handler")
    assert rt.request("GET", "/_kfn/started").status == 503
    assert rt.request("GET", "/_kfn/ready").json() == {"status": "initializing"}


def _answer_seconds(start_runtime: Starter, language: str, handler: str) -> list[float]:
    rt = start_runtime(language, handler)
    rt.wait_ready()
    times = []
    conn = rt.connection()
    for _ in range(20):
        t0 = time.perf_counter()
        answer = rt.request("POST", "/_kfn/invoke", b"{}", conn=conn)
        times.append(time.perf_counter() - t0)
        assert answer.status == 502
    conn.close()
    return times


@pytest.mark.parametrize("handler", ["imports_missing.handler", "app.no_such_function"])
def test_an_invocation_of_a_handler_that_failed_to_load_is_answered_at_once(
    start_runtime: Starter, language: str, handler: str
) -> None:
    """Lambda answers an init error at once; the caller must not wait for its timeout (3 s)."""
    times = _answer_seconds(start_runtime, language, handler)
    assert max(times) < 0.5, times


def test_an_invocation_that_arrives_during_a_failing_load_is_answered_when_it_fails(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(language, "no_such_module.handler")
    t0 = time.perf_counter()
    answer = rt.invoke({}, {"Kfn-Timeout-Ms": "30000"})
    assert answer.status == 502
    assert answer.json()["errorType"] == "Runtime.ImportModuleError"
    assert time.perf_counter() - t0 < 2.0
