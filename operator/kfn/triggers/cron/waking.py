"""When the cron worker wakes a function ahead of its next tick: pure, time passed in.

A tick that finds its function at zero waits for a cold start, and so fires late by it where
the user sees it (in the function's own clock and in what it does). The leader therefore asks
the activator for the function's pods (:meth:`kfn.triggers.invoke.Invoker.wake`) a lead
before each tick (:func:`kfn.triggers.warming.lead_of`, learnt from the cold starts the
activator's answers report), in a thread of its own: the tick itself fires when it always
did, whatever the wake is doing.

The cron worker cannot see replicas, nor a Function's ``idleTimeout`` (its RBAC reads
Triggers only), so it cannot know whether a function is at zero. It wakes before every tick,
since waking a function that has pods costs one small request and counts as activity (its
idle timeout starts again: it stays up at most a lead longer). It does not wake when the wake
would come before the previous tick (ticks less than a lead apart), whose own invocation is
that activity; and, given an ``idle_timeout`` (the parameter is for a caller that knows it),
not when the previous tick came less than that before this one.
"""

from __future__ import annotations

import dataclasses
import datetime


def wake_at(
    tick: datetime.datetime,
    lead: datetime.timedelta,
    *,
    previous_tick: datetime.datetime | None,
    idle_timeout: datetime.timedelta | None = None,
) -> datetime.datetime | None:
    """When to wake the function for ``tick``, or None when it needs no wake."""
    at = tick - lead
    if previous_tick is not None:
        if at <= previous_tick:
            return None
        if idle_timeout is not None and tick - previous_tick < idle_timeout:
            return None
    return at


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What to do about one Trigger's next tick at one instant."""

    #: Send the wake now.
    wake_now: bool = False
    #: The wake instant still ahead, when to look again (None: nothing more for this tick).
    later: datetime.datetime | None = None


def plan(
    tick: datetime.datetime,
    now: datetime.datetime,
    lead: datetime.timedelta,
    *,
    previous_tick: datetime.datetime | None,
    woken_for: datetime.datetime | None,
    idle_timeout: datetime.timedelta | None = None,
) -> Plan:
    """Whether to wake the function for ``tick`` at ``now``; ``woken_for`` is the tick the
    function was last woken for (each tick gets one wake at most). A wake instant already
    past (a leader that just took over) wakes at once while the tick is still ahead."""
    if woken_for == tick or tick <= now:
        return Plan()
    at = wake_at(tick, lead, previous_tick=previous_tick, idle_timeout=idle_timeout)
    if at is None:
        return Plan()
    if at <= now:
        return Plan(wake_now=True)
    return Plan(later=at)
