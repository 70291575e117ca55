"""How long a synchronous request may wait for a pod, how long it may be served, and what its
caller is told when either runs out. Pure: the time is passed in.

Lambda answers a synchronous call beyond the function's concurrency at once with 429
``TooManyRequestsException``, and its timeout counts only the function's own run. The activator
keeps two bounds to match:

* **waiting** — from the moment the request was accepted until it is sent to a pod, bounded by
  the function's queue timeout (``spec.queueTimeout``, else the activator's default), which is
  long enough to cover a cold start and a scale-up. Past it the caller gets 429: the request
  never ran, so it is never reported as a task timeout. A request a runtime refused unstarted
  waits again, within the same bound counted from its acceptance.
* **served** — from the moment it is sent: the function's timeout, which the runtime counts from
  its handler's start (``Kfn-Timeout-Ms``) and answers itself, plus :data:`SERVE_MARGIN` for
  that answer to arrive. Only a runtime that cannot answer (a Node handler blocking its event
  loop) lets the activator's own timer fire; then the caller gets Lambda's 504 task timeout.

A stopping activator serves what it accepted until its drain ends (``--drain-timeout``, sized
for the longest function timeout: docs/architecture.md, "Rolling the activator"), then cuts
what is left. A request still waiting for a pod then waits only as long as the drain can still
serve its whole timeout once it is sent (:func:`stop_left`); past that it is refused with 429
like one past its queue timeout (``"stopping"``): it never ran, and its client sends it again
to another activator. So the drain cuts no request that was sent to a pod.
"""

from __future__ import annotations

import enum
from typing import Literal

#: Seconds past the function's timeout the activator waits for the runtime's own 504: the
#: runtime starts its clock a little later (after the request's bytes arrived), and its answer
#: takes a round trip.
SERVE_MARGIN = 1.0

#: What the caller is told when the current bound runs out.
Expiry = Literal["throttled", "stopping", "timed_out"]


class Phase(enum.Enum):
    """Where a request is: waiting for a slot and a connection, or sent to a pod."""

    WAITING = "waiting"
    SENT = "sent"


def wait_left(accepted: float, now: float, queue_timeout: float) -> float:
    """Seconds a request accepted at ``accepted`` may still wait for a pod (never below 0)."""
    return max(0.0, accepted + queue_timeout - now)


def served_bound(timeout: float) -> float:
    """Seconds the activator gives a sent request: the function's timeout and the margin."""
    return timeout + SERVE_MARGIN


def stop_left(now: float, stops: float, timeout: float) -> float:
    """Seconds a request may still wait for a pod in an activator whose drain ends at
    ``stops``: as long as the drain still serves it for its whole :func:`served_bound` once
    sent (never below 0)."""
    return max(0.0, stops - served_bound(timeout) - now)


def timer(
    phase: Phase,
    *,
    accepted: float,
    now: float,
    queue_timeout: float,
    timeout: float,
    stops: float | None = None,
) -> float:
    """Seconds from ``now`` until the request's current bound runs out.

    ``stops``: when the activator's drain ends, once it is stopping (``None`` before).
    """
    if phase is Phase.SENT:
        return served_bound(timeout)
    left = wait_left(accepted, now, queue_timeout)
    if stops is None:
        return left
    return min(left, stop_left(now, stops, timeout))


def on_expiry(
    phase: Phase,
    *,
    accepted: float = 0.0,
    queue_timeout: float = 0.0,
    timeout: float = 0.0,
    stops: float | None = None,
) -> Expiry:
    """A request that was never sent was throttled; only one that was sent can time out.

    A request never sent whose wait the activator's stop (``stops``, as in :func:`timer`) cut
    before its queue timeout ran out is told the activator is stopping.
    """
    if phase is Phase.SENT:
        return "timed_out"
    if stops is not None and stops - served_bound(timeout) < accepted + queue_timeout:
        return "stopping"
    return "throttled"
