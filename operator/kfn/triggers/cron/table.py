"""The table of cron Triggers the worker keeps: one :class:`Entry` per Trigger, kept by a
:class:`kfn.kube.cache.Store` from the watch, and :class:`Firing`, one tick to fire.

A Trigger whose schedule cannot fire is kept too, with its ``problem`` (see
:mod:`~kfn.triggers.cron.validity`), so the leader can report it on the Trigger.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
from collections.abc import Callable
from typing import Final

from kfn import kube, triggers
from kfn.api import meta
from kfn.api import trigger as trigger_api
from kfn.clock import utcnow
from kfn.kube import cache
from kfn.triggers import status
from kfn.triggers.cron import schedule, validity

API_VERSION: Final = f"{meta.GROUP}/{meta.VERSION}"

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Entry:
    """One cron Trigger as the worker tracks it."""

    namespace: str
    name: str
    uid: str
    function: str
    spec: trigger_api.CronTrigger
    #: None when the schedule cannot fire; ``problem`` then says why.
    schedule: schedule.Schedule | None
    #: Every tick up to here is handled (fired, skipped, or before the Trigger existed).
    done: datetime.datetime
    reported_next: datetime.datetime | None = None
    next: datetime.datetime | None = None
    generation: int | None = None
    conditions: list[meta.Condition] = dataclasses.field(default_factory=list)
    #: What keeps the schedule from firing, as the user reads it (:mod:`validity`).
    problem: str | None = None
    #: The function's version or alias it invokes; "" for ``$LATEST``.
    qualifier: str = ""

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"


def entry_of(obj: kube.Object, previous: Entry | None) -> Entry | None:
    """The Entry for a Trigger object; None when it is not a cron Trigger.

    A schedule that cannot fire still gets an Entry, with ``problem`` set and no schedule,
    so the leader reports it on the Trigger (``InvalidSchedule``) instead of a log line.
    """
    trigger = triggers.valid_trigger(obj)
    cron = trigger.spec.cron if trigger is not None else unvalidated_cron(obj)
    if cron is None:
        return None
    meta_ = obj.get("metadata") or {}
    label = f"{meta_.get('namespace')}/{meta_.get('name')}"
    now = utcnow()
    problem = validity.problem(cron.schedule, cron.time_zone, now)
    if trigger is None and problem is None:
        return None  # invalid for another reason than its schedule: logged, and skipped
    parsed = None if problem is not None else schedule.parse(cron.schedule)
    if problem is not None:
        logger.warning("Trigger %s cannot fire: %s", label, problem)
    status_ = obj.get("status") or {}
    created = schedule.parse_time(meta_.get("creationTimestamp")) or now
    done = schedule.first_fire_base(
        [schedule.parse_time(status_.get("lastFireTime")), previous.done if previous else None],
        created,
    )
    return Entry(
        namespace=str(meta_.get("namespace", "")),
        name=str(meta_.get("name", "")),
        uid=str(meta_.get("uid", "")),
        function=function_of(obj, trigger),
        spec=cron,
        schedule=parsed,
        done=done,
        reported_next=schedule.parse_time(status_.get("nextFireTime")),
        next=previous.next if previous else None,
        generation=meta_.get("generation"),
        conditions=status.conditions_of(obj),
        problem=problem,
        qualifier=trigger.spec.function_ref.target_qualifier if trigger is not None else "",
    )


def function_of(obj: kube.Object, trigger: trigger_api.Trigger | None) -> str:
    if trigger is not None:
        return trigger.spec.function_ref.name
    return str(((obj.get("spec") or {}).get("functionRef") or {}).get("name", ""))


def unvalidated_cron(obj: kube.Object) -> trigger_api.CronTrigger | None:
    """The schedule and time zone of a Trigger that failed validation, when it has them.

    A Trigger admitted before the API server refused its schedule fails the model's own
    check here; reading these two fields unvalidated lets the worker say what to fix.
    """
    cron = (obj.get("spec") or {}).get("cron")
    if not isinstance(cron, dict) or not isinstance(cron.get("schedule"), str):
        return None
    time_zone = cron.get("timeZone", "UTC")
    if not isinstance(time_zone, str):
        return None
    return trigger_api.CronTrigger.model_construct(schedule=cron["schedule"], time_zone=time_zone)


def schedules(
    changed: threading.Event, *, gone: Callable[[str, str], None] = lambda namespace, name: None
) -> cache.Store[Entry]:
    """The store of cron Triggers; each change sets ``changed``, which wakes the main loop,
    and ``gone`` hears the namespace and name of each Trigger that left (its metrics go).

    Its lock is held while the main loop advances the Entries' bookkeeping, so a Trigger's
    new version carries on from where its old Entry stands (see :func:`entry_of`).
    """

    def listener(changes: list[cache.Change[Entry]]) -> None:
        for change in changes:
            if change.value is None:
                gone(*change.key)
        changed.set()

    return cache.Store(API_VERSION, trigger_api.KIND, entry_of, listener=listener)


@dataclasses.dataclass(frozen=True)
class Firing:
    """One tick to hand to the activator, with what to record once it is accepted."""

    entry: Entry
    tick: datetime.datetime
    next: datetime.datetime
