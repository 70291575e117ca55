"""Carrying a batch through the function: what is committed, when, and what is given up."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Sequence

from kfn import retry
from kfn.triggers.stream import batching, runner

Rec = batching.Record[str]


class FakeClock:
    """Time that passes only when the runner waits (through the cancel event)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Cancel(threading.Event):
    """A cancel event whose waits advance the fake clock instead of sleeping."""

    def __init__(self, clock: FakeClock, *, after_waits: int | None = None) -> None:
        super().__init__()
        self.clock = clock
        self.after_waits = after_waits
        self.waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        if self.after_waits is not None and self.waits > self.after_waits:
            self.set()
            return True
        self.clock.now += timeout or 0.0
        return self.is_set()


@dataclasses.dataclass
class FakeSource:
    """A source whose function answers through ``answer``; records what the runner did."""

    answer: Callable[[Sequence[Rec]], retry.Outcome]
    accept_failures: bool = True
    invoked: list[tuple[int, ...]] = dataclasses.field(default_factory=list)
    commits: list[int] = dataclasses.field(default_factory=list)
    given_up: list[tuple[tuple[int, ...], str]] = dataclasses.field(default_factory=list)
    delivered_count: int = 0
    seen: list[int] = dataclasses.field(default_factory=list)

    def invoke(self, records: Sequence[Rec], attempt: int) -> retry.Outcome:
        self.invoked.append(tuple(r.position for r in records))
        return self.answer(records)

    def give_up(self, dead: batching.DeadLetter[str], last: retry.Outcome | None) -> bool:
        if not self.accept_failures:
            return False
        self.given_up.append((tuple(r.position for r in dead.records), dead.condition))
        return True

    def commit(self, last: Rec) -> None:
        self.commits.append(last.position)

    def observe(self, outcome: retry.Outcome, records: int) -> None:
        self.seen.append(outcome.status)

    def delivered(self, records: int) -> None:
        self.delivered_count += records


def batch(count: int, *, time: float = 1000.0) -> list[Rec]:
    return [batching.Record(10 + i, time, 1, f"v{i}") for i in range(count)]


def ok(records: Sequence[Rec]) -> retry.Outcome:
    return retry.Outcome(200, b"null")


def failing(bad: int) -> Callable[[Sequence[Rec]], retry.Outcome]:
    def answer(records: Sequence[Rec]) -> retry.Outcome:
        if any(r.position == bad for r in records):
            return retry.Outcome(200, b'{"errorMessage":"bad"}', function_error=True)
        return retry.Outcome(200, b"null")

    return answer


def test_a_successful_batch_is_committed_once_at_its_last_record() -> None:
    clock = FakeClock()
    source = FakeSource(ok)
    assert runner.run_batch(batch(5), batching.Policy(), source, cancel=Cancel(clock), clock=clock)
    assert source.commits == [14]
    assert source.delivered_count == 5


def test_commits_advance_only_over_a_finished_prefix_while_bisecting() -> None:
    clock = FakeClock()
    source = FakeSource(failing(12))
    policy = batching.Policy(max_retries=1, bisect=True)
    assert runner.run_batch(batch(8), policy, source, cancel=Cancel(clock), clock=clock)
    assert source.given_up == [((12,), "RetriesExhausted")]
    assert source.commits == sorted(source.commits)
    assert source.commits[-1] == 17
    # 10..11 are done first (commit 11); 12 is given up only after its retry (commit 13 then)
    assert source.commits[0] == 11
    assert source.delivered_count == 7


def test_a_cancelled_batch_stops_in_its_backoff_without_committing() -> None:
    clock = FakeClock()
    source = FakeSource(failing(10))
    cancel = Cancel(clock, after_waits=2)
    assert not runner.run_batch(batch(3), batching.Policy(), source, cancel=cancel, clock=clock)
    assert source.commits == []
    assert len(source.invoked) == 3


def test_records_are_not_committed_when_on_failure_could_not_take_them() -> None:
    clock = FakeClock()
    source = FakeSource(failing(10), accept_failures=False)
    policy = batching.Policy(max_retries=0)
    assert not runner.run_batch(batch(2), policy, source, cancel=Cancel(clock), clock=clock)
    assert source.commits == []


def test_records_too_old_go_to_on_failure_without_an_invocation_and_are_committed() -> None:
    clock = FakeClock()
    clock.now = 1000.0 + 3600
    source = FakeSource(ok)
    policy = batching.Policy(max_record_age=60.0)
    assert runner.run_batch(batch(3), policy, source, cancel=Cancel(clock), clock=clock)
    assert source.invoked == []
    assert source.given_up == [((10, 11, 12), "RecordAgeExceeded")]
    assert source.commits == [12]


def test_an_unavailable_function_is_retried_until_it_answers_without_giving_up() -> None:
    clock = FakeClock()
    answers = iter([retry.Outcome(503), retry.Outcome(0, b"refused"),
                    retry.Outcome(404), retry.Outcome(200)])  # fmt: skip
    source = FakeSource(lambda _: next(answers))
    policy = batching.Policy(max_retries=0)
    assert runner.run_batch(batch(2), policy, source, cancel=Cancel(clock), clock=clock)
    assert source.given_up == []
    assert source.commits == [11]
    assert clock.now == 1000.0 + 1 + 2 + 4


def test_reported_item_failures_commit_the_records_before_the_first_failure() -> None:
    clock = FakeClock()
    calls = 0

    def answer(records: Sequence[Rec]) -> retry.Outcome:
        nonlocal calls
        calls += 1
        failures = [{"itemIdentifier": "12"}] if calls == 1 else []
        return retry.Outcome(200, json.dumps({"batchItemFailures": failures}).encode())

    source = FakeSource(answer)
    policy = batching.Policy(report_item_failures=True)
    assert runner.run_batch(batch(5), policy, source, cancel=Cancel(clock), clock=clock)
    assert source.invoked == [(10, 11, 12, 13, 14), (12, 13, 14)]
    assert source.commits == [11, 14]


def test_a_rejected_request_counts_as_a_function_error() -> None:
    clock = FakeClock()
    source = FakeSource(lambda _: retry.Outcome(413, b"too large"))
    policy = batching.Policy(max_retries=1)
    assert runner.run_batch(batch(1), policy, source, cancel=Cancel(clock), clock=clock)
    assert source.given_up == [((10,), "RetriesExhausted")]
    assert len(source.invoked) == 2
