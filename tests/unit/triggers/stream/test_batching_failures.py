"""One batch through the function: retries, backoff, bisecting, partial failures, expiry.

``run`` drives a batch with the pure decisions and a fake clock the way a consumer does:
invoke when told, jump the clock to the end of each wait, record what finished and what
went to onFailure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import pytest

from kfn.triggers.stream import batching

Rec = batching.Record[str]
Handler = Callable[[tuple[Rec, ...]], batching.Outcome]


def records(count: int, *, start: int = 0, time: float = 0.0) -> list[Rec]:
    return [batching.Record(start + i, time, 10, f"r{start + i}") for i in range(count)]


@dataclasses.dataclass
class Run:
    invocations: list[tuple[float, tuple[int, ...]]] = dataclasses.field(default_factory=list)
    done: list[int] = dataclasses.field(default_factory=list)
    dead: list[tuple[tuple[int, ...], str, int]] = dataclasses.field(default_factory=list)
    retried: int = 0
    now: float = 0.0


def run(batch: Sequence[Rec], policy: batching.Policy, handler: Handler, *, now: float = 0.0,
        limit: int = 1000) -> Run:  # fmt: skip
    result = Run(now=now)
    pending = batching.begin(batch)
    for _ in range(limit):
        step = batching.next_step(pending, policy, result.now)
        if isinstance(step, batching.Finished):
            return result
        if isinstance(step, batching.Wait):
            assert step.until > result.now
            result.now = step.until
            continue
        if isinstance(step, batching.Expire):
            result.dead.append(
                (tuple(r.position for r in step.records), "RecordAgeExceeded", step.invokes)
            )
            pending = step.rest
            continue
        result.invocations.append((result.now, tuple(r.position for r in step.records)))
        following = batching.after_invoke(pending, handler(step.records), policy, result.now)
        result.retried += following.retried
        for effect in following.effects:
            if isinstance(effect, batching.Done):
                result.done.extend(r.position for r in effect.records)
            else:
                positions = tuple(r.position for r in effect.records)
                result.dead.append((positions, effect.condition, effect.invokes))
        pending = following.pending
    raise AssertionError("the batch never finished")


def succeed(records: tuple[Rec, ...]) -> batching.Outcome:
    return batching.Outcome("success")


def fail(records: tuple[Rec, ...]) -> batching.Outcome:
    return batching.Outcome("function-error")


def poison(bad: int) -> Handler:
    def handler(records: tuple[Rec, ...]) -> batching.Outcome:
        if any(r.position == bad for r in records):
            return batching.Outcome("function-error")
        return batching.Outcome("success")

    return handler


def test_a_successful_batch_is_invoked_once_and_done_in_order() -> None:
    result = run(records(5), batching.Policy(), succeed)
    assert result.invocations == [(0.0, (0, 1, 2, 3, 4))]
    assert result.done == [0, 1, 2, 3, 4]
    assert result.dead == []


def test_a_failing_batch_is_retried_with_doubling_backoff_until_max_retries() -> None:
    result = run(records(3), batching.Policy(max_retries=3), fail)
    assert [t for t, _ in result.invocations] == [0.0, 1.0, 3.0, 7.0]
    assert result.retried == 3
    assert result.dead == [((0, 1, 2), "RetriesExhausted", 4)]
    assert result.done == []


def test_the_backoff_stops_doubling_at_thirty_seconds() -> None:
    result = run(records(1), batching.Policy(max_retries=8), fail)
    gaps = [b[0] - a[0] for a, b in zip(result.invocations, result.invocations[1:], strict=False)]
    assert gaps == [1, 2, 4, 8, 16, 30, 30, 30]


def test_zero_retries_sends_the_batch_to_on_failure_after_one_invocation() -> None:
    result = run(records(2), batching.Policy(max_retries=0), fail)
    assert len(result.invocations) == 1
    assert result.dead == [((0, 1), "RetriesExhausted", 1)]


def test_a_batch_that_recovers_is_done_and_the_backoff_resets_for_the_next_batch() -> None:
    calls = iter(["function-error", "function-error", "success"])
    result = run(records(2), batching.Policy(max_retries=5),
                 lambda _: batching.Outcome(next(calls)))  # type: ignore[arg-type]  # fmt: skip
    assert result.done == [0, 1]
    assert result.dead == []
    assert result.retried == 2


def test_with_unlimited_retries_records_expire_at_max_record_age() -> None:
    policy = batching.Policy(max_retries=None, max_record_age=60.0)
    result = run(records(2, time=0.0), policy, fail)
    assert result.done == []
    assert result.dead == [((0, 1), "RecordAgeExceeded", len(result.invocations))]
    assert all(t <= 60.0 for t, _ in result.invocations)
    assert result.now > 60.0


def test_records_already_older_than_max_record_age_are_never_invoked() -> None:
    policy = batching.Policy(max_record_age=60.0)
    batch = records(2, time=0.0) + records(2, start=2, time=100.0)
    result = run(batch, policy, succeed, now=120.0)
    assert result.dead == [((0, 1), "RecordAgeExceeded", 0)]
    assert result.invocations == [(120.0, (2, 3))]
    assert result.done == [2, 3]


def test_throttling_backs_off_without_using_retries() -> None:
    answers = iter(["throttled"] * 6 + ["function-error", "success"])
    result = run(records(1), batching.Policy(max_retries=1),
                 lambda _: batching.Outcome(next(answers)))  # type: ignore[arg-type]  # fmt: skip
    assert result.done == [0]
    assert result.dead == []
    assert result.retried == 1


def test_a_throttled_batch_counts_its_consecutive_throttles_for_pausing_fetches() -> None:
    pending = batching.begin(records(1))
    policy = batching.Policy()
    throttled = batching.Outcome("throttled")
    first = batching.after_invoke(pending, throttled, policy, 0.0).pending
    second = batching.after_invoke(first, throttled, policy, 1.0).pending
    assert (first.throttled, second.throttled) == (1, 2)
    assert second.not_before == 3.0
    assert second.segments[0].invokes == 0  # a throttled request never reached the function
    calm = batching.after_invoke(second, batching.Outcome("function-error"), policy, 3.0)
    assert calm.pending.throttled == 0


def test_bisecting_isolates_a_poison_record_and_the_rest_is_done_in_order() -> None:
    policy = batching.Policy(max_retries=2, bisect=True)
    result = run(records(100), policy, poison(37))
    assert result.done == [p for p in range(100) if p != 37]
    [(positions, condition, invokes)] = result.dead
    assert positions == (37,)
    assert condition == "RetriesExhausted"
    # split to a single record (7 invocations containing 37) then two retries of it alone
    assert invokes == 7 + 2
    assert result.retried == 2


def test_a_split_does_not_count_as_a_retry_and_is_invoked_without_delay() -> None:
    policy = batching.Policy(max_retries=0, bisect=True)
    result = run(records(4), policy, poison(3))
    assert [t for t, _ in result.invocations] == [0.0] * len(result.invocations)
    assert [b for _, b in result.invocations] == [(0, 1, 2, 3), (0, 1), (2, 3), (2,), (3,)]
    assert result.dead == [((3,), "RetriesExhausted", 3)]
    assert result.done == [0, 1, 2]


def test_records_done_are_reported_in_position_order_across_halves() -> None:
    policy = batching.Policy(max_retries=1, bisect=True)
    result = run(records(9), policy, poison(4))
    assert result.done == [0, 1, 2, 3, 5, 6, 7, 8]


def report(failed: Sequence[int]) -> Handler:
    """A handler that fails the given positions once each and reports them."""
    remaining = set(failed)

    def handler(batch: tuple[Rec, ...]) -> batching.Outcome:
        mine = [r.position for r in batch if r.position in remaining]
        remaining.difference_update(mine)
        return batching.Outcome("success", failed_from=min(mine) if mine else None)

    return handler


def test_reported_item_failures_retry_from_the_lowest_failed_record() -> None:
    policy = batching.Policy(max_retries=3, report_item_failures=True)
    result = run(records(10), policy, report([6, 4]))
    assert [b for _, b in result.invocations] == [tuple(range(10)), tuple(range(4, 10))]
    assert result.done == list(range(10))
    assert result.retried == 1


def test_reported_item_failures_are_ignored_without_the_setting() -> None:
    result = run(records(5), batching.Policy(max_retries=3), report([2]))
    assert len(result.invocations) == 1
    assert result.done == [0, 1, 2, 3, 4]


def test_reported_item_failures_that_keep_failing_go_to_on_failure_from_that_record() -> None:
    policy = batching.Policy(max_retries=1, report_item_failures=True)

    def handler(batch: tuple[Rec, ...]) -> batching.Outcome:
        return batching.Outcome("success", failed_from=3 if batch[0].position <= 3 else None)

    result = run(records(6), policy, handler)
    assert result.done == [0, 1, 2]
    assert result.dead == [((3, 4, 5), "RetriesExhausted", 2)]


def test_reported_failures_with_bisect_split_the_failed_remainder() -> None:
    policy = batching.Policy(max_retries=0, bisect=True, report_item_failures=True)

    def handler(batch: tuple[Rec, ...]) -> batching.Outcome:
        return batching.Outcome("success", failed_from=5 if any(r.position == 5 for r in batch)
                                else None)  # fmt: skip

    result = run(records(8), policy, handler)
    assert result.done == [0, 1, 2, 3, 4, 6, 7]
    assert [d[0] for d in result.dead] == [(5,)]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"batchItemFailures": []}', None),
        (b'{"batchItemFailures": [{"itemIdentifier": "12"}, {"itemIdentifier": "11"}]}', 11),
        (b'{"batchItemFailures": [{"itemIdentifier": 13}]}', 13),
        (b'{"batchItemFailures": [{"itemIdentifier": "99"}]}', 10),
        (b'{"batchItemFailures": [{"itemIdentifier": ""}]}', 10),
        (b'{"batchItemFailures": [{}]}', 10),
        (b'{"statusCode": 200}', None),
        (b"null", None),
        (b"not json", None),
    ],
)
def test_the_handler_answer_gives_the_lowest_failed_offset_or_fails_all(
    body: bytes, expected: int | None
) -> None:
    assert batching.failed_from(body, [10, 11, 12, 13]) == expected
