"""The trigger workers' metrics: one series per Trigger, labelled by namespace, name and
kind, all gone with the Trigger; failed onFailure sends counted; a stream record's age."""

from __future__ import annotations

import threading
from typing import Any

import confluent_kafka
import prometheus_client
import pytest

from kfn.api import trigger as trigger_api
from kfn.triggers import failure, invoke, metrics, onfailure
from kfn.triggers import status as status_
from kfn.triggers.cron import table
from kfn.triggers.cron import worker as cron_worker
from kfn.triggers.stream import batching, kafka, source
from tests.unit.triggers import test_cron_worker
from tests.unit.triggers.conftest import ActivatorStub
from tests.unit.triggers.stream import helpers

#: Every series a Trigger has, by the exported name.
SHARED = (
    "kfn_trigger_events_received_total",
    "kfn_trigger_events_delivered_total",
    "kfn_trigger_events_retried_total",
    "kfn_trigger_events_failed_total",
    "kfn_trigger_events_dead_lettered_total",
    "kfn_trigger_events_handed_off_total",
    "kfn_trigger_events_caught_up_total",
    "kfn_trigger_lag_records",
    "kfn_trigger_iterator_age_seconds",
    "kfn_trigger_destination_delivery_failures_total",
)
CRON_OWN = (
    "kfn_cron_fires_total",
    "kfn_cron_fire_failures_total",
    "kfn_cron_skipped_ticks_total",
    "kfn_cron_wakes_total",
)


def sample(name: str, **labels: str) -> float | None:
    return prometheus_client.REGISTRY.get_sample_value(name, labels)


def touch_every_series(namespace: str, trigger: str, kind: str) -> None:
    for metric in (
        metrics.RECEIVED, metrics.DELIVERED, metrics.RETRIED, metrics.FAILED,
        metrics.DEAD_LETTERED, metrics.HANDED_OFF, metrics.CAUGHT_UP,
        metrics.DESTINATION_DELIVERY_FAILURES,
    ):  # fmt: skip
        metric.labels(namespace, trigger, kind).inc()
    metrics.LAG.labels(namespace, trigger, kind).set(3)
    metrics.iterator_age(namespace, trigger, kind, now=100.0, written=90.0)


def cron_trigger(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": "ops", "uid": f"uid-{name}"},
        "spec": {"functionRef": {"name": "report"}, "cron": {"schedule": "@every 1h"}},
    }


# --- labels and forgetting ------------------------------------------------------------------------


def test_every_series_names_the_namespace_the_trigger_and_the_kind_apart() -> None:
    touch_every_series("shop", "orders", "stream")
    for name in SHARED:
        assert sample(name, namespace="shop", trigger="orders", kind="stream") is not None, name
        assert sample(name, trigger="shop/orders", kind="stream") is None, name
    assert sample("kfn_trigger_iterator_age_seconds",
                  namespace="shop", trigger="orders", kind="stream") == 10.0  # fmt: skip


def test_forgetting_a_trigger_drops_every_series_of_it_and_only_of_it() -> None:
    touch_every_series("shop", "gone", "bucket")
    touch_every_series("shop", "stays", "bucket")
    touch_every_series("other", "gone", "bucket")
    metrics.forget_metrics("shop", "gone", "bucket")
    for name in SHARED:
        assert sample(name, namespace="shop", trigger="gone", kind="bucket") is None, name
        assert sample(name, namespace="shop", trigger="stays", kind="bucket") is not None, name
        assert sample(name, namespace="other", trigger="gone", kind="bucket") is not None, name


def test_forgetting_a_trigger_with_no_series_changes_nothing() -> None:
    metrics.forget_metrics("shop", "never-seen", "stream")


def test_a_cron_trigger_that_leaves_the_table_takes_its_cron_series_with_it() -> None:
    touch_every_series("ops", "nightly", "cron")
    for counter in (
        cron_worker.FIRES,
        cron_worker.FAILURES,
        cron_worker.SKIPPED,
        cron_worker.WAKES,
    ):
        counter.labels("ops", "nightly").inc()
    touch_every_series("ops", "hourly", "cron")
    cron_worker.FIRES.labels("ops", "hourly").inc()
    store = table.schedules(threading.Event(), gone=cron_worker.forget_metrics)
    store.replace([cron_trigger("nightly"), cron_trigger("hourly")])
    store.replace([cron_trigger("hourly")])  # nightly was deleted
    for name in SHARED:
        assert sample(name, namespace="ops", trigger="nightly", kind="cron") is None, name
        assert sample(name, namespace="ops", trigger="hourly", kind="cron") is not None, name
    for name in CRON_OWN:
        assert sample(name, namespace="ops", trigger="nightly") is None, name
    assert sample("kfn_cron_fires_total", namespace="ops", trigger="hourly") == 1.0


