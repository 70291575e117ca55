"""Learning a function's cold starts from the activator's answers, and the lead they give."""

from __future__ import annotations

import datetime

import pytest

from kfn.triggers import invoke, warming
from tests.unit.triggers.conftest import ActivatorStub

KEY = ("shop", "report", "")


def ms(milliseconds: float) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=milliseconds)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"scale;dur=12.00, ready;dur=3.10, other;dur=0.50, cold-start;dur=1840.25", 1840.25),
        (b"cold-start;dur=12.5", 12.5),
        (b'cold-start;desc="wait";dur="7"', 7.0),
        (b"scale;dur=12.00", None),
        (b"cold-start", None),
        (b"cold-start;dur=soon", None),
        (b"cold-start;dur=-1", None),
    ],
)
def test_the_cold_start_is_read_from_the_activators_server_timing(
    header: bytes, expected: float | None
) -> None:
    assert warming.cold_start_ms(header) == expected


def test_a_function_never_seen_cold_is_woken_the_floor_ahead() -> None:
    assert warming.lead_of([]) == warming.FLOOR
    assert warming.ColdStarts().lead(KEY) == warming.FLOOR


def test_the_lead_is_the_longest_recent_cold_start_and_a_quarter_more() -> None:
    assert warming.lead_of([3000.0, 8000.0, 4000.0]) == ms(10_000)


def test_a_short_cold_start_gets_at_least_half_a_second_of_margin_and_the_floor() -> None:
    assert warming.lead_of([1800.0]) == ms(2300)
    assert warming.lead_of([400.0]) == warming.FLOOR


def test_the_lead_never_passes_its_ceiling() -> None:
    assert warming.lead_of([600_000.0]) == warming.CEILING


def test_an_answer_that_found_a_pod_changes_nothing() -> None:
    cold = warming.ColdStarts()
    cold.observe(KEY, 4000.0)
    cold.observe(KEY, None)
    assert cold.lead(KEY) == ms(5000)


def test_a_wake_that_came_too_late_counts_the_whole_cold_start_not_the_rest() -> None:
    cold = warming.ColdStarts()
    # Woken 2 s before the invocation, which still waited 1.2 s: the cold start took 3.2 s.
    cold.observe(KEY, 1200.0, woken_before=datetime.timedelta(seconds=2))
    assert cold.lead(KEY) == ms(4000)


def test_an_old_slow_cold_start_leaves_the_estimate_after_enough_newer_ones() -> None:
    cold = warming.ColdStarts(samples=3)
    cold.observe(KEY, 20_000.0)
    for _ in range(3):
        cold.observe(KEY, 2000.0)
    assert cold.lead(KEY) == ms(2500)


def test_functions_are_learnt_apart() -> None:
    cold = warming.ColdStarts()
    cold.observe(KEY, 8000.0)
    assert cold.lead(("shop", "report", "live")) == warming.FLOOR
    cold.forget(KEY)
    assert cold.lead(KEY) == warming.FLOOR


def test_the_invoker_wakes_through_the_invoke_door_with_its_token(
    activator: ActivatorStub,
) -> None:
    invoker = invoke.Invoker(activator.url, token=lambda: "sa-token")
    activator.answer(202, b"")
    outcome = invoker.wake("shop", "report", qualifier="live")
    assert outcome.status == 202
    (call,) = activator.calls
    assert call.path == "/_kfn/functions/shop/report%3Alive/wake"
    assert call.headers["Authorization"] == "Bearer sa-token"
    assert call.body == b""


def test_the_invoker_reads_each_answers_cold_start(activator: ActivatorStub) -> None:
    invoker = invoke.Invoker(activator.url)
    activator.answer(200, b"{}", Server_Timing="scale;dur=5.00, cold-start;dur=2400.00")
    activator.answer(200, b"{}")
    first = invoker.invoke("shop", "report", b"{}", request_id="r-1")
    second = invoker.invoke("shop", "report", b"{}", request_id="r-2")
    assert (first.cold_start_ms, second.cold_start_ms) == (2400.0, None)
