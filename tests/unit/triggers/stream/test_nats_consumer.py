"""The decisions of the JetStream consumer: its durable's settings, when to fetch, what to ack."""

from __future__ import annotations

import datetime
from typing import Any

import nats.errors
import nats.js.api
import pytest
from nats.aio.msg import Msg

from kfn.api import trigger as trigger_api
from kfn.triggers import status as status_
from kfn.triggers.stream import batching, source, worker
from kfn.triggers.stream import nats as nats_


def target(name: str = "orders", **spec: Any) -> source.Target:
    jetstream = {"servers": ["nats://n:4222"], "subject": "orders.>", "stream": "ORDERS"}
    jetstream.update(spec.pop("nats", {}))
    stream = trigger_api.StreamTrigger.model_validate({"nats": jetstream, **spec})
    return source.Target("shop", name, "uid-1", "fn", stream)


# --- the durable consumer ------------------------------------------------------------------


def test_the_durable_is_named_after_the_trigger_unless_the_spec_names_it() -> None:
    assert nats_.durable_of(target()) == "kfn_shop_orders"
    assert nats_.durable_of(target(nats={"durableName": "mine"})) == "mine"


def test_the_consumer_pulls_the_subject_with_explicit_acks_one_batch_at_a_time() -> None:
    config = nats_.consumer_config(target(batchSize=250), ack_wait=42.0)
    assert config.durable_name == config.name == "kfn_shop_orders"
    assert config.filter_subject == "orders.>"
    assert config.ack_policy == nats.js.api.AckPolicy.EXPLICIT
    assert config.max_ack_pending == 250
    assert config.ack_wait == 42.0
    assert config.deliver_subject is None  # a pull consumer
    assert config.as_dict()["ack_wait"] == 42_000_000_000


@pytest.mark.parametrize(
    ("position", "policy"),
    [
        ("Latest", nats.js.api.DeliverPolicy.NEW),
        ("Earliest", nats.js.api.DeliverPolicy.ALL),
    ],
)
def test_the_starting_position_chooses_the_deliver_policy(
    position: str, policy: nats.js.api.DeliverPolicy
) -> None:
    config = nats_.consumer_config(target(startingPosition=position))
    assert config.deliver_policy == policy
    assert config.opt_start_time is None


def test_at_timestamp_starts_by_time_from_the_starting_timestamp() -> None:
    config = nats_.consumer_config(
        target(startingPosition="AtTimestamp", startingTimestamp="2026-01-02T03:04:05Z")
    )
    assert config.deliver_policy == nats.js.api.DeliverPolicy.BY_START_TIME
    assert config.opt_start_time == datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    assert config.as_dict()["opt_start_time"] == "2026-01-02T03:04:05Z"


def test_a_changed_subject_or_batch_size_is_applied_to_an_existing_durable() -> None:
    existing = nats_.consumer_config(target())
    wanted = nats_.consumer_config(target(batchSize=10, nats={"subject": "orders.eu.>"}))
    assert nats_.drift(existing, wanted) == ["filter_subject", "max_ack_pending"]


def test_the_start_position_of_an_existing_durable_is_not_drift() -> None:
    existing = nats_.consumer_config(target(startingPosition="Earliest"))
    assert nats_.drift(existing, nats_.consumer_config(target())) == []


# --- fetching ------------------------------------------------------------------------------


def policy(batch: int = 10, window: float = 0.0) -> batching.Policy:
    return batching.Policy(batch_size=batch, window=window)


def test_an_empty_buffer_waits_for_one_record() -> None:
    assert nats_.next_fetch(0, None, False, policy(), 100.0) == nats_.Fetch(1, nats_.POLL)


def test_without_a_window_the_rest_is_asked_for_once_then_the_batch_is_invoked() -> None:
    assert nats_.next_fetch(1, 100.0, False, policy(), 100.0) == nats_.Fetch(9, nats_.DRAIN)
    assert nats_.next_fetch(4, 100.0, True, policy(), 100.0) is None


def test_a_full_buffer_is_invoked_at_once() -> None:
    assert nats_.next_fetch(10, 100.0, False, policy(window=60.0), 100.0) is None


def test_with_a_window_the_rest_is_awaited_until_the_window_closes() -> None:
    assert nats_.next_fetch(3, 100.0, True, policy(window=5.0), 102.0) == nats_.Fetch(7, 3.0)
    assert nats_.next_fetch(3, 100.0, True, policy(window=5.0), 104.99) == nats_.Fetch(
        7, nats_.DRAIN
    )
    assert nats_.next_fetch(3, 100.0, True, policy(window=5.0), 105.0) is None


# --- acknowledging -------------------------------------------------------------------------


def test_a_completed_batch_is_acknowledged_entirely() -> None:
    assert nats_.finished_prefix([5, 6, 7], None, True) == 3


