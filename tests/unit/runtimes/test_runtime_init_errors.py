"""A handler that cannot be loaded: the server still runs and reports Lambda's init errors."""

from __future__ import annotations

import pytest

from .conftest import Starter

CASES = [
    ("no_such_module.handler", "Runtime.ImportModuleError"),
    ("imports_missing.handler", "Runtime.ImportModuleError"),
    ("app.no_such_function", "Runtime.HandlerNotFound"),
    ("broken_syntax.handler", "Runtime.UserCodeSyntaxError"),
    ("nodot", "Runtime.MalformedHandlerName"),
]


@pytest.mark.parametrize(("handler", "error_type"), CASES)
def test_a_handler_that_cannot_load_makes_ready_503_and_invocations_502(
    start_runtime: Starter, language: str, handler: str, error_type: str
) -> None:
    rt = start_runtime(language, handler)
    ready = rt.wait_ready()
    assert ready.status == 503
    assert ready.json()["errorType"] == error_type
    assert ready.json()["errorMessage"]
    assert rt.request("GET", "/_kfn/live").status == 200
    invoked = rt.invoke({})
    assert invoked.status == 502
    assert invoked.headers["Kfn-Function-Error"] == "Unhandled"
    assert invoked.json() == ready.json()
    assert rt.request("GET", "/hello").status == 502


def test_the_init_error_is_printed_once(start_runtime: Starter, language: str) -> None:
    rt = start_runtime(language, "app.no_such_function")
    rt.wait_ready()
    rt.invoke({})
    rt.invoke({})
    rt.wait_ready()
    assert rt.output().count("Runtime.HandlerNotFound") == 1
