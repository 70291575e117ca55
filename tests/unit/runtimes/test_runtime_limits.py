"""Time-outs, the per-pod concurrency limit and payload limits."""

from __future__ import annotations

import concurrent.futures
import time

from .conftest import Response, RunningRuntime, Starter

SIX_MIB = 6 * 1024 * 1024


def _in_background(
    pool: concurrent.futures.ThreadPoolExecutor, rt: RunningRuntime, event: dict[str, int]
) -> concurrent.futures.Future[Response]:
    return pool.submit(rt.invoke, event)


def _wait_until_started(rt: RunningRuntime, count: int) -> None:
    deadline = time.monotonic() + 5
    while rt.output().count("START RequestId") < count:
        assert time.monotonic() < deadline, rt.output()
        time.sleep(0.01)


def test_a_handler_past_the_function_timeout_answers_504(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(language, "app.slow_async", KFN_TIMEOUT_MS="300")
    began = time.monotonic()
    r = rt.invoke({"ms": 3000})
    assert time.monotonic() - began < 2.5
    assert r.status == 504
    assert r.headers["Kfn-Function-Error"] == "Unhandled"
    assert r.json()["errorType"] == "TimeoutError"
    assert r.json()["errorMessage"] == "Task timed out after 0.30 seconds"
    assert "Status: timeout" in rt.wait_for_output("Status: timeout")


def test_the_timeout_header_overrides_the_function_timeout(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(language, "app.slow_async", KFN_TIMEOUT_MS="60000")
    r = rt.invoke({"ms": 3000}, {"Kfn-Timeout-Ms": "400"})
    assert r.status == 504
    assert r.json()["errorMessage"] == "Task timed out after 0.40 seconds"


def test_a_timeout_header_longer_than_the_functions_own_is_cut_to_it(
    start_runtime: Starter, language: str
) -> None:
    """Whoever reaches a pod cannot stretch the function's time with ``Kfn-Timeout-Ms``."""
    rt = start_runtime(language, "app.slow_async", KFN_TIMEOUT_MS="400")
    r = rt.invoke({"ms": 3000}, {"Kfn-Timeout-Ms": "600000"})
    assert r.status == 504
    assert r.json()["errorMessage"] == "Task timed out after 0.40 seconds"


def test_an_absolute_deadline_header_no_longer_shortens_an_invocation(
    start_runtime: Starter, language: str
) -> None:
    """The contract's old ``Kfn-Deadline-Ms`` counted queueing and loading as the function's
    time; a runtime now ignores it, and the time counts from the handler's start."""
    rt = start_runtime(language, "app.echo", KFN_TIMEOUT_MS="2000")
    rt.wait_ready()
    past = int(time.time() * 1000) - 1000
    r = rt.invoke({}, {"Kfn-Deadline-Ms": str(past)})
    assert r.status == 200
    assert 1500 < r.json()["context"]["remaining_ms"] <= 2000


def test_a_sync_python_handler_past_its_deadline_keeps_its_slot_until_it_returns(
    start_runtime: Starter,
) -> None:
    rt = start_runtime("python", "app.slow", KFN_TIMEOUT_MS="200", KFN_CONCURRENCY="1")
    assert rt.invoke({"ms": 1200}).status == 504
    # The thread still runs: the only slot is taken, so the pod is neither free nor ready.
    assert rt.invoke({"ms": 0}).status == 429
    assert rt.request("GET", "/_kfn/ready").status == 503
    time.sleep(1.2)
    assert rt.invoke({"ms": 0}).status == 200
    assert rt.request("GET", "/_kfn/ready").status == 200


def test_invocations_over_the_concurrency_limit_answer_429(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(language, "app.slow_async", KFN_CONCURRENCY="2")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = [_in_background(pool, rt, {"ms": 800}) for _ in range(2)]
        _wait_until_started(rt, 2)
        refused = rt.invoke({"ms": 0})
        assert refused.status == 429
        assert refused.json()["errorType"] == "TooManyRequestsException"
        assert refused.headers["Retry-After"] == "1"
        assert refused.headers["Kfn-Not-Started"] == "busy"
        assert refused.headers["Kfn-Handler-Duration"] is None  # the handler never ran
        assert [f.result().status for f in slow] == [200, 200]
    assert rt.invoke({"ms": 0}).status == 200


def test_a_request_body_over_6_mib_answers_413(start_runtime: Starter, language: str) -> None:
    rt = start_runtime(language, "app.echo")
    body = b'"' + b"x" * SIX_MIB + b'"'
    r = rt.request("POST", "/_kfn/invoke", body, {"Content-Type": "application/json"})
    assert r.status == 413
    assert r.json()["errorType"] == "RequestEntityTooLargeException"
    http_event = rt.request("PUT", "/upload", body, {"Content-Type": "text/plain"})
    assert http_event.status == 413


def test_a_request_body_just_under_the_limit_is_accepted(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(language, "app.plain")
    body = b'"' + b"x" * (SIX_MIB - 2) + b'"'
    assert rt.request("POST", "/_kfn/invoke", body).status == 200


def test_a_response_over_6_mib_answers_502(start_runtime: Starter, language: str) -> None:
    rt = start_runtime(language, "app.echo")
    # The echo handler returns the event and its context: a bit more than came in.
    body = b'{"blob":"' + b"x" * (SIX_MIB - 100) + b'"}'
    assert len(body) <= SIX_MIB
    r = rt.request("POST", "/_kfn/invoke", body)
    assert r.status == 502
    assert r.json()["errorType"] == "ResponseSizeTooLarge"


def test_a_handlers_own_429_cannot_carry_the_runtimes_marks(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(language, "app.too_many")
    r = rt.request("GET", "/anything")
    assert r.status == 429
    assert r.headers["Retry-After"] == "1"
    assert r.headers["Kfn-Not-Started"] is None
    # The runtime's own measure, once, not the handler's forged one.
    assert r.headers.get_all("Kfn-Handler-Duration") != ["999"]
    assert len(r.headers.get_all("Kfn-Handler-Duration") or []) == 1
    assert r.json() == {"message": "Too Many Requests"}