def test_an_abandoned_batch_acknowledges_only_the_committed_prefix() -> None:
    assert nats_.finished_prefix([5, 6, 7, 9], 6, False) == 2
    assert nats_.finished_prefix([5, 6, 7, 9], None, False) == 0


def test_the_lag_counts_undelivered_and_unacknowledged_records() -> None:
    info = nats_.lag_of(
        nats.js.api.ConsumerInfo(
            name="d",
            stream_name="S",
            config=nats.js.api.ConsumerConfig(),
            created=datetime.datetime.now(datetime.UTC),
            num_pending=7,
            num_ack_pending=3,
        )
    )
    assert info == 10


def test_a_record_carries_the_stream_sequence_time_and_headers_of_its_message() -> None:
    sent = datetime.datetime(2026, 5, 6, 7, 8, 9, 123000, tzinfo=datetime.UTC)
    nanos = int(sent.timestamp()) * 1_000_000_000 + 123_000_000
    msg = Msg(
        _client=None,  # type: ignore[arg-type]
        subject="orders.eu",
        reply=f"$JS.ACK.ORDERS.kfn_shop_orders.1.42.17.{nanos}.5",
        data=b"hello",
        headers={"Trace": "abc"},
    )
    record = nats_.record_of(msg)
    assert record.position == 42
    assert record.raw.sequence == 42
    assert record.raw.subject == "orders.eu"
    assert record.raw.timestamp_ns == nanos
    assert record.time == pytest.approx(sent.timestamp())
    assert record.raw.headers == (("Trace", "abc"),)
    assert record.size == len(b"hello") + len("Trace") + len("abc")


def test_the_store_time_is_read_from_both_forms_of_the_ack_subject() -> None:
    assert nats_.timestamp_ns("$JS.ACK.S.c.1.2.3.1700000000123456789.0") == 1700000000123456789
    long = "$JS.ACK.hub.ACCHASH.S.c.1.2.3.1700000000123456789.0.r4nd"
    assert nats_.timestamp_ns(long) == 1700000000123456789
    assert nats_.timestamp_ns("_INBOX.x") is None


# --- the worker ----------------------------------------------------------------------------


class Started:
    def __init__(self, kind: str, target: source.Target) -> None:
        self.kind = kind
        self.target = target

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def join(self, timeout: float | None = None) -> None:
        del timeout


def test_the_worker_serves_jetstream_triggers_with_jetstream_consumers() -> None:
    statuses = status_.StatusWriter()
    streams = worker.Worker(
        lambda t: Started("kafka", t),
        statuses,
        "local",
        nats_factory=lambda t: Started("nats", t),
    )
    jetstream = streams.consumer_of(target())
    assert isinstance(jetstream, Started)
    assert jetstream.kind == "nats"
    spec = trigger_api.StreamTrigger.model_validate(
        {"kafka": {"bootstrapServers": ["k:9092"], "topic": "t"}}
    )
    topic = streams.consumer_of(source.Target("shop", "t", "u", "fn", spec))
    assert isinstance(topic, Started)
    assert topic.kind == "kafka"


def test_a_refused_credential_is_told_apart_from_the_reset_that_follows_it() -> None:
    assert nats_.refused_credentials(nats.errors.Error("nats: 'Authorization Violation'"))
    assert nats_.refused_credentials(nats.errors.AuthorizationError())
    assert not nats_.refused_credentials(ConnectionResetError(104, "Connection reset by peer"))
    assert not nats_.refused_credentials(nats.errors.NoServersError())


# --- orphans: records a consumer that left still held -------------------------------------------


@pytest.mark.parametrize(
    ("deliveries", "orphans", "take", "put_back", "left"),
    [
        pytest.param([1, 1, 1], 0, [0, 1, 2], [], 0, id="without orphans every record is taken"),
        pytest.param([2, 2], 2, [0, 1], [], 0, id="orphans coming back are taken"),
        pytest.param(
            [1, 1], 3, [], [0, 1], 3,
            id="first deliveries before a killed holder's orphans come back are put back",
        ),
        pytest.param(
            [3, 2, 1, 1], 2, [0, 1, 2, 3], [], 0,
            id="first deliveries after the last orphan came back are taken",
        ),
        pytest.param(
            [2, 1], 2, [0], [1], 1,
            id="a first delivery while an orphan is still out is put back",
        ),
        pytest.param([2, 2, 2], 1, [0, 1, 2], [], 0, id="more redeliveries than orphans are taken"),
    ],
)  # fmt: skip
def test_orphans_are_delivered_before_any_record_after_them(
    deliveries: list[int], orphans: int, take: list[int], put_back: list[int], left: int
) -> None:
    assert nats_.sort_out(deliveries, orphans) == nats_.Sorted(take, put_back, left)


def test_what_is_put_back_returns_after_the_orphans_of_a_killed_holder() -> None:
    # The orphans become due ack_wait after their holder's last in-progress ack, which was
    # before this consumer bound; what is put back becomes due later than that.
    assert nats_.PUT_BACK > nats_.ACK_WAIT
