"""Leader election over a ``coordination.k8s.io/v1`` Lease, decided without I/O.

The protocol is client-go's (``tools/leaderelection``): the holder renews the Lease every
``retry``; every other replica remembers the Lease's record (holder, ``renewTime`` and the
rest of its spec) as it last saw it *change*, and when, on its **own monotonic clock**. It
may take the Lease only once that record has stayed unchanged for ``leaseDurationSeconds``
of its own time. The holder's ``renewTime`` is never compared with the reader's wall clock:
pods' clocks disagree, and under that rule a follower whose clock runs ahead of the
holder's would see a fresh Lease as expired and lead beside it, while one whose clock runs
behind would wait for a dead holder far too long. ``renewTime`` and ``acquireTime`` are
still written (wall-clock times, for ``kubectl get lease``); only their changing is read.

A replica that sees a Lease for the first time (it just started) counts from that moment,
so it waits one full duration before taking a Lease whose holder died, as client-go does.
An empty ``holderIdentity`` (a Lease released on shutdown) is taken at once.

Writes carry the Lease's ``resourceVersion``, so of two replicas racing for an expired
Lease the API server accepts one (the other gets 409 Conflict and stays a follower).

A leader stops acting as soon as it has not renewed for ``renew_deadline`` (shorter than
the lease duration), also counted on its own monotonic clock from the moment it *started*
its last successful renewal. A follower starts counting no earlier than it read that
renewal, which was written after it started, so the old leader has stepped down before
anyone may take over, even when the API server is unreachable.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any, Final, Literal

LEASE_DURATION: Final = datetime.timedelta(seconds=15)
RENEW_DEADLINE: Final = datetime.timedelta(seconds=10)
RETRY: Final = datetime.timedelta(seconds=2)


def format_micro_time(value: datetime.datetime) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


Action = Literal["create", "renew", "acquire", "follow"]


@dataclasses.dataclass(frozen=True)
class Observation:
    """A Lease's spec as this replica last saw it change, and when (``seen_at``: seconds of
    this replica's monotonic clock)."""

    record: Mapping[str, Any]
    seen_at: float


@dataclasses.dataclass(frozen=True)
class Decision:
    """What to do with the Lease now, the spec to write when it is a write, and the
    observation to remember for the next decision."""

    action: Action
    spec: dict[str, Any] | None = None
    observed: Observation | None = None


def observe(previous: Observation | None, lease: Mapping[str, Any], now: float) -> Observation:
    """The observation after reading ``lease`` at monotonic ``now``: unchanged while the
    record is the same, restarted at ``now`` when it differs (or was never seen)."""
    record = dict(lease.get("spec") or {})
    if previous is not None and previous.record == record:
        return previous
    return Observation(record, now)


def decide(
    lease: Mapping[str, Any] | None,
    identity: str,
    *,
    observed: Observation | None,
    now: float,
    wall: datetime.datetime,
    duration: datetime.timedelta = LEASE_DURATION,
) -> Decision:
    """Whether to create, renew or take the Lease, or to follow its holder.

    ``observed`` is what the previous decision returned (None at first); ``now`` is this
    replica's monotonic clock in seconds, which alone judges expiry; ``wall`` is only
    written into ``renewTime`` and ``acquireTime``.
    """
    seconds = int(duration.total_seconds())
    stamp = format_micro_time(wall)
    if lease is None:
        return Decision(
            "create",
            {
                "holderIdentity": identity,
                "leaseDurationSeconds": seconds,
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": 0,
            },
        )
    seen = observe(observed, lease, now)
    spec = dict(seen.record)
    holder = spec.get("holderIdentity") or ""
    if holder == identity:
        return Decision("renew", spec | {"renewTime": stamp, "leaseDurationSeconds": seconds}, seen)
    held_for = float(spec.get("leaseDurationSeconds") or seconds)
    if holder and now - seen.seen_at < held_for:
        return Decision("follow", None, seen)
    return Decision(
        "acquire",
        spec
        | {
            "holderIdentity": identity,
            "leaseDurationSeconds": seconds,
            "acquireTime": stamp,
            "renewTime": stamp,
            "leaseTransitions": int(spec.get("leaseTransitions") or 0) + 1,
        },
        seen,
    )


def released(lease: Mapping[str, Any], identity: str) -> dict[str, Any] | None:
    """The spec that gives the Lease up, or None when ``identity`` does not hold it."""
    spec = dict(lease.get("spec") or {})
    if spec.get("holderIdentity") != identity:
        return None
    return spec | {"holderIdentity": "", "leaseDurationSeconds": 1}


def still_leading(
    last_renewal: float | None,
    now: float,
    renew_deadline: datetime.timedelta = RENEW_DEADLINE,
) -> bool:
    """Whether a leader whose last successful renewal started at ``last_renewal`` may still
    act at ``now`` (both on its own monotonic clock, in seconds)."""
    return last_renewal is not None and now - last_renewal < renew_deadline.total_seconds()
