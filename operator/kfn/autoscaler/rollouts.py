"""Progressive rollouts of aliases: the acting shell around :mod:`kfn.rollout`'s decisions.

The autoscaler receives every activator's per-second report, whose entries carry each
version's completed invocations, failures and handler-duration bins (:mod:`kfn.stats`).
:class:`Rollouts` keeps them in a :class:`kfn.rollout.WindowedFigures` keyed by invocation
target (namespace, function, version): the figures are a version's, whichever qualifier
named it, and both versions of an alias are judged over the same window. Only the versions
of a rollout in progress are kept, so memory follows the rollouts running.

Once a second (:meth:`Rollouts.tick`, with the wall clock: a step's start is written to the
status and read back after a restart) it looks at every Function alias with a ``rollout``
(``docs/design/versions.md``, "Progressive rollout and automatic rollback"):

* no entry in ``status.aliases`` yet (the alias's first deploy, or a rollout just added):
  it writes the alias's routes as the spec says, 100 % to its version, and starts nothing;
* the entry already stands for the spec's version (a rollout to it running, promoted, or
  rolled back from it or to it): a running rollout is judged (:func:`kfn.rollout.decide`);
  a finished one never changes (a rolled-back alias stays on its old version until the
  spec's version changes);
* otherwise the spec's version changed: a rollout starts from the *settled* version (the
  ``to`` of a promoted rollout, the ``from`` of a rolled-back or running one, the version
  with the larger weight of an entry without a rollout). A spec set back to the settled
  version while a rollout runs ends it at once, all traffic back (``RolledBack``).

What comes back is written to the Function's status (a JSON merge patch of ``aliases``
alone, on the status subresource, only when an entry changed: a hold writes nothing), with
an Event on the Function for each Started, Stepped, Promoted and RolledBack (a Warning).
Entries of aliases that no longer have a rollout (or are gone) are dropped with the next
write: the activator takes an alias's routes from the status when it has an entry, so a
stale one would outlive the spec. An alias that never had a rollout gets no write at all.

The pure part is :func:`plan` (one Function, its entries, the figures, the time); the class
keeps the figures, the Functions and what it wrote, and acts through a :class:`Writer`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Final, Protocol

from kfn import clock as clock_
from kfn import kube, rollout, stats
from kfn.api import function as function_api
from kfn.api import meta, versioning
from kfn.autoscaler import metrics
from kfn.kube import cache

logger = logging.getLogger(__name__)

API_VERSION: Final = f"{meta.GROUP}/{meta.VERSION}"
#: Who the status writes and Events are from (the autoscaler's field manager).
COMPONENT: Final = kube.SCALE_MANAGER
#: The longest window a decision may look at: the longest ``rollout.interval`` (24h).
RETENTION: Final = 24 * 3600.0
MESSAGE_LIMIT: Final = 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """An Event to record on a Function."""

    reason: str
    message: str
    warning: bool = False


def policy_of(spec: versioning.Rollout) -> rollout.RolloutPolicy:
    """The decision's policy from an alias's ``rollout`` block."""
    return rollout.RolloutPolicy(
        steps=tuple(spec.steps),
        interval=meta.parse_duration(spec.interval).total_seconds(),
        max_error_rate_increase=float(spec.max_error_rate_increase),
        max_duration_increase=float(spec.max_duration_increase),
        min_invocations=spec.min_invocations,
    )


def timestamp(now: float) -> str:
    """Unix seconds as the status writes a time (RFC 3339, whole seconds, UTC)."""
    return datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds(text: str) -> float:
    """An RFC 3339 time of the status as unix seconds."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def settled(entry: versioning.AliasStatus) -> int:
    """The version an alias settled on: a promoted rollout's ``to``, the ``from`` of one
    rolled back or still running, else the route with the larger weight."""
    state = entry.rollout
    if state is None:
        return max(entry.routes, key=lambda r: r.weight).version
    return state.to_version if state.outcome == "Promoted" else state.from_version


def stands_for(entry: versioning.AliasStatus, version: int) -> bool:
    """Whether ``entry`` is already about the spec's ``version``: nothing new to start."""
    state = entry.rollout
    if state is None:
        return [r.version for r in entry.routes if r.weight] == [version]
    if state.outcome == "RolledBack":
        return version in (state.from_version, state.to_version)
    return state.to_version == version


def _entry(
    name: str, state: rollout.RolloutState, policy: rollout.RolloutPolicy, message: str
) -> versioning.AliasStatus:
    routes = [
        versioning.Route(version=r.version, weight=r.percent) for r in rollout.routes(policy, state)
    ]
    return versioning.AliasStatus(
        name=name,
        routes=routes,
        rollout=versioning.RolloutStatus(
            from_version=state.stable,
            to_version=state.candidate,
            step=state.step,
            step_started=timestamp(state.step_started_at),
            outcome=state.outcome.value,
            message=message[:MESSAGE_LIMIT],
        ),
    )


