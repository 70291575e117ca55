"""The store every component watches a kind through (kfn.kube.cache).

Most tests drive :meth:`Store.replace` and :meth:`Store.change` as the reflector would. The
tests of the store's thread hand it :class:`tests.unit.apiserver.ApiServer` in place of
:func:`kfn.kube.reflect`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

import pytest

from kfn import kube
from kfn.kube import cache
from tests.unit.apiserver import ApiServer


def obj(name: str, namespace: str = "team", **spec: Any) -> kube.Object:
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Thing",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
        "spec": spec,
    }


@dataclasses.dataclass(frozen=True)
class Thing:
    """What the tests' parse makes of an object."""

    name: str
    size: int
    #: How many versions of the object came before this one.
    versions: int = 0


def parse(o: kube.Object, previous: Thing | None) -> Thing | None:
    """A Thing; None when ``spec.size`` is missing or not a number (the "invalid" objects)."""
    size = o["spec"].get("size")
    if not isinstance(size, int):
        return None
    return Thing(o["metadata"]["name"], size, previous.versions + 1 if previous else 0)


class Heard:
    """A listener that keeps every call it gets."""

    def __init__(self) -> None:
        self.calls: list[list[cache.Change[Thing]]] = []

    def __call__(self, changes: list[cache.Change[Thing]]) -> None:
        self.calls.append(changes)

    def last(self) -> list[tuple[cache.Key, int | None]]:
        return [(c.key, c.value.size if c.value else None) for c in self.calls[-1]]


def store(**kwargs: Any) -> cache.Store[Thing]:
    return cache.Store("kfn.dev/v1alpha1", "Thing", parse, **kwargs)


A, B, C = ("team", "a"), ("team", "b"), ("team", "c")


# --- lists and watch events ----------------------------------------------------------------


def test_a_list_fills_the_store_with_the_parsed_objects_by_namespace_and_name() -> None:
    things = store()
    things.replace([obj("a", size=1), obj("b", size=2)])
    assert things.snapshot() == {A: Thing("a", 1), B: Thing("b", 2)}
    assert things.get(A) == Thing("a", 1)
    assert things.values() == [Thing("a", 1), Thing("b", 2)]
    assert things.get(C) is None


def test_watch_events_add_modify_and_delete() -> None:
    things = store()
    things.replace([obj("a", size=1)])
    things.change("ADDED", obj("b", size=2))
    things.change("MODIFIED", obj("a", size=3))
    assert things.snapshot() == {A: Thing("a", 3, versions=1), B: Thing("b", 2)}
    things.change("DELETED", obj("a", size=3))
    assert things.snapshot() == {B: Thing("b", 2)}


def test_a_relist_lets_go_of_what_was_deleted_while_the_watch_was_down() -> None:
    heard = Heard()
    things = store(listener=heard)
    things.replace([obj("a", size=1), obj("b", size=2)])
    things.replace([obj("b", size=2), obj("c", size=3)])
    assert things.snapshot() == {B: Thing("b", 2, versions=1), C: Thing("c", 3)}
    assert heard.last() == [(A, None), (B, 2), (C, 3)]


def test_a_snapshot_is_a_copy_the_store_does_not_change_under_the_reader() -> None:
    things = store()
    things.replace([obj("a", size=1)])
    taken = things.snapshot()
    things.change("DELETED", obj("a"))
    assert taken == {A: Thing("a", 1)}


def test_another_key_function_keeps_objects_by_what_it_returns() -> None:
    things = store(key=lambda o: ("", o["metadata"]["uid"]))
    things.replace([obj("a", size=1)])
    things.change("DELETED", obj("a"))
    assert things.snapshot() == {}
    things.change("ADDED", obj("b", size=2))
    assert list(things.snapshot()) == [("", "uid-b")]


# --- parsing -------------------------------------------------------------------------------


def test_an_object_that_does_not_parse_stays_out_of_the_store() -> None:
    things = store()
    things.replace([obj("a", size="big"), obj("b", size=2)])
    things.change("ADDED", obj("c"))
    assert things.snapshot() == {B: Thing("b", 2)}


def test_a_stored_object_that_stops_parsing_is_let_go_and_reported_gone() -> None:
    heard = Heard()
    things = store(listener=heard)
    things.replace([obj("a", size=1)])
    things.change("MODIFIED", obj("a", size="big"))
    assert things.snapshot() == {}
    assert heard.last() == [(A, None)]
    things.change("MODIFIED", obj("a", size=1))
    things.replace([obj("a", size="big")])
    assert things.snapshot() == {}
    assert heard.last() == [(A, None)]


def test_parse_sees_the_value_it_replaces_on_watch_events_and_on_a_relist() -> None:
    things = store()
    things.replace([obj("a", size=1)])
    things.change("MODIFIED", obj("a", size=2))
    things.replace([obj("a", size=3)])
    assert things.get(A) == Thing("a", 3, versions=2)
    things.change("DELETED", obj("a"))
    things.change("ADDED", obj("a", size=4))
    assert things.get(A) == Thing("a", 4, versions=0)


def test_a_deleted_object_is_let_go_without_being_parsed() -> None:
    parsed: list[str] = []

    def counting(o: kube.Object, previous: Thing | None) -> Thing | None:
        parsed.append(o["metadata"]["name"])
        return parse(o, previous)

    things = cache.Store("kfn.dev/v1alpha1", "Thing", counting)
    things.replace([obj("a", size=1)])
    things.change("DELETED", obj("a", size="not parsed"))
    assert parsed == ["a"]
    assert things.snapshot() == {}