def test_a_fired_tick_counts_for_its_cron_trigger_unless_the_trigger_went_meanwhile(
    activator: ActivatorStub,
) -> None:
    kept = test_cron_worker.deliverer(activator)
    kept.fire(test_cron_worker.firing({"schedule": "@every 2s"}))
    labels = {"namespace": "shop", "trigger": "tick"}
    assert (sample("kfn_cron_fires_total", **labels) or 0.0) >= 1.0
    assert sample("kfn_trigger_events_delivered_total", **labels, kind="cron") is not None
    deleted = test_cron_worker.deliverer(activator)
    deleted.alive = lambda entry: False  # deleted while the function ran
    deleted.fire(test_cron_worker.firing({"schedule": "@every 2s"}))
    for name in SHARED:
        assert sample(name, **labels, kind="cron") is None, name
    for name in CRON_OWN:
        assert sample(name, **labels) is None, name


# --- onFailure destinations that fail -------------------------------------------------------------


def test_each_failed_try_to_send_a_failure_record_is_counted(
    activator: ActivatorStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onfailure, "DESTINATION_BACKOFF", (0.01, 0.01))
    activator.answer(503)
    activator.answer(500)  # then the default: 202, taken
    target = failure.Target("shop", "resize", "sends", "bucket")
    destination = trigger_api.Destination.model_validate({"function": {"name": "dlq"}})
    labels = {"namespace": "shop", "trigger": "sends", "kind": "bucket"}
    before = sample("kfn_trigger_destination_delivery_failures_total", **labels) or 0.0
    dead_before = sample("kfn_trigger_events_dead_lettered_total", **labels) or 0.0
    sent = onfailure.send_until_stopped(
        onfailure.Destinations(invoke.Invoker(activator.url)), target, destination,
        {"version": "1.0"}, stop=threading.Event(),
    )  # fmt: skip
    assert sent
    assert len(activator.calls) == 3
    assert sample("kfn_trigger_destination_delivery_failures_total", **labels) == before + 2
    assert sample("kfn_trigger_events_dead_lettered_total", **labels) == dead_before + 1


# --- a stream record's age ------------------------------------------------------------------------


def test_a_stream_invocation_reports_the_age_of_the_last_record_it_hands_on(
    activator: ActivatorStub,
) -> None:
    spec = trigger_api.StreamTrigger.model_validate(
        {"kafka": {"bootstrapServers": ["k:9092"], "topic": "t"}}
    )
    target = source.Target("shop", "aged", "uid-1", "fn", spec)
    invoker = invoke.Invoker(activator.url)
    consumer = source.Consumer(
        target,
        source.Clients(invoker, onfailure.Destinations(invoker), status_.StatusWriter()),
    )
    consumer.wall = lambda: 1000.0
    records = [batching.Record(1, 900.0, 1, b"a"), batching.Record(2, 958.5, 1, b"b")]
    outcome = helpers.BytesSource(consumer, 0, threading.Event()).invoke(records, 1)
    assert outcome.kind == "success"
    labels = {"namespace": "shop", "trigger": "aged", "kind": "stream"}
    assert sample("kfn_trigger_iterator_age_seconds", **labels) == 41.5
    consumer.wall = lambda: 950.0  # the broker's clock ahead of ours: no age, not a negative one
    helpers.BytesSource(consumer, 0, threading.Event()).invoke(records, 2)
    assert sample("kfn_trigger_iterator_age_seconds", **labels) == 0.0


def test_a_kafka_record_is_as_old_as_its_timestamp() -> None:
    message = confluent_kafka.Message(
        topic="t", partition=0, offset=7, value=b"v", timestamp=(1, 1_700_000_000_250)
    )
    assert kafka.record_of(message).time == 1_700_000_000.25