def _state(entry: versioning.AliasStatus) -> rollout.RolloutState:
    state = entry.rollout
    assert state is not None
    return rollout.RolloutState(
        stable=state.from_version,
        candidate=state.to_version,
        step=state.step,
        step_started_at=seconds(state.step_started),
        outcome=rollout.Outcome(state.outcome),
        reason=state.outcome,
        message=state.message,
    )


#: A version's figures over the last ``window`` seconds at ``now``.
FiguresOf = Callable[[int, float, float], rollout.VersionFigures]

_EVENT_REASONS: Final = {
    rollout.Action.STEP: "Stepped",
    rollout.Action.PROMOTE: "Promoted",
    rollout.Action.ROLL_BACK: "RolledBack",
}


def plan_alias(
    alias: versioning.Alias,
    entry: versioning.AliasStatus | None,
    figures: FiguresOf,
    now: float,
) -> tuple[versioning.AliasStatus, Event | None]:
    """The entry one alias with a rollout should have at ``now``, and the Event to record."""
    assert alias.rollout is not None
    policy = policy_of(alias.rollout)
    version = alias.version
    if entry is not None and stands_for(entry, version):
        return _judge(alias.name, entry, policy, figures, now)
    stable = None if entry is None else settled(entry)
    if entry is None or (entry.rollout is None and stable == version):
        # The alias's first deploy (or two routes kfn did not write): the spec's version
        # takes all, and nothing starts.
        return versioning.AliasStatus(
            name=alias.name, routes=[versioning.Route(version=version, weight=100)]
        ), None
    assert stable is not None
    if stable == version:
        # Set back to the version a running rollout moves from: all traffic back, at once.
        assert entry.rollout is not None
        state = dataclasses.replace(
            _state(entry), step_started_at=now, outcome=rollout.Outcome.ROLLED_BACK
        )
        message = (
            f"version set back to {version} in the spec: rolled back to version {version},"
            f" version {state.candidate} takes no more requests"
        )
        return _entry(alias.name, state, policy, message), Event(
            "RolledBack", f"alias {alias.name}: {message}", warning=True
        )
    state = rollout.start(policy, stable, version, now)
    return _entry(alias.name, state, policy, state.message), Event(
        "Started", f"alias {alias.name}: {state.message}"
    )


def _judge(
    name: str,
    entry: versioning.AliasStatus,
    policy: rollout.RolloutPolicy,
    figures: FiguresOf,
    now: float,
) -> tuple[versioning.AliasStatus, Event | None]:
    """A running rollout judged at ``now``; a finished one as it is."""
    if entry.rollout is None or entry.rollout.outcome != "Progressing":
        return entry, None
    state = _state(entry)
    window = policy.judging_window
    decision = rollout.decide(
        policy,
        state,
        figures(state.stable, now, window),
        figures(state.candidate, now, window),
        now,
    )
    if decision.state is state:
        return entry, None
    reason = _EVENT_REASONS[decision.action]
    event = Event(reason, f"alias {name}: {decision.message}", warning=reason == "RolledBack")
    return _entry(name, decision.state, policy, decision.message), event


def plan(
    fn: function_api.Function,
    entries: Sequence[versioning.AliasStatus],
    figures: FiguresOf,
    now: float,
) -> tuple[list[versioning.AliasStatus], list[Event]]:
    """The ``status.aliases`` a Function should have at ``now`` (an entry for each alias
    with a rollout, in the spec's order) and the Events to record."""
    found = {entry.name: entry for entry in entries}
    wanted: list[versioning.AliasStatus] = []
    events: list[Event] = []
    for alias in fn.spec.aliases:
        if alias.rollout is None:
            continue
        entry, event = plan_alias(alias, found.get(alias.name), figures, now)
        wanted.append(entry)
        if event is not None:
            events.append(event)
    return wanted, events


def judged(entries: Iterable[versioning.AliasStatus]) -> set[int]:
    """The versions of the rollouts in progress among ``entries``."""
    return {
        n
        for e in entries
        if e.rollout is not None and e.rollout.outcome == "Progressing"
        for n in (e.rollout.from_version, e.rollout.to_version)
    }


# --- acting ------------------------------------------------------------------------------------


class Writer(Protocol):
    """Where a rollout's routes and Events go."""

    async def write_aliases(
        self, fn: function_api.Function, aliases: list[versioning.AliasStatus]
    ) -> None: ...

    async def record(self, fn: function_api.Function, event: Event) -> None: ...


class KubeWriter:
    """Writes ``status.aliases`` with a merge patch of the status subresource, and Events,
    through :mod:`kfn.kube` (in a worker thread: the stats endpoint keeps answering)."""

    async def write_aliases(
        self, fn: function_api.Function, aliases: list[versioning.AliasStatus]
    ) -> None:
        body = [a.model_dump(mode="json", by_alias=True, exclude_none=True) for a in aliases]
        await asyncio.to_thread(
            kube.patch_status,
            API_VERSION,
            function_api.KIND,
            fn.metadata.namespace,
            fn.metadata.name,
            {"aliases": body or None},
            manager=COMPONENT,
        )

    async def record(self, fn: function_api.Function, event: Event) -> None:
        involved = {
            "apiVersion": API_VERSION,
            "kind": function_api.KIND,
            "metadata": {
                "namespace": fn.metadata.namespace,
                "name": fn.metadata.name,
                "uid": fn.metadata.uid,
            },
        }
        await asyncio.to_thread(
            kube.create_event,
            involved,
            reason=event.reason,
            message=event.message,
            warning=event.warning,
            component=COMPONENT,
        )


