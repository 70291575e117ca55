"""Pure helpers for ``status.conditions``: set one, summarise several into ``Ready``.

Time is passed in, so callers decide what "now" is and tests need no clock. A condition's
``lastTransitionTime`` moves only when its status changes: a reason or message update is news,
but not a transition.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence

from kfn.api import meta


def find(conditions: Iterable[meta.Condition], type_: str) -> meta.Condition | None:
    """The condition of the given type, if any."""
    return next((condition for condition in conditions if condition.type == type_), None)


def is_true(conditions: Iterable[meta.Condition], type_: str) -> bool:
    """Whether the condition exists with status True."""
    condition = find(conditions, type_)
    return condition is not None and condition.status == "True"


def set_condition(
    conditions: Sequence[meta.Condition],
    type_: str,
    status: meta.ConditionStatus,
    reason: str,
    message: str,
    *,
    now: datetime.datetime,
    observed_generation: int | None = None,
) -> list[meta.Condition]:
    """A new list with the condition of ``type_`` set; the input is not changed.

    ``lastTransitionTime`` is ``now`` for a new condition or a changed status, and kept
    otherwise. The order of the other conditions is kept; a new one is appended.
    """
    previous = find(conditions, type_)
    transition = (
        now if previous is None or previous.status != status else previous.last_transition_time
    )
    updated = meta.Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=observed_generation,
    )
    if previous is None:
        return [*conditions, updated]
    return [updated if condition.type == type_ else condition for condition in conditions]


def changed(
    conditions: Sequence[meta.Condition],
    type_: str,
    verdict: tuple[meta.ConditionStatus, str, str] | None,
    *,
    now: datetime.datetime,
    observed_generation: int | None = None,
) -> list[meta.Condition] | None:
    """The conditions with ``type_`` set to ``verdict`` (status, reason, message), or taken
    away when it is None; None when that changes nothing a reader sees."""
    previous = find(conditions, type_)
    if verdict is None:
        if previous is None:
            return None
        return [c for c in conditions if c.type != type_]
    if previous is not None and (previous.status, previous.reason, previous.message) == verdict:
        return None
    status, reason, message = verdict
    return set_condition(
        conditions,
        type_,
        status,
        reason,
        message,
        now=now,
        observed_generation=observed_generation,
    )


def summarize(
    conditions: Sequence[meta.Condition],
    depends_on: Sequence[str],
    *,
    ready_type: str = "Ready",
    ready_reason: str = "Ready",
    now: datetime.datetime,
    observed_generation: int | None = None,
) -> list[meta.Condition]:
    """Set ``Ready`` from the conditions it depends on, as Knative's condition sets do.

    The first False dependency makes Ready False with that dependency's reason and message;
    otherwise the first missing or Unknown one makes it Unknown; when all are True, Ready is True.
    Conditions outside ``depends_on`` (such as ``Active``) never affect Ready.
    """
    dependencies = [(type_, find(conditions, type_)) for type_ in depends_on]
    failed = next(
        (c for _, c in dependencies if c is not None and c.status == "False"),
        None,
    )
    if failed is not None:
        return set_condition(
            conditions,
            ready_type,
            "False",
            failed.reason,
            failed.message,
            now=now,
            observed_generation=observed_generation,
        )
    for type_, condition in dependencies:
        if condition is None or condition.status == "Unknown":
            reason = condition.reason if condition is not None else "Reconciling"
            message = condition.message if condition is not None else f"{type_} not reported yet"
            return set_condition(
                conditions,
                ready_type,
                "Unknown",
                reason,
                message,
                now=now,
                observed_generation=observed_generation,
            )
    return set_condition(
        conditions,
        ready_type,
        "True",
        ready_reason,
        "",
        now=now,
        observed_generation=observed_generation,
    )
