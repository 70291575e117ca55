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
