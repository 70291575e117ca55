"""Lambda's retry rules for asynchronous events (kfn.retry), shared by the activator and
the trigger workers."""

from __future__ import annotations

import pytest

from kfn import retry

POLICY = retry.Policy(retries=2, max_event_age=3600.0, retry_delays=(60.0, 120.0))


@pytest.mark.parametrize(
    ("status", "function_error", "kind"),
    [
        (200, False, "success"),
        (202, False, "success"),
        (200, True, "function-error"),
        (500, False, "function-error"),
        (504, False, "function-error"),
        (0, False, "throttled"),
        (429, False, "throttled"),
        (502, False, "throttled"),
        (503, False, "throttled"),
        # Marked as the function's failure, whatever the status: the process died
        # mid-request (the activator's Runtime.ExitError), an init error, a result too large.
        (502, True, "function-error"),
        (500, True, "function-error"),
        (504, True, "function-error"),
        (400, False, "rejected"),
        (404, False, "rejected"),
    ],
)
def test_an_answer_is_classified_as_lambda_does(
    status: int, function_error: bool, kind: retry.Kind
) -> None:
    assert retry.kind_of(status, function_error) == kind


def test_function_errors_wait_one_then_two_minutes_and_stop_after_the_retries() -> None:
    assert retry.decide(POLICY, "function-error", failures=1, throttles=0, age=0) == retry.Retry(60)
    assert retry.decide(POLICY, "function-error", failures=2, throttles=0, age=60) == retry.Retry(
        120
    )
    assert retry.decide(POLICY, "function-error", failures=3, throttles=0, age=180) == retry.GiveUp(
        "RetriesExhausted"
    )


def test_throttling_backs_off_exponentially_without_using_retries() -> None:
    delays = [
        retry.decide(POLICY, "throttled", failures=5, throttles=n, age=0) for n in range(1, 12)
    ]
    assert delays[:4] == [retry.Retry(1), retry.Retry(2), retry.Retry(4), retry.Retry(8)]
    assert delays[-1] == retry.Retry(300)


def test_an_event_that_would_outlive_its_maximum_age_gives_up() -> None:
    assert retry.decide(POLICY, "throttled", failures=0, throttles=1, age=3599.5) == retry.GiveUp(
        "EventAgeExceeded"
    )
    assert retry.decide(POLICY, "function-error", failures=1, throttles=0, age=3550) == (
        retry.GiveUp("EventAgeExceeded")
    )


def test_a_refused_event_is_not_retried_and_a_success_is_done() -> None:
    assert retry.decide(POLICY, "rejected", failures=0, throttles=0, age=0) == retry.GiveUp(
        "Rejected"
    )
    assert retry.decide(POLICY, "success", failures=2, throttles=3, age=10) == retry.Done()


def test_zero_retries_gives_up_after_the_first_failure() -> None:
    policy = retry.Policy(retries=0)
    assert retry.decide(policy, "function-error", failures=1, throttles=0, age=0) == retry.GiveUp(
        "RetriesExhausted"
    )