def free_for_another_thread(lock: threading.RLock) -> bool:
    """Whether another thread could take ``lock`` now (this one may hold it: it is an RLock)."""
    free: list[bool] = []

    def try_lock() -> None:
        free.append(lock.acquire(blocking=False))
        if free[0]:
            lock.release()

    other = threading.Thread(target=try_lock)
    other.start()
    other.join()
    return free[0]


def test_parse_runs_under_the_lock_so_no_reader_sees_a_table_half_replaced() -> None:
    things: cache.Store[Thing]
    free_while_parsing: list[bool] = []

    def probing(o: kube.Object, previous: Thing | None) -> Thing | None:
        free_while_parsing.append(free_for_another_thread(things.lock))
        return parse(o, previous)

    things = cache.Store("kfn.dev/v1alpha1", "Thing", probing)
    things.replace([obj("a", size=1)])
    things.change("MODIFIED", obj("a", size=2))
    assert free_while_parsing == [False, False]


# --- listening -------------------------------------------------------------------------------


def test_the_listener_hears_each_list_and_each_event_once_with_what_changed() -> None:
    heard = Heard()
    things = store(listener=heard)
    things.replace([obj("a", size=1), obj("b", size="big")])
    things.change("MODIFIED", obj("a", size=2))
    things.change("DELETED", obj("a"))
    assert [[(c.key, c.value) for c in call] for call in heard.calls] == [
        [(A, Thing("a", 1))],
        [(A, Thing("a", 2, versions=1))],
        [(A, None)],
    ]


def test_an_event_that_changes_nothing_is_heard_with_no_changes() -> None:
    heard = Heard()
    things = store(listener=heard)
    things.replace([])
    things.change("DELETED", obj("a"))
    things.change("MODIFIED", obj("b", size="big"))
    assert heard.calls == [[], [], []]


def test_the_listener_runs_with_the_lock_released() -> None:
    things: cache.Store[Thing]
    free: list[bool] = []

    def listener(changes: list[cache.Change[Thing]]) -> None:
        free.append(free_for_another_thread(things.lock))

    things = store(listener=listener)
    things.replace([obj("a", size=1)])
    things.change("DELETED", obj("a"))
    assert free == [True, True]


def test_synced_is_set_by_the_first_list_even_an_empty_one_after_the_listener_heard_it() -> None:
    synced_when_heard: list[bool] = []
    things: cache.Store[Thing] = store(
        listener=lambda _: synced_when_heard.append(things.synced.is_set())
    )
    things.change("ADDED", obj("a", size=1))
    assert not things.synced.is_set()
    things.replace([])
    assert things.synced.is_set()
    assert synced_when_heard == [False, False]


@pytest.mark.asyncio
async def test_on_loop_runs_the_listener_on_the_loop_in_the_order_of_the_events() -> None:
    loop_thread = threading.get_ident()
    heard: list[tuple[list[tuple[cache.Key, int | None]], bool]] = []

    def listener(changes: list[cache.Change[Thing]]) -> None:
        on_loop = threading.get_ident() == loop_thread
        heard.append(([(c.key, c.value.size if c.value else None) for c in changes], on_loop))

    things = store(listener=cache.on_loop(asyncio.get_running_loop(), listener))

    def reflector() -> None:
        things.replace([obj("a", size=1)])
        things.change("MODIFIED", obj("a", size=2))
        things.change("DELETED", obj("a"))

    # The calls the reflector scheduled come before the one that resumes this test.
    await asyncio.to_thread(reflector)
    assert heard == [([(A, 1)], True), ([(A, 2)], True), ([(A, None)], True)]


# --- the store's own reflector thread --------------------------------------------------------


def test_start_watches_the_kind_in_a_thread_of_its_own() -> None:
    server = ApiServer()
    things = store(reflect=server.reflect, label_selector="kfn.dev/function")
    things.start()
    try:
        server.send([obj("a", size=1)])
        server.send(("ADDED", obj("b", size=2)))
        assert things.synced.is_set()
        assert things.snapshot() == {A: Thing("a", 1), B: Thing("b", 2)}
        assert server.calls == [("kfn.dev/v1alpha1", "Thing", "kfn.dev/function", "thing-watch")]
        with pytest.raises(RuntimeError, match="running already"):
            things.start()
    finally:
        things.stop()
        server.hang_up()


def test_stop_takes_in_no_more_events_and_the_thread_ends_after_the_next_one() -> None:
    server = ApiServer()
    things = store(reflect=server.reflect)
    things.start()
    server.send([obj("a", size=1)])
    assert not things.stop()  # the thread waits for the server's next event
    server.send(("DELETED", obj("a")))
    assert things.stop(timeout=10)
    assert things.snapshot() == {A: Thing("a", 1)}


def test_a_store_started_again_lists_anew_and_drops_what_is_gone() -> None:
    server = ApiServer()
    things = store(reflect=server.reflect)
    things.start()
    server.send([obj("a", size=1)])
    things.stop()
    server.send(("ADDED", obj("late", size=9)))  # the first thread leaves after this one
    things.start()
    server.send([obj("b", size=2)])
    try:
        assert things.snapshot() == {B: Thing("b", 2)}
        assert len(server.calls) == 2
    finally:
        things.stop()
        server.hang_up()
