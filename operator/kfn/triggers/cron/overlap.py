"""What happens to a Trigger's ticks while its earlier ticks are still in hand (pure).

A fire holds its Trigger's slot from the first invocation until the tick is handled:
through a slow function and through Lambda's retries of a failing one (minutes). Each
Trigger has :data:`MAX_IN_FLIGHT` slots of its own, so a failing or slow Trigger uses up its
own slots and no other Trigger's; its later ticks wait in its own lane, and there the
Trigger's ``missedTicks`` policy decides, as it does for ticks missed during an outage
(CronTrigger has no separate concurrency policy):

* ``Skip``: a tick that could not start within :data:`schedule.ON_TIME_GRACE` of its time is
  skipped (counted in ``kfn_cron_skipped_ticks``); the next tick is the next chance.
* ``CatchUp``: a tick waits until it is older than the deadline (default one hour), then is
  skipped; never sooner than the grace.

At most :data:`MAX_WAITING` ticks wait per Trigger; past that the oldest are skipped, as
:func:`schedule.ticks_between` keeps the newest after an outage. Ticks start oldest first.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from typing import Final

from kfn.triggers.cron import schedule

#: Fires of one Trigger running at once (each until its tick is handled, retries included).
MAX_IN_FLIGHT: Final = 4
#: Ticks of one Trigger waiting for a free slot.
MAX_WAITING: Final = 16


@dataclasses.dataclass(frozen=True)
class Admission:
    """A lane's ticks sorted: to start now and to keep waiting (oldest first), to skip."""

    start: tuple[datetime.datetime, ...]
    wait: tuple[datetime.datetime, ...]
    skip: tuple[datetime.datetime, ...]


def admit(
    waiting: Sequence[datetime.datetime],
    *,
    running: int,
    now: datetime.datetime,
    policy: schedule.Policy = "Skip",
    deadline: datetime.timedelta | None = None,
    grace: datetime.timedelta = schedule.ON_TIME_GRACE,
    max_in_flight: int = MAX_IN_FLIGHT,
    max_waiting: int = MAX_WAITING,
) -> Admission:
    """Which of a Trigger's ``waiting`` ticks start now, given ``running`` fires in hand."""
    patience = grace
    if policy == "CatchUp":
        patience = max(grace, deadline if deadline is not None else schedule.DEFAULT_DEADLINE)
    ordered = sorted(set(waiting))
    fresh = [t for t in ordered if now - t <= patience]
    late = [t for t in ordered if now - t > patience]
    free = max(0, max_in_flight - running)
    start, rest = fresh[:free], fresh[free:]
    overflow = rest[: max(0, len(rest) - max_waiting)]
    rest = rest[len(overflow) :]
    return Admission(tuple(start), tuple(rest), tuple(sorted(late + overflow)))
