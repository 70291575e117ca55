"""Gathering records into batches: size, payload limit, the batching window, back-pressure."""

from __future__ import annotations

import pytest

from kfn.api import trigger as trigger_api
from kfn.triggers.stream import batching


def test_a_batch_takes_at_most_batch_size_records() -> None:
    assert batching.cut([10] * 250, batch_size=100) == 100
    assert batching.cut([10] * 7, batch_size=100) == 7


def test_a_batch_is_cut_before_its_event_would_exceed_the_payload_limit() -> None:
    one_mib = 1024 * 1024
    count = batching.cut([one_mib] * 10, batch_size=100)
    assert count == 4  # base64 makes each 4/3 MiB; a fifth would pass 6 MiB
    assert batching.ENVELOPE_BYTES + count * batching.encoded_size(one_mib) <= (
        batching.MAX_PAYLOAD_BYTES
    )


def test_a_record_larger_than_the_payload_limit_still_goes_alone() -> None:
    assert batching.cut([10 * 1024 * 1024, 10], batch_size=100) == 1


def test_a_full_batch_is_ready_at_once_even_inside_the_window() -> None:
    policy = batching.Policy(batch_size=10, window=5.0)
    assert batching.ready(10, oldest_arrival=100.0, policy=policy, now=100.0) == 0.0


def test_a_partial_batch_waits_for_the_window_since_its_oldest_record() -> None:
    policy = batching.Policy(batch_size=10, window=5.0)
    assert batching.ready(3, oldest_arrival=100.0, policy=policy, now=101.5) == pytest.approx(3.5)
    assert batching.ready(3, oldest_arrival=100.0, policy=policy, now=106.0) == 0.0


def test_without_a_window_buffered_records_are_invoked_at_once() -> None:
    policy = batching.Policy(batch_size=100, window=0.0)
    assert batching.ready(1, oldest_arrival=100.0, policy=policy, now=100.0) == 0.0


def test_nothing_buffered_means_nothing_to_wait_for() -> None:
    assert batching.ready(0, None, batching.Policy(), now=1.0) is None


def test_fetching_pauses_at_the_record_limit_and_resumes_at_half() -> None:
    policy = batching.Policy(batch_size=10000)
    limit = policy.buffer_limit
    assert limit == 40000
    assert not batching.should_pause(limit - 1, 0, policy)
    assert batching.should_pause(limit, 0, policy)
    assert not batching.should_resume(limit // 2 + 1, 0, policy)
    assert batching.should_resume(limit // 2, 0, policy)


MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("paused", "buffered", "size", "held", "fetch"),
    [
        # Running partitions: the process's budget (64 MiB) stops all of them at once.
        (False, 0, 0, 63 * MIB, True),
        (False, 0, 0, 64 * MIB, False),
        (False, 10, MIB, 100 * MIB, False),
        (False, 40000, 0, 0, False),  # its own record bound, whatever the process holds
        # Paused partitions: fetching again once both the partition and the process have
        # fallen to half their bounds.
        (True, 0, 0, 32 * MIB + 1, False),
        (True, 0, 0, 32 * MIB, True),
        (True, 20001, 0, 0, False),
        (True, 20000, 8 * MIB, 32 * MIB, True),
        (True, 0, 8 * MIB + 1, 0, False),
    ],
)
def test_every_partition_pauses_while_the_process_holds_its_byte_budget(
    paused: bool, buffered: int, size: int, held: int, fetch: bool
) -> None:
    policy = batching.Policy(batch_size=10000)
    if paused:
        assert batching.should_resume(buffered, size, policy, held=held, budget=64 * MIB) is fetch
    else:
        assert (
            batching.should_pause(buffered, size, policy, held=held, budget=64 * MIB) is not fetch
        )


def test_fetching_pauses_at_the_byte_limit_whatever_the_record_count() -> None:
    policy = batching.Policy(batch_size=10)
    assert batching.should_pause(16, batching.MAX_BUFFER_BYTES, policy)
    assert not batching.should_resume(16, batching.MAX_BUFFER_BYTES // 2 + 1, policy)
    assert batching.should_resume(16, batching.MAX_BUFFER_BYTES // 2, policy)


def test_small_batches_still_buffer_many_records_before_pausing() -> None:
    assert batching.Policy(batch_size=1).buffer_limit == 20000


def test_lag_sums_high_watermark_minus_committed_over_partitions() -> None:
    assert batching.lag({0: 100, 1: 50, 2: 10}, {0: 90, 1: 50, 2: 0}) == 20
    assert batching.lag({0: 100}, {}) == 0  # nothing committed yet: unknown, not 100


def test_the_policy_is_read_from_the_trigger_spec() -> None:
    spec = trigger_api.StreamTrigger.model_validate(
        {
            "kafka": {"bootstrapServers": ["k:9092"], "topic": "t"},
            "batchSize": 10,
            "maxBatchingWindow": "500ms",
            "maxRetries": 2,
            "maxRecordAge": "2m",
            "bisectBatchOnError": True,
            "reportBatchItemFailures": True,
        }
    )
    assert batching.Policy.of(spec) == batching.Policy(
        batch_size=10, window=0.5, max_retries=2, max_record_age=120.0, bisect=True,
        report_item_failures=True,
    )  # fmt: skip


def test_the_default_policy_retries_forever_and_never_expires_records() -> None:
    spec = trigger_api.StreamTrigger.model_validate(
        {"kafka": {"bootstrapServers": ["k:9092"], "topic": "t"}}
    )
    policy = batching.Policy.of(spec)
    assert policy.max_retries is None
    assert policy.max_record_age is None
    assert policy.batch_size == 100
