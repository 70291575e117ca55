"""The conditions trigger workers write: Ready summarises SourceReachable and Delivering."""

from __future__ import annotations

import datetime

from kfn.api import meta
from kfn.triggers import status

T0 = datetime.datetime(2026, 3, 1, 12, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=5)
CONNECTED = status.Verdict(True, "Connected", "connected to kafka:9092")
DOWN = status.Verdict(False, "ConnectionFailed", "kafka:9092: connection refused")


def by_type(conditions: list[meta.Condition]) -> dict[str, meta.Condition]:
    return {c.type: c for c in conditions}


def test_a_reachable_source_and_a_delivering_function_make_the_trigger_ready() -> None:
    conditions = by_type(
        status.desired(
            [], generation=3, reachable=CONNECTED, delivering=status.NO_EVENTS_YET, now=T0
        )
    )
    assert conditions["Ready"].status == "True"
    assert conditions["SourceReachable"].message == "connected to kafka:9092"
    assert {c.observed_generation for c in conditions.values()} == {3}


def test_an_unreachable_source_makes_ready_false_with_its_reason() -> None:
    before = status.desired(
        [], generation=1, reachable=CONNECTED, delivering=status.NO_EVENTS_YET, now=T0
    )
    after = by_type(
        status.desired(
            before, generation=1, reachable=DOWN, delivering=status.NO_EVENTS_YET, now=T1
        )
    )
    assert (after["Ready"].status, after["Ready"].reason) == ("False", "ConnectionFailed")
    assert after["Ready"].last_transition_time == T1
    assert after["Delivering"].last_transition_time == T0


def test_only_visible_changes_count_as_changes() -> None:
    first = status.desired(
        [], generation=1, reachable=CONNECTED, delivering=status.NO_EVENTS_YET, now=T0
    )
    again = status.desired(
        first, generation=1, reachable=CONNECTED, delivering=status.NO_EVENTS_YET, now=T1
    )
    assert status.visible(first) == status.visible(again)
    failing = status.Verdict(False, "DeliveryFailing", "status 500: boom")
    changed = status.desired(first, generation=1, reachable=CONNECTED, delivering=failing, now=T1)
    assert status.visible(changed) != status.visible(first)


def test_the_writer_holds_back_a_second_change_within_its_interval() -> None:
    now = [T0]
    writer = status.StatusWriter(interval=2.0, clock=lambda: now[0])
    key = ("shop", "orders")
    writer.register(key, 1, [])
    writer.set(key, reachable=CONNECTED)
    assert len(writer._due(now[0])) == 1
    writer.set(key, reachable=DOWN)
    assert writer._due(now[0] + datetime.timedelta(seconds=1)) == []
    (due,) = writer._due(now[0] + datetime.timedelta(seconds=3))
    assert due[1]["conditions"][0]["reason"] == "ConnectionFailed"
