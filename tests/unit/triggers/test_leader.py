"""Leader election over a Lease: who fires, and when a follower takes over."""

from __future__ import annotations

import datetime
from typing import Any

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
    decision = leader.decide(None, "a", T0)
    assert decision.action == "create"
    assert decision.spec is not None
    assert decision.spec["holderIdentity"] == "a"
    assert decision.spec["leaseDurationSeconds"] == 15
    assert decision.spec["renewTime"] == "2026-01-01T12:00:00.000000Z"


def test_the_holder_renews_and_keeps_its_acquire_time() -> None:
    current = lease("a", T0)
    decision = leader.decide(current, "a", T0 + s(2))
    assert decision.action == "renew"
    assert decision.spec is not None
    assert decision.spec["renewTime"] == leader.format_micro_time(T0 + s(2))
    assert decision.spec["acquireTime"] == current["spec"]["acquireTime"]
    assert decision.spec["leaseTransitions"] == 3


def test_another_replica_follows_while_the_lease_is_fresh() -> None:
    assert leader.decide(lease("a", T0), "b", T0 + s(14.9)).action == "follow"


def test_another_replica_takes_an_expired_lease_and_counts_the_transition() -> None:
    decision = leader.decide(lease("a", T0), "b", T0 + s(15))
    assert decision.action == "acquire"
    assert decision.spec is not None
    assert decision.spec["holderIdentity"] == "b"
    assert decision.spec["leaseTransitions"] == 4
    assert decision.spec["acquireTime"] == leader.format_micro_time(T0 + s(15))


def test_a_released_lease_is_taken_at_once() -> None:
    spec = leader.released(lease("a", T0), "a")
    assert spec is not None
    assert spec["holderIdentity"] == ""
    assert leader.decide({"spec": spec}, "b", T0 + s(0.1)).action == "acquire"


def test_only_the_holder_can_release_the_lease() -> None:
    assert leader.released(lease("a", T0), "b") is None


def test_a_leader_stops_firing_before_a_follower_may_take_over() -> None:
    assert leader.still_leading(T0, T0 + s(9.9))
    assert not leader.still_leading(T0, T0 + leader.RENEW_DEADLINE)
    assert not leader.still_leading(None, T0)
    assert leader.RENEW_DEADLINE < leader.LEASE_DURATION
