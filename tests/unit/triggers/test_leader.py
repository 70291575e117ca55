"""Leader election over a Lease: who leads, and when a follower takes over.

Each replica judges the holder by its own monotonic clock (seconds, ``now``); the wall
clock (``wall``) is only written. Times below are the follower's monotonic seconds.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kfn.triggers import leader

T0 = datetime.datetime(2026, 1, 1, 12, tzinfo=datetime.UTC)


def s(seconds: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=seconds)


def lease(holder: str, renewed: datetime.datetime, seconds: int = 15) -> dict[str, Any]:
    return {
        "metadata": {"name": "kfn-cron", "namespace": "kfn-system", "resourceVersion": "7"},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": seconds,
            "acquireTime": leader.format_micro_time(renewed - s(60)),
            "renewTime": leader.format_micro_time(renewed),
            "leaseTransitions": 3,
        },
    }


def test_the_first_replica_creates_the_lease_and_holds_it() -> None:
    decision = leader.decide(None, "a", observed=None, now=5.0, wall=T0)
    assert decision.action == "create"
    assert decision.spec is not None
    assert decision.spec["holderIdentity"] == "a"
    assert decision.spec["leaseDurationSeconds"] == 15
    assert decision.spec["renewTime"] == "2026-01-01T12:00:00.000000Z"


def test_the_holder_renews_with_its_wall_clock_and_keeps_its_acquire_time() -> None:
    current = lease("a", T0)
    decision = leader.decide(current, "a", observed=None, now=5.0, wall=T0 + s(2))
    assert decision.action == "renew"
    assert decision.spec is not None
    assert decision.spec["renewTime"] == leader.format_micro_time(T0 + s(2))
    assert decision.spec["acquireTime"] == current["spec"]["acquireTime"]
    assert decision.spec["leaseTransitions"] == 3


def follower(reads: list[tuple[float, dict[str, Any]]], wall: datetime.datetime) -> str:
    """The action of replica "b" after reading each Lease at its monotonic time, in order."""
    observed: leader.Observation | None = None
    action = ""
    for now, current in reads:
        decision = leader.decide(current, "b", observed=observed, now=now, wall=wall)
        observed, action = decision.observed, decision.action
    return action


#: The holder "a" renews every 2 s of real time; the follower's monotonic clock starts at 100.
RENEWING = [(100.0 + 2 * i, lease("a", T0 + s(2 * i))) for i in range(30)]


@pytest.mark.parametrize(
    ("reads", "wall", "action"),
    [
        pytest.param(RENEWING, T0 + s(58), "follow", id="a renewing holder is followed"),
        pytest.param(
            [(100.0, lease("a", T0)), (114.9, lease("a", T0))],
            T0 + s(15),
            "follow",
            id="an unchanged lease is followed for just under its duration",
        ),
        pytest.param(
            [(100.0, lease("a", T0)), (115.0, lease("a", T0))],
            T0 + s(15),
            "acquire",
            id="an unchanged lease is taken after its duration on the follower's own clock",
        ),
        pytest.param(
            [(100.0, lease("a", T0 - s(86400)))],
            T0,
            "follow",
            id="a lease first seen counts from that moment however old its renewTime",
        ),
        pytest.param(
            [(100.0, lease("a", T0 - s(86400))), (115.0, lease("a", T0 - s(86400)))],
            T0 + s(15),
            "acquire",
            id="and is taken one duration later when nothing changed",
        ),
        pytest.param(
            # The holder's clock runs 30 s behind: every renewTime it writes looks 30 s old
            # to the follower. Under the old rule (renewTime + duration <= own wall time)
            # the follower takes the Lease at once and both replicas lead.
            [(100.0 + 2 * i, lease("a", T0 - s(30) + s(2 * i))) for i in range(30)],
            T0 + s(58),
            "follow",
            id="a holder whose clock runs behind is followed while it renews",
        ),
        pytest.param(
            # The holder's clock runs 30 s ahead, and it stopped renewing at real time 20:
            # the old rule would wait until 20 + 30 + 15; the follower takes it at its first
            # read from 20 + 15 on (at 36).
            [(100.0 + 2 * i, lease("a", T0 + s(30) + s(2 * min(i, 10)))) for i in range(19)],
            T0 + s(36),
            "acquire",
            id="a holder whose clock runs ahead is replaced one duration after it stopped",
        ),
        pytest.param(
            [(100.0 + 2 * i, lease("a", T0 + s(30) + s(2 * min(i, 10)))) for i in range(18)],
            T0 + s(34),
            "follow",
            id="but not before",
        ),
        pytest.param(
            [(100.0, {"spec": leader.released(lease("a", T0), "a")})],
            T0,
            "acquire",
            id="a released lease is taken at once",
        ),
    ],
)
def test_a_follower_judges_the_holder_by_how_long_it_saw_no_change(
    reads: list[tuple[float, dict[str, Any]]], wall: datetime.datetime, action: str
) -> None:
    assert follower(reads, wall) == action


def test_the_skewed_holder_case_is_one_the_wall_clock_rule_gets_wrong() -> None:
    # The premise of the table's "clock runs behind" case: the holder's newest renewTime,
    # read against the follower's wall clock, is already past its duration.
    newest = T0 - s(30) + s(58)
    assert newest + s(15) <= T0 + s(58)


def test_taking_a_lease_counts_the_transition_and_stamps_the_wall_clock() -> None:
    stale = lease("a", T0)
    first = leader.decide(stale, "b", observed=None, now=100.0, wall=T0)
    decision = leader.decide(stale, "b", observed=first.observed, now=115.0, wall=T0 + s(15))
    assert decision.action == "acquire"
    assert decision.spec is not None
    assert decision.spec["holderIdentity"] == "b"
    assert decision.spec["leaseTransitions"] == 4
    assert decision.spec["acquireTime"] == leader.format_micro_time(T0 + s(15))


def test_an_observation_restarts_only_when_the_record_changes() -> None:
    first = leader.observe(None, lease("a", T0), 100.0)
    assert leader.observe(first, lease("a", T0), 110.0) is first
    assert leader.observe(first, lease("a", T0 + s(2)), 110.0).seen_at == 110.0
    assert leader.observe(first, lease("c", T0), 110.0).seen_at == 110.0


def test_only_the_holder_can_release_the_lease() -> None:
    assert leader.released(lease("a", T0), "b") is None


def test_a_leader_stops_acting_before_a_follower_may_take_over() -> None:
    assert leader.still_leading(100.0, 109.9)
    assert not leader.still_leading(100.0, 100.0 + leader.RENEW_DEADLINE.total_seconds())
    assert not leader.still_leading(None, 100.0)
    assert leader.RENEW_DEADLINE < leader.LEASE_DURATION
