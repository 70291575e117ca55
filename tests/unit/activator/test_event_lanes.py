"""Fair delivery of Event invocations: per-function lanes taken in a round under a cap."""

from __future__ import annotations

import pytest

from kfn.activator import lanes


def taken(queue: lanes.Lanes[str, int], count: int) -> list[tuple[str, int] | None]:
    return [queue.take() for _ in range(count)]


def test_functions_with_ready_events_are_served_in_turn_not_first_come_first_served() -> None:
    queue: lanes.Lanes[str, int] = lanes.Lanes(per_function=10)
    for n in range(3):
        queue.push("a", n)
    queue.push("b", 0)
    queue.push("c", 0)
    assert taken(queue, 6) == [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("a", 2), None]


def test_a_function_at_its_cap_is_skipped_and_the_others_get_the_workers() -> None:
    queue: lanes.Lanes[str, int] = lanes.Lanes(per_function=2)
    for n in range(5):
        queue.push("slow", n)
    for n in range(3):
        queue.push("quick", n)
    assert taken(queue, 6) == [
        ("slow", 0),
        ("quick", 0),
        ("slow", 1),
        ("quick", 1),
        None,  # both at their cap of 2
        None,
    ]
    assert queue.in_flight("slow") == 2
    assert queue.waiting == 4


def test_a_function_that_was_at_its_cap_is_served_first_once_a_delivery_of_it_ends() -> None:
    queue: lanes.Lanes[str, int] = lanes.Lanes(per_function=1)
    queue.push("a", 0)
    queue.push("a", 1)
    queue.push("b", 0)
    queue.push("b", 1)
    assert taken(queue, 3) == [("a", 0), ("b", 0), None]
    queue.done("a")
    queue.push("c", 0)
    # a skipped (at its cap) keeps its place before c, which arrived later.
    assert taken(queue, 2) == [("a", 1), ("c", 0)]


def test_every_item_is_handed_out_once_and_the_counts_follow() -> None:
    queue: lanes.Lanes[str, int] = lanes.Lanes(per_function=3)
    pushed = [(key, n) for n in range(4) for key in ("x", "y")]
    for key, n in pushed:
        queue.push(key, n)
    out = []
    while (item := queue.take()) is not None:
        out.append(item)
        queue.done(item[0])
    assert sorted(out) == sorted(pushed)
    assert queue.waiting == 0
    assert queue.busy == 0


def test_a_stopping_activator_drains_the_ready_items_but_not_those_in_flight() -> None:
    queue: lanes.Lanes[str, int] = lanes.Lanes(per_function=1)
    queue.push("a", 0)
    queue.push("a", 1)
    queue.push("b", 0)
    assert queue.take() == ("a", 0)
    assert sorted(queue.drain()) == [("a", 1), ("b", 0)]
    assert queue.take() is None
    assert queue.waiting == 0
    assert queue.busy == 1


def test_a_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        lanes.Lanes(per_function=0)
