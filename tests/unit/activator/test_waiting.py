"""The two bounds of a synchronous request, decided with the time passed in."""

from __future__ import annotations

import pytest

from kfn.activator import waiting

WAITING = waiting.Phase.WAITING
SENT = waiting.Phase.SENT


@pytest.mark.parametrize(
    ("phase", "accepted", "now", "queue_timeout", "timeout", "expected"),
    [
        # Just accepted: the whole queue timeout, however long the function's timeout is.
        (WAITING, 100.0, 100.0, 15.0, 60.0, 15.0),
        (WAITING, 100.0, 100.0, 15.0, 1.0, 15.0),
        # Waiting again after a runtime refused it unstarted: what is left, from acceptance.
        (WAITING, 100.0, 110.0, 15.0, 60.0, 5.0),
        (WAITING, 100.0, 120.0, 15.0, 60.0, 0.0),
        # A queue timeout of 0: refused at once when no pod is free, as Lambda does.
        (WAITING, 100.0, 100.0, 0.0, 60.0, 0.0),
        # Sent: the function's timeout plus the margin, however long it waited before.
        (SENT, 100.0, 114.0, 15.0, 3.0, 3.0 + waiting.SERVE_MARGIN),
        (SENT, 100.0, 100.0, 15.0, 60.0, 60.0 + waiting.SERVE_MARGIN),
    ],
)
def test_the_timer_of_each_phase_runs_for_its_own_bound(
    *,
    phase: waiting.Phase,
    accepted: float,
    now: float,
    queue_timeout: float,
    timeout: float,
    expected: float,
) -> None:
    assert (
        waiting.timer(
            phase, accepted=accepted, now=now, queue_timeout=queue_timeout, timeout=timeout
        )
        == expected
    )


@pytest.mark.parametrize(
    ("phase", "expiry"),
    [(WAITING, "throttled"), (SENT, "timed_out")],
)
def test_a_request_that_never_ran_is_throttled_never_timed_out(
    phase: waiting.Phase, expiry: waiting.Expiry
) -> None:
    assert waiting.on_expiry(phase) == expiry


@pytest.mark.parametrize(
    ("accepted", "now", "queue_timeout", "timeout", "stops", "expected", "expiry"),
    [
        # Not stopping: the queue timeout alone.
        (100.0, 100.0, 15.0, 3.0, None, 15.0, "throttled"),
        # Stopping with a drain ending at 130: it may wait until 130 - (3 + 1) = 126.
        (100.0, 110.0, 60.0, 3.0, 130.0, 16.0, "stopping"),
        # Its own queue timeout ends first: that is its bound, and it is throttled.
        (100.0, 110.0, 15.0, 3.0, 130.0, 5.0, "throttled"),
        # The drain can no longer serve its whole timeout: refused at once.
        (100.0, 110.0, 60.0, 30.0, 130.0, 0.0, "stopping"),
    ],
)
def test_a_stopping_activator_lets_a_request_wait_only_while_its_drain_can_serve_it_whole(
    *,
    accepted: float,
    now: float,
    queue_timeout: float,
    timeout: float,
    stops: float | None,
    expected: float,
    expiry: waiting.Expiry,
) -> None:
    bounds = {"accepted": accepted, "queue_timeout": queue_timeout, "timeout": timeout}
    assert waiting.timer(WAITING, now=now, stops=stops, **bounds) == expected
    assert waiting.on_expiry(WAITING, stops=stops, **bounds) == expiry
    # Once sent, a request has its whole timeout, stopping or not; the drain is sized for it.
    assert waiting.timer(SENT, now=now, stops=stops, **bounds) == timeout + waiting.SERVE_MARGIN
    assert waiting.on_expiry(SENT, stops=stops, **bounds) == "timed_out"
