"""Conditions change their transition time only when their status changes."""

from __future__ import annotations

import datetime

from kfn.api import conditions, function, meta

T0 = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=1)
T2 = T0 + datetime.timedelta(minutes=2)


def test_new_condition_starts_its_transition_now() -> None:
    result = conditions.set_condition([], "Deployed", "True", "Deployed", "", now=T0)
    assert result[0].last_transition_time == T0


def test_same_status_with_a_new_reason_keeps_the_transition_time() -> None:
    first = conditions.set_condition([], "Deployed", "False", "Deploying", "", now=T0)
    second = conditions.set_condition(first, "Deployed", "False", "PodsFailing", "oom", now=T1)
    assert second[0].last_transition_time == T0
    assert second[0].reason == "PodsFailing"
    assert second[0].message == "oom"


def test_changed_status_moves_the_transition_time() -> None:
    first = conditions.set_condition([], "Deployed", "False", "Deploying", "", now=T0)
    second = conditions.set_condition(first, "Deployed", "True", "Deployed", "", now=T1)
    assert second[0].last_transition_time == T1


def test_setting_one_condition_leaves_the_others_and_the_input_alone() -> None:
    first = conditions.set_condition([], "SourceReady", "True", "SourceResolved", "", now=T0)
    both = conditions.set_condition(first, "Deployed", "True", "Deployed", "", now=T1)
    updated = conditions.set_condition(both, "SourceReady", "False", "SourceNotFound", "", now=T2)
    assert [c.type for c in updated] == ["SourceReady", "Deployed"]
    assert updated[1] == both[1]
    assert both[0].status == "True"


def _all_true(now: datetime.datetime) -> list[meta.Condition]:
    result: list[meta.Condition] = []
    for type_ in function.READY_DEPENDS_ON:
        result = conditions.set_condition(result, type_, "True", "Ok", "", now=now)
    return result


def test_ready_is_true_when_every_dependency_is_true() -> None:
    result = conditions.summarize(_all_true(T0), function.READY_DEPENDS_ON, now=T1)
    ready = conditions.find(result, "Ready")
    assert ready is not None
    assert ready.status == "True"


def test_ready_takes_the_reason_of_the_first_failed_dependency() -> None:
    failing = conditions.set_condition(
        _all_true(T0), "BuildSucceeded", "False", "BuildFailed", "pip failed", now=T1
    )
    ready = conditions.find(
        conditions.summarize(failing, function.READY_DEPENDS_ON, now=T1), "Ready"
    )
    assert ready is not None
    assert (ready.status, ready.reason, ready.message) == ("False", "BuildFailed", "pip failed")


def test_ready_is_unknown_while_a_dependency_is_unreported() -> None:
    partial = conditions.set_condition([], "SourceReady", "True", "SourceResolved", "", now=T0)
    ready = conditions.find(
        conditions.summarize(partial, function.READY_DEPENDS_ON, now=T0), "Ready"
    )
    assert ready is not None
    assert ready.status == "Unknown"
    assert "BuildSucceeded" in ready.message


def test_a_function_scaled_to_zero_stays_ready() -> None:
    idle = conditions.set_condition(_all_true(T0), "Active", "False", "ScaledToZero", "", now=T1)
    assert conditions.is_true(
        conditions.summarize(idle, function.READY_DEPENDS_ON, now=T1), "Ready"
    )


def test_a_changed_verdict_is_written_an_unchanged_one_is_not_and_none_takes_it_away() -> None:
    now = datetime.datetime(2026, 12, 5, 10, 0, tzinfo=datetime.UTC)
    first = conditions.changed([], "RolledOut", ("Unknown", "Progressing", "10 %"), now=now)
    assert first is not None
    assert [(c.type, c.status, c.reason, c.message) for c in first] == [
        ("RolledOut", "Unknown", "Progressing", "10 %")
    ]
    assert (
        conditions.changed(first, "RolledOut", ("Unknown", "Progressing", "10 %"), now=now) is None
    )
    moved = conditions.changed(first, "RolledOut", ("False", "RolledBack", "why"), now=now)
    assert moved is not None
    assert moved[0].reason == "RolledBack"
    assert conditions.changed(moved, "RolledOut", None, now=now) == []
    assert conditions.changed([], "RolledOut", None, now=now) is None
