"""SIGTERM: readiness fails at once, in-flight requests finish, new ones are refused, exit 0."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from .conftest import Starter, sigterm


@pytest.mark.parametrize("handler", ["app.slow", "app.slow_async"])
def test_sigterm_drains_requests_in_flight_then_exits_zero(
    start_runtime: Starter, language: str, handler: str
) -> None:
    rt = start_runtime(language, handler, KFN_CONCURRENCY="3")
    rt.wait_ready()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        in_flight = [pool.submit(rt.invoke, {"ms": 700}) for _ in range(2)]
        deadline = time.monotonic() + 5
        while rt.output().count("START RequestId") < 2:
            assert time.monotonic() < deadline, rt.output()
            time.sleep(0.01)
        sigterm(rt)
        rt.wait_for_output("draining")
        ready = rt.request("GET", "/_kfn/ready")
        assert ready.status == 503
        refused = rt.invoke({"ms": 0})
        assert refused.status == 503
        assert refused.json()["errorType"] == "ServiceUnavailableException"
        assert refused.headers["Kfn-Not-Started"] == "draining"
        answers = [f.result(timeout=10) for f in in_flight]
    assert [a.status for a in answers] == [200, 200]
    assert [a.json() for a in answers] == [{"slept": 700}, {"slept": 700}]
    assert rt.proc.wait(timeout=10) == 0


def test_sigterm_with_nothing_in_flight_exits_zero_at_once(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(language, "app.echo")
    rt.wait_ready()
    began = time.monotonic()
    sigterm(rt)
    assert rt.proc.wait(timeout=10) == 0
    assert time.monotonic() - began < 2
