"""The status a trigger worker reports for its Triggers: conditions a user can act on.

A cron, stream or bucket Trigger's conditions belong to the worker serving it (the
operator writes only ``status.type``):

* ``SourceReachable`` — the worker reaches the broker, bucket or schedule (``Connected``),
  or why not (``ConnectionFailed``, ``CredentialsNotFound``, ``SecretNotAllowed``), in a
  message without secrets;
* ``Delivering`` — the function handles events (``Delivering``), or the last failure
  (``DeliveryFailing``, ``FunctionNotFound``, ``SecretNotAllowed`` for a failure
  destination);
* ``Ready`` — both True, else the first that is not.

Workers call :meth:`StatusWriter.set` as often as they like; one background thread writes a
Trigger's status only when something visible changed (times aside), and at most once per
``interval`` per Trigger, so a busy stream never floods the API server.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Final

from kfn import kube, retry
from kfn.api import conditions, meta
from kfn.api import trigger as trigger_api
from kfn.clock import Clock, utcnow

logger = logging.getLogger(__name__)

API_VERSION: Final = f"{meta.GROUP}/{meta.VERSION}"
Key = tuple[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """One condition's verdict: ``ok`` None means not known yet."""

    ok: bool | None
    reason: str
    message: str

    @property
    def status(self) -> meta.ConditionStatus:
        return "Unknown" if self.ok is None else ("True" if self.ok else "False")


UNKNOWN_SOURCE: Final = Verdict(None, trigger_api.Reason.RECONCILING, "connecting to the source")
NO_EVENTS_YET: Final = Verdict(True, trigger_api.Reason.DELIVERING, "waiting for events")


def verdict_of(outcome: retry.Outcome) -> Verdict:
    """The Delivering verdict after one invocation: a missing function is named as such,
    since the fix (create it, or correct functionRef) differs from a failing one."""
    if outcome.kind == "success":
        return Verdict(True, trigger_api.Reason.DELIVERING, "events are delivered")
    if outcome.status == 404:
        return Verdict(False, trigger_api.Reason.FUNCTION_NOT_FOUND, outcome.describe())
    return Verdict(False, trigger_api.Reason.DELIVERY_FAILING, outcome.describe())


def desired(
    current: Sequence[meta.Condition],
    *,
    generation: int | None,
    reachable: Verdict,
    delivering: Verdict,
    now: datetime.datetime,
) -> list[meta.Condition]:
    """The three conditions after these verdicts (pure; transition times kept)."""
    updated = list(current)
    for type_, verdict in (
        (trigger_api.ConditionType.SOURCE_REACHABLE, reachable),
        (trigger_api.ConditionType.DELIVERING, delivering),
    ):
        updated = conditions.set_condition(
            updated,
            type_,
            verdict.status,
            verdict.reason,
            verdict.message,
            now=now,
            observed_generation=generation,
        )
    return conditions.summarize(
        updated,
        trigger_api.READY_DEPENDS_ON,
        ready_reason=trigger_api.Reason.READY,
        now=now,
        observed_generation=generation,
    )


def visible(conditions_: Sequence[meta.Condition]) -> list[tuple[str, str, str, str]]:
    """What a reader of ``kubectl get`` would notice changing (times left out)."""
    return sorted((c.type, c.status, c.reason, c.message) for c in conditions_)


@dataclasses.dataclass
class _Entry:
    namespace: str
    name: str
    generation: int | None
    current: list[meta.Condition]
    reachable: Verdict = UNKNOWN_SOURCE
    delivering: Verdict = NO_EVENTS_YET
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    written: tuple[Any, ...] | None = None
    written_at: datetime.datetime | None = None


def conditions_of(obj: Mapping[str, Any]) -> list[meta.Condition]:
    raw = (obj.get("status") or {}).get("conditions") or []
    try:
        return [meta.Condition.model_validate(c) for c in raw]
    except ValueError:
        return []


class StatusWriter:
    """Collects verdicts per Trigger and writes them (see the module doc)."""

    def __init__(self, *, interval: float = 2.0, clock: Clock = utcnow) -> None:
        self.interval = interval
        self.clock = clock
        self._entries: dict[Key, _Entry] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()

    def track(self, obj: Mapping[str, Any]) -> None:
        """Registers (or refreshes the generation of) a Trigger from its object."""
        meta_ = obj.get("metadata") or {}
        key = (str(meta_.get("namespace", "")), str(meta_.get("name", "")))
        self.register(key, meta_.get("generation"), conditions_of(obj))

    def register(self, key: Key, generation: int | None, current: Sequence[meta.Condition]) -> None:
        """Registers a Trigger by name, generation and the conditions it has now."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._entries[key] = _Entry(key[0], key[1], generation, list(current))
            elif entry.generation != generation:
                entry.generation = generation
        self._wake.set()

    def forget(self, key: Key) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def set(
        self,
        key: Key,
        *,
        reachable: Verdict | None = None,
        delivering: Verdict | None = None,
        **extra: Any,
    ) -> None:
        """Records verdicts and status fields (camelCase names, e.g. ``lastEventTime``)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            if reachable is not None:
                entry.reachable = reachable
            if delivering is not None:
                entry.delivering = delivering
            entry.extra.update(extra)
        self._wake.set()

    def _due(self, now: datetime.datetime) -> list[tuple[_Entry, dict[str, Any], tuple[Any, ...]]]:
        due = []
        with self._lock:
            for entry in self._entries.values():
                new = desired(
                    entry.current,
                    generation=entry.generation,
                    reachable=entry.reachable,
                    delivering=entry.delivering,
                    now=now,
                )
                extra = {
                    k: meta.format_time(v) if isinstance(v, datetime.datetime) else v
                    for k, v in entry.extra.items()
                }
                fingerprint = (visible(new), entry.generation, sorted(extra.items()))
                if fingerprint == entry.written:
                    continue
                recent = entry.written_at is not None and (
                    (now - entry.written_at).total_seconds() < self.interval
                )
                if recent:
                    continue
                status = {
                    "conditions": [c.model_dump(mode="json", by_alias=True) for c in new],
                    "observedGeneration": entry.generation,
                    **extra,
                }
                entry.current = new
                entry.written_at = now
                due.append((entry, status, fingerprint))
        return due

    def flush(self) -> None:
        """Writes every Trigger whose visible status changed and whose interval passed."""
        for entry, status, fingerprint in self._due(self.clock()):
            try:
                kube.patch_status(
                    API_VERSION, trigger_api.KIND, entry.namespace, entry.name, status
                )
            except kube.ApiError as exc:
                if exc.status != 404:
                    logger.warning(
                        "%s/%s: writing the status failed: %s", entry.namespace, entry.name, exc
                    )
                continue
            except OSError as exc:
                logger.warning(
                    "%s/%s: writing the status failed: %s", entry.namespace, entry.name, exc
                )
                continue
            entry.written = fingerprint

    def run(self, stop: threading.Event) -> None:
        """Flushes until ``stop`` is set, then once more."""
        while not stop.is_set():
            self._wake.clear()
            self.flush()
            self._wake.wait(min(1.0, self.interval))
        self.flush()