class Rollouts:
    """Keeps the figures and the Functions, and moves every alias with a rollout."""

    def __init__(self, writer: Writer, *, clock: clock_.Seconds = time.time) -> None:
        self.writer = writer
        self.clock = clock
        self.figures: rollout.WindowedFigures[stats.FunctionKey] = rollout.WindowedFigures(
            retention=RETENTION
        )
        #: Functions by their ``$LATEST`` key.
        self.functions: dict[stats.FunctionKey, function_api.Function] = {}
        #: What this controller last wrote to each Function's ``status.aliases``, with the
        #: Function's uid: it alone writes them, and a watch may bring an older status back
        #: after a write, so this is read rather than the watched status once it exists.
        self.written: dict[stats.FunctionKey, tuple[str | None, list[versioning.AliasStatus]]]
        self.written = {}
        #: The targets whose figures are kept: both versions of each rollout in progress.
        self.judged: set[stats.FunctionKey] = set()
        #: The aliases whose rollout is exported, by Function.
        self.exported: dict[stats.FunctionKey, set[str]] = {}

    def apply(self, changes: list[cache.Change[function_api.Function]]) -> None:
        """Takes in the Functions that came, changed or went (a Store's listener)."""
        for change in changes:
            key = stats.FunctionKey(*change.key)
            if change.value is None:
                self.functions.pop(key, None)
                self.written.pop(key, None)
                self._export(key, [])
            else:
                self.functions[key] = change.value
        self._rejudge()

    def receive(self, message: stats.StatMessage, now: float) -> None:
        """Keeps the figures of the versions being judged from one activator's report."""
        for stat in message.functions:
            if stat.function in self.judged and (stat.invocations or stat.durations):
                self.figures.record(
                    now,
                    stat.function,
                    stat.invocations,
                    stat.errors,
                    binned_durations=stat.durations,
                )

    def entries(self, key: stats.FunctionKey) -> list[versioning.AliasStatus]:
        """The Function's ``status.aliases`` as this controller knows them."""
        fn = self.functions[key]
        uid, written = self.written.get(key, (None, None))
        if written is not None and uid == fn.metadata.uid:
            return written
        return list((fn.status.aliases if fn.status else None) or [])

    async def tick(self, now: float) -> None:
        """One round over every Function with aliases: decide, then write what changed."""
        self.figures.expire(now)
        for key in list(self.functions):
            try:
                await self.move(key, now)
            except Exception:
                logger.exception("moving the aliases of %s failed", key)
        self._rejudge()

    async def move(self, key: stats.FunctionKey, now: float) -> None:
        """Decides one Function's aliases at ``now`` and writes what changed."""
        fn = self.functions[key]
        current = self.entries(key)
        if not current and not any(a.rollout for a in fn.spec.aliases):
            return
        wanted, events = plan(fn, current, self._figures_of(key), now)
        if wanted == current:
            self._export(key, current)
            return
        await self.writer.write_aliases(fn, wanted)
        if key in self.functions:  # not deleted while the status was written
            self.written[key] = (fn.metadata.uid, wanted)
            self._export(key, wanted)
        for event in events:
            logger.info("%s: %s: %s", key, event.reason, event.message)
            metrics.transition(event.reason)
            try:
                await self.writer.record(fn, event)
            except Exception:
                logger.exception("recording the Event %s on %s failed", event.reason, key)

    def _export(self, key: stats.FunctionKey, entries: list[versioning.AliasStatus]) -> None:
        """Sets each rollout's candidate percent, and drops those of rollouts gone."""
        now_exported = set()
        for entry in entries:
            if entry.rollout is None:
                continue
            to = entry.rollout.to_version
            metrics.rollout(key, entry.name, sum(r.weight for r in entry.routes if r.version == to))
            now_exported.add(entry.name)
        for gone in self.exported.pop(key, set()) - now_exported:
            metrics.forget_rollout(key, gone)
        if now_exported:
            self.exported[key] = now_exported

    def _figures_of(self, key: stats.FunctionKey) -> FiguresOf:
        def figures(version: int, now: float, window: float) -> rollout.VersionFigures:
            return self.figures.figures(key._replace(version=str(version)), now, window)

        return figures

    def _rejudge(self) -> None:
        self.judged = {
            key._replace(version=str(n))
            for key in self.functions
            for n in judged(self.entries(key))
        }

    async def run(self, interval: float = 1.0) -> None:
        """Ticks every ``interval`` seconds until cancelled."""
        while True:
            await self.tick(self.clock())
            await asyncio.sleep(interval)
