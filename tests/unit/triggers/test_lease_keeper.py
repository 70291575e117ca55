"""Two replicas keeping one Lease with clocks that disagree: never two leaders.

The real :class:`kfn.triggers.lease.LeaseKeeper`s run against :class:`LeaseEndpoint`, the
API server's Lease endpoint held in memory with its one rule that matters here (a write
carrying an old ``resourceVersion`` gets 409 Conflict). Time is simulated: each replica
has its own monotonic clock (started at an arbitrary value) and its own wall clock, skewed
from the true time by the test's amount; the test moves true time in 100 ms steps.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from kfn import kube
from kfn.triggers import leader, lease

T0 = datetime.datetime(2026, 1, 1, 12, tzinfo=datetime.UTC)


class LeaseEndpoint:
    """One Lease, as the API server keeps it (see the module doc)."""

    def __init__(self) -> None:
        self.lease: kube.Object | None = None
        self.version = 0

    def get_lease(self, namespace: str, name: str) -> kube.Object | None:
        return copy.deepcopy(self.lease)

    def create_lease(
        self,
        namespace: str,
        name: str,
        spec: Mapping[str, Any],
        owners: Sequence[Mapping[str, Any]] | None = None,
    ) -> kube.Object:
        if self.lease is not None:
            raise kube.ApiError(409, "AlreadyExists", "leases.coordination.k8s.io exists")
        return self._store(namespace, name, spec)

    def update_lease(
        self,
        lease: Mapping[str, Any],
        spec: Mapping[str, Any],
        owners: Sequence[Mapping[str, Any]] | None = None,
    ) -> kube.Object:
        if lease["metadata"]["resourceVersion"] != str(self.version):
            raise kube.ApiError(409, "Conflict", "the object has been modified")
        return self._store(lease["metadata"]["namespace"], lease["metadata"]["name"], spec)

    def _store(self, namespace: str, name: str, spec: Mapping[str, Any]) -> kube.Object:
        self.version += 1
        metadata = {"name": name, "namespace": namespace, "resourceVersion": str(self.version)}
        self.lease = {"metadata": metadata, "spec": dict(spec)}
        return copy.deepcopy(self.lease)


@dataclasses.dataclass
class Replica:
    keeper: lease.LeaseKeeper
    #: True time (seconds) at which it tries: every 2 s from ``phase``; it dies at ``dies``.
    phase: float
    dies: float = float("inf")


def replicas(skew: float, endpoint: LeaseEndpoint, now: list[float]) -> dict[str, Replica]:
    """Replica "a" with its wall clock ``skew`` seconds off, "b" on true time."""

    def keeper(name: str, wall_skew: float, mono_start: float) -> lease.LeaseKeeper:
        return lease.LeaseKeeper(
            "kfn-system",
            "kfn-cron",
            name,
            clock=lambda: T0 + datetime.timedelta(seconds=now[0] + wall_skew),
            monotonic=lambda: mono_start + now[0],
            api=endpoint,
        )

    return {
        "a": Replica(keeper("a", skew, 1000.0), phase=0.0, dies=60.0),
        "b": Replica(keeper("b", 0.0, 7.0), phase=1.0),
    }


def run(skew: float, until: float = 120.0) -> list[tuple[float, set[str]]]:
    """The leaders at each 100 ms of true time, with "a" dying at 60 s."""
    endpoint, now = LeaseEndpoint(), [0.0]
    group = replicas(skew, endpoint, now)
    timeline: list[tuple[float, set[str]]] = []
    for step in range(int(until * 10) + 1):
        now[0] = step / 10
        for replica in group.values():
            due = step % 20 == int(replica.phase * 10)
            if due and now[0] < replica.dies:
                replica.keeper.try_once()
        timeline.append((now[0], {n for n, r in group.items() if r.keeper.leading()}))
    return timeline


@pytest.mark.parametrize("skew", [0.0, -30.0, 30.0, -3600.0, 3600.0])
def test_clock_skew_between_replicas_never_gives_two_leaders(skew: float) -> None:
    timeline = run(skew)
    assert all(len(leaders) <= 1 for _, leaders in timeline)
    leading = {t: leaders for t, leaders in timeline}
    # "a" created the Lease, led while it renewed, and stepped down 10 s after its last
    # renewal (58 s) on its own clock; "b" took over 15 s after it last saw a change (59 s),
    # at its first try from then (75 s), whatever the wall clocks say.
    assert leading[0.0] == leading[59.0] == leading[67.9] == {"a"}
    assert leading[68.0] == leading[74.9] == set()
    assert leading[75.0] == leading[120.0] == {"b"}


def test_the_lease_still_carries_wall_clock_times_for_people_to_read() -> None:
    endpoint, now = LeaseEndpoint(), [0.0]
    group = replicas(-30.0, endpoint, now)
    group["a"].keeper.try_once()
    now[0] = 2.0
    group["a"].keeper.try_once()
    assert endpoint.lease is not None
    assert endpoint.lease["spec"]["holderIdentity"] == "a"
    assert endpoint.lease["spec"]["renewTime"] == leader.format_micro_time(
        T0 + datetime.timedelta(seconds=2 - 30)
    )


def test_a_released_lease_is_taken_at_the_followers_next_try() -> None:
    endpoint, now = LeaseEndpoint(), [0.0]
    group = replicas(0.0, endpoint, now)
    group["a"].keeper.try_once()
    now[0] = 1.0
    group["b"].keeper.try_once()
    assert not group["b"].keeper.leading()
    now[0] = 2.0
    group["a"].keeper.release()
    now[0] = 3.0
    group["b"].keeper.try_once()
    assert group["b"].keeper.leading()
    assert not group["a"].keeper.leading()
