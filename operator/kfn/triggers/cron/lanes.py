"""One lane per Trigger: its fires run in threads of their own, decided by :mod:`overlap`.

A fire blocks its thread until the tick is handled (the function's run, then Lambda's
retries between attempts). Fires used to share one pool of 32 threads, so a Trigger failing
every second held them all within a minute and every other Trigger's ticks queued behind
it. Here each fire gets its own thread, and a Trigger has at most
:data:`overlap.MAX_IN_FLIGHT` of them; what it cannot start waits in its own lane, where
:func:`overlap.admit` starts, keeps or skips it. Threads are therefore bounded by
``MAX_IN_FLIGHT`` times the Triggers that are busy, and one Trigger's state never delays
another's start.

Ticks start only while ``leading()`` holds: a replica that lost the Lease drops its waiting
ticks (the next leader fires them from ``lastFireTime`` under CatchUp) and lets the running
ones end.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
from collections.abc import Callable, Sequence

from kfn.api import meta
from kfn.clock import Clock, utcnow
from kfn.triggers.cron import overlap, table

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class _Lane:
    running: int = 0
    waiting: list[table.Firing] = dataclasses.field(default_factory=list)


class Lanes:
    """The lanes of every Trigger with fires in hand (see the module doc).

    ``fire`` handles one tick (blocking); ``skipped(entry, count)`` is told of ticks
    skipped because the Trigger's slots were taken too long.
    """

    def __init__(
        self,
        fire: Callable[[table.Firing], None],
        *,
        skipped: Callable[[table.Entry, int], None],
        leading: Callable[[], bool] = lambda: True,
        clock: Clock = utcnow,
        max_in_flight: int = overlap.MAX_IN_FLIGHT,
        max_waiting: int = overlap.MAX_WAITING,
    ) -> None:
        self.fire = fire
        self.skipped = skipped
        self.leading = leading
        self.clock = clock
        self.max_in_flight = max_in_flight
        self.max_waiting = max_waiting
        self._lanes: dict[str, _Lane] = {}
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def submit(self, firings: Sequence[table.Firing]) -> None:
        """Hands ticks to their Triggers' lanes; those with a free slot start at once."""
        by_trigger: dict[str, list[table.Firing]] = {}
        for firing in firings:
            by_trigger.setdefault(firing.entry.uid, []).append(firing)
        for uid, group in by_trigger.items():
            self._advance(uid, group)

    def refresh(self) -> None:
        """Re-decides every lane: skips ticks that waited too long, drops waiting ticks
        once this replica no longer leads."""
        with self._lock:
            uids = list(self._lanes)
        for uid in uids:
            self._advance(uid, [])

    def in_flight(self, uid: str) -> int:
        with self._lock:
            lane = self._lanes.get(uid)
            return lane.running if lane is not None else 0

    def waiting(self, uid: str) -> int:
        with self._lock:
            lane = self._lanes.get(uid)
            return len(lane.waiting) if lane is not None else 0

    def join(self, timeout: float | None = None) -> None:
        """Waits for the running fires to end (on shutdown, once ``stop`` is set)."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)

    def _advance(self, uid: str, new: list[table.Firing]) -> None:
        leading = self.leading()
        now = self.clock()
        with self._lock:
            lane = self._lanes.setdefault(uid, _Lane())
            lane.waiting.extend(new)
            if not leading:
                dropped, lane.waiting = len(lane.waiting), []
                start: list[table.Firing] = []
                skip: list[table.Firing] = []
            else:
                dropped = 0
                start, skip = self._admit(lane, now)
            if lane.running == 0 and not lane.waiting:
                del self._lanes[uid]
        if dropped:
            logger.info("%d ticks waiting were left to the next leader", dropped)
        if skip:
            logger.info(
                "%s: skipped %d ticks while its earlier ticks were in hand",
                skip[0].entry.label,
                len(skip),
            )
            self.skipped(skip[0].entry, len(skip))
        for firing in start:
            self._start(uid, firing)

    def _admit(
        self, lane: _Lane, now: datetime.datetime
    ) -> tuple[list[table.Firing], list[table.Firing]]:
        if not lane.waiting:
            return [], []
        by_tick = {f.tick: f for f in lane.waiting}
        entry = lane.waiting[-1].entry  # the newest version of the Trigger
        missed = entry.spec.missed_ticks
        decision = overlap.admit(
            list(by_tick),
            running=lane.running,
            now=now,
            policy=missed.policy,
            deadline=meta.parse_duration(missed.deadline) if missed.deadline else None,
            max_in_flight=self.max_in_flight,
            max_waiting=self.max_waiting,
        )
        lane.waiting = [by_tick[t] for t in decision.wait]
        lane.running += len(decision.start)
        return [by_tick[t] for t in decision.start], [by_tick[t] for t in decision.skip]

    def _start(self, uid: str, firing: table.Firing) -> None:
        thread = threading.Thread(
            target=self._run, args=(uid, firing), name=f"fire-{firing.entry.label}", daemon=True
        )
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _run(self, uid: str, firing: table.Firing) -> None:
        try:
            self.fire(firing)
        except Exception:
            logger.exception("%s: firing %s failed", firing.entry.label, firing.tick)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())
                lane = self._lanes.get(uid)
                if lane is not None:
                    lane.running -= 1
            self._advance(uid, [])
