"""Two budgets, as Lambda keeps them: the init budget for loading the handler
(``KFN_INIT_TIMEOUT_MS``) and the function's timeout, which counts from the handler's start, so a
slow load never eats into the time an invocation is given."""

from __future__ import annotations

import threading
import time

from .conftest import Starter

HANDLER = {"python": "slow_import.timed", "nodejs": "slow_import.timed"}


def test_an_invocation_waiting_for_a_slow_load_gets_its_whole_timeout_at_handler_start(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(language, HANDLER[language], SLOW_IMPORT_MS="1500", KFN_TIMEOUT_MS="3000")
    t0 = time.perf_counter()
    r = rt.invoke({"ms": 2000})
    took = time.perf_counter() - t0
    assert r.status == 200, r.body
    # It waited about 1.5 s for the load, then had its whole 3 s, and used 2 of them.
    assert took > 3.3
    assert 2900 <= r.json()["remaining_at_start"] <= 3000
    assert 700 <= r.json()["remaining_at_end"] <= 1050


def test_a_load_slower_than_the_init_budget_is_an_init_timeout_answered_at_once(
    start_runtime: Starter, language: str
) -> None:
    rt = start_runtime(
        language, HANDLER[language], SLOW_IMPORT_MS="5000", KFN_INIT_TIMEOUT_MS="800"
    )
    waiting: list[float] = []

    def early() -> None:
        t0 = time.perf_counter()
        answer = rt.invoke({})
        assert answer.status == 502
        waiting.append(time.perf_counter() - t0)

    caller = threading.Thread(target=early)
    caller.start()
    ready = rt.wait_ready(timeout=3)
    caller.join(5)
    assert ready.status == 503
    assert ready.headers["Kfn-Init-Error"] == "Runtime.InitTimeout"
    assert rt.request("GET", "/_kfn/started").status == 200
    # A caller that arrived during the load got the init error when the budget ran out.
    assert len(waiting) == 1
    assert waiting[0] < 1.5, waiting
    t0 = time.perf_counter()
    r = rt.invoke({})
    assert time.perf_counter() - t0 < 0.5
    assert r.status == 502
    assert r.headers["Kfn-Function-Error"] == "Unhandled"
    assert r.json()["errorType"] == "Runtime.InitTimeout"
    assert r.json()["errorMessage"].startswith("Init timed out after 0.80 seconds")
    out = rt.wait_for_output("kfn runtime: init error")
    assert "INIT_REPORT Init Duration: " in out
    assert "\tPhase: init\tStatus: timeout" in out
