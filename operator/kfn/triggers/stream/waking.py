"""When a stream consumer wakes its function before invoking it: pure, time passed in.

A consumer that has not invoked its function for a while finds records pending (taken from
the broker, or a lag the broker reports): the function may be at zero, and the first batch
would wait a whole cold start while more lag builds behind it. So the consumer wakes the
function (:meth:`kfn.triggers.invoke.Invoker.wake`, in a thread of its own) as soon as it sees
the records, ahead of gathering the batch (``maxBatchingWindow``) and invoking it: the pods
start meanwhile.

The rule: records pending, and neither an invocation nor a wake for :data:`IDLE_AFTER`
seconds. The consumer cannot see replicas nor the Function's ``idleTimeout``; waking a function
that still has pods costs one small request and counts as activity, so the bound is short
rather than exact: a consumer that keeps invoking never wakes, and an idle one wakes once per
burst, at most once every :data:`IDLE_AFTER` seconds.
"""

from __future__ import annotations

from typing import Final

#: Seconds without an invocation or a wake after which pending records wake the function.
IDLE_AFTER: Final = 10.0


def should_wake(
    pending: int,
    now: float,
    *,
    last_invoked: float | None,
    last_woken: float | None,
    idle_after: float = IDLE_AFTER,
) -> bool:
    """Whether ``pending`` records at ``now`` (monotonic seconds) wake the function."""
    if pending <= 0:
        return False
    latest = max((t for t in (last_invoked, last_woken) if t is not None), default=None)
    return latest is None or now - latest >= idle_after
