"""A connection's one timer: moved from request to request, never one made per request.

The loop is faked: its clock is set by the test, and its timers fire when the test says so.
"""

from __future__ import annotations

from collections.abc import Callable

from kfn.activator import deadline


class Handle:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    """The two things a deadline asks of its loop: the time, and a timer."""

    def __init__(self) -> None:
        self.now = 100.0
        self.handles: list[Handle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        handle = Handle(when, callback)
        self.handles.append(handle)
        return handle

    @property
    def pending(self) -> list[Handle]:
        return [h for h in self.handles if not h.cancelled and h.callback is not None]

    def run_until(self, now: float) -> None:
        """Move the clock to ``now``, firing every timer due by then, in order."""
        while True:
            due = [h for h in self.pending if h.when <= now]
            if not due:
                break
            handle = min(due, key=lambda h: h.when)
            self.now = handle.when
            callback, handle.callback = handle.callback, None  # type: ignore[assignment]
            callback()
        self.now = now


class Request:
    def __init__(self) -> None:
        self.timed_out: list[float] = []
        self.loop: Loop | None = None

    def on_timeout(self) -> None:
        assert self.loop is not None
        self.timed_out.append(self.loop.now)


def setup() -> tuple[Loop, deadline.Deadline]:
    loop = Loop()
    return loop, deadline.Deadline(loop)  # type: ignore[arg-type]


def request(loop: Loop) -> Request:
    made = Request()
    made.loop = loop
    return made


def test_a_request_is_told_when_its_bound_runs_out() -> None:
    loop, timer = setup()
    first = request(loop)
    timer.hold(first, 103.0)
    loop.run_until(102.9)
    assert first.timed_out == []
    loop.run_until(103.0)
    assert first.timed_out == [103.0]
    assert not timer.holds(first)


def test_requests_one_after_another_share_one_timer() -> None:
    loop, timer = setup()
    for _ in range(100):
        served = request(loop)
        timer.hold(served, loop.now + 3)
        loop.now += 0.01
        timer.release(served)
    assert len(loop.handles) == 1


def test_a_bound_moved_later_fires_at_the_later_time_only() -> None:
    loop, timer = setup()
    first, second = request(loop), request(loop)
    timer.hold(first, 103.0)
    loop.run_until(102.0)
    timer.release(first)
    timer.hold(second, 105.0)
    loop.run_until(104.9)
    assert (first.timed_out, second.timed_out) == ([], [])
    loop.run_until(106.0)
    assert second.timed_out == [105.0]
    assert loop.pending == []


def test_an_earlier_bound_replaces_the_timer() -> None:
    loop, timer = setup()
    served = request(loop)
    timer.hold(served, 130.0)  # waiting for a pod: the queue timeout
    timer.hold(served, 101.0)  # the activator stops: the drain's bound is earlier
    loop.run_until(101.0)
    assert served.timed_out == [101.0]
    assert [h.when for h in loop.handles if h.cancelled] == [130.0]


def test_a_timer_firing_with_no_request_stops() -> None:
    loop, timer = setup()
    served = request(loop)
    timer.hold(served, 103.0)
    timer.release(served)
    loop.run_until(200.0)
    assert served.timed_out == []
    assert loop.pending == []


def test_releasing_someone_elses_bound_leaves_it() -> None:
    loop, timer = setup()
    ended, serving = request(loop), request(loop)
    timer.hold(serving, 103.0)
    timer.release(ended)
    loop.run_until(103.0)
    assert serving.timed_out == [103.0]


def test_a_closed_connection_leaves_no_timer_behind() -> None:
    loop, timer = setup()
    served = request(loop)
    timer.hold(served, 103.0)
    timer.close()
    assert loop.pending == []
    loop.run_until(200.0)
    assert served.timed_out == []
