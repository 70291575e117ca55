"""The bucket worker's series: an event's age from its eventTime, and nothing left of a
Trigger deleted while one of its events was in hand."""

from __future__ import annotations

import datetime
import threading

import prometheus_client

from tests.unit.triggers.bucket.helpers import Recorder, make_worker, notification, trigger
from tests.unit.triggers.bucket.test_push import until
from tests.unit.triggers.test_metrics import SHARED

#: Two seconds after the eventTime of :func:`notification`.
NOW = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)
LABELS = {"namespace": "media", "trigger": "thumbs", "kind": "bucket"}


def sample(name: str) -> float | None:
    return prometheus_client.REGISTRY.get_sample_value(name, LABELS)


def test_a_pushed_event_is_as_old_as_its_event_time_when_handed_on() -> None:
    bucket = make_worker(Recorder(), clock=lambda: NOW)
    bucket.routes.replace([trigger()])
    assert bucket.handle_push(notification()) == (200, "1 events handled")
    assert sample("kfn_trigger_iterator_age_seconds") == 2.0
    assert sample("kfn_trigger_lag_records") == 0.0


def test_a_trigger_deleted_with_an_event_in_hand_leaves_no_series() -> None:
    recorder = Recorder()
    recorder.gate.clear()  # the function is still running when the Trigger goes
    bucket = make_worker(recorder, clock=lambda: NOW)
    bucket.routes.replace([trigger()])
    answers: list[tuple[int, str]] = []
    pushing = threading.Thread(target=lambda: answers.append(bucket.handle_push(notification())))
    pushing.start()
    try:
        until(lambda: sample("kfn_trigger_lag_records") == 1.0)
        bucket.routes.replace([])
        assert sample("kfn_trigger_events_received_total") is None
    finally:
        recorder.gate.set()
        pushing.join(10)
    assert answers == [(200, "1 events handled")]
    for name in SHARED:
        assert sample(name) is None, name
