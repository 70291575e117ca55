"""Leader election over a ``coordination.k8s.io/v1`` Lease, decided without I/O.

The protocol is client-go's: the holder renews ``spec.renewTime`` every ``retry``; any
other replica may take the Lease once ``renewTime + leaseDurationSeconds`` has passed.
Writes carry the Lease's ``resourceVersion``, so of two replicas racing for an expired
Lease the API server accepts one (the other gets 409 Conflict and stays a follower).

A leader stops firing as soon as it has not renewed for ``renew_deadline`` (shorter than
the lease duration), so it has stepped down before anyone else may take over, even when
the API server is unreachable. Releasing on shutdown empties ``holderIdentity`` so a
follower takes over at its next try instead of waiting for the expiry.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, Final, Literal

LEASE_DURATION: Final = datetime.timedelta(seconds=15)
RENEW_DEADLINE: Final = datetime.timedelta(seconds=10)
RETRY: Final = datetime.timedelta(seconds=2)


def format_micro_time(value: datetime.datetime) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: Any) -> datetime.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


Action = Literal["create", "renew", "acquire", "follow"]


@dataclasses.dataclass(frozen=True)
class Decision:
    """What to do with the Lease now, and the spec to write when it is a write."""

    action: Action
    spec: dict[str, Any] | None = None


def decide(
    lease: dict[str, Any] | None,
    identity: str,
    now: datetime.datetime,
    duration: datetime.timedelta = LEASE_DURATION,
) -> Decision:
    """Whether to create, renew or take the Lease, or to follow its holder."""
    seconds = int(duration.total_seconds())
    stamp = format_micro_time(now)
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
    spec = dict(lease.get("spec") or {})
    holder = spec.get("holderIdentity") or ""
    if holder == identity:
        return Decision("renew", spec | {"renewTime": stamp, "leaseDurationSeconds": seconds})
    renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
    held_for = datetime.timedelta(seconds=int(spec.get("leaseDurationSeconds") or seconds))
    if holder and renewed is not None and now < renewed + held_for:
        return Decision("follow")
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
    )


def released(lease: dict[str, Any], identity: str) -> dict[str, Any] | None:
    """The spec that gives the Lease up, or None when ``identity`` does not hold it."""
    spec = dict(lease.get("spec") or {})
    if spec.get("holderIdentity") != identity:
        return None
    return spec | {"holderIdentity": "", "leaseDurationSeconds": 1}


def still_leading(
    last_renewal: datetime.datetime | None,
    now: datetime.datetime,
    renew_deadline: datetime.timedelta = RENEW_DEADLINE,
) -> bool:
    """Whether a leader whose last successful renewal was ``last_renewal`` may still fire."""
    return last_renewal is not None and now - last_renewal < renew_deadline
