"""Ready endpoints from pod facts and the activator's own readiness probes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from kfn import stats
from kfn.activator import discovery, pod_probe
from tests.unit.apiserver import ApiServer, Event

from .conftest import until

FN = stats.FunctionKey("team", "hello")


def pod(
    uid: str,
    ip: str = "",
    *,
    ready: bool | None = None,
    deleting: bool = False,
    phase: str = "Running",
    function: str = "hello",
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "uid": uid,
        "namespace": "team",
        "labels": {"kfn.dev/function": function, "app.kubernetes.io/component": "function"},
    }
    if deleting:
        meta["deletionTimestamp"] = "2024-05-01T00:00:00Z"
    status: dict[str, Any] = {"phase": phase, "podIP": ip}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"metadata": meta, "status": status}


def view(body: dict[str, Any]) -> discovery.PodView:
    v = discovery.view(body)
    assert v is not None
    return v


def test_a_pod_is_read_with_its_function_address_and_state() -> None:
    v = view(pod("a", "10.0.0.5", ready=False))
    assert (v.function, v.address, v.gone, v.kubelet_ready) == (FN, "10.0.0.5:8080", False, False)
    assert view(pod("b", "10.0.0.6", deleting=True)).gone
    assert view(pod("c", "10.0.0.7", phase="Failed")).gone
    assert discovery.view({"metadata": {"uid": "x", "labels": {}}}) is None


def test_a_pod_without_an_ip_is_not_probed_and_not_ready() -> None:
    tracker = discovery.PodTracker()
    tracker.observe(view(pod("a")))
    assert not tracker.needs_probe("a")
    assert tracker.ready(FN) == frozenset()


def test_a_new_pod_is_ready_once_the_activators_probe_answers_before_the_kubelet() -> None:
    tracker = discovery.PodTracker()
    tracker.observe(view(pod("a", "10.0.0.5", ready=False)))
    assert tracker.needs_probe("a")
    assert tracker.ready(FN) == frozenset()
    assert tracker.probed("a") == FN
    assert not tracker.needs_probe("a")
    assert tracker.ready(FN) == {"10.0.0.5:8080"}


def test_a_terminating_pod_leaves_the_ready_set_at_once() -> None:
    tracker = discovery.PodTracker()
    tracker.observe(view(pod("a", "10.0.0.5", ready=True)))
    assert tracker.ready(FN) == {"10.0.0.5:8080"}
    tracker.observe(view(pod("a", "10.0.0.5", ready=True, deleting=True)))
    assert tracker.ready(FN) == frozenset()
    assert not tracker.needs_probe("a")


def test_a_pod_the_kubelet_stops_calling_ready_leaves_and_is_not_probed_back_in() -> None:
    tracker = discovery.PodTracker()
    tracker.observe(view(pod("a", "10.0.0.5", ready=False)))
    tracker.probed("a")
    tracker.observe(view(pod("a", "10.0.0.5", ready=True)))
    tracker.observe(view(pod("a", "10.0.0.5", ready=False)))
    assert tracker.ready(FN) == frozenset()
    assert not tracker.needs_probe("a")
    tracker.observe(view(pod("a", "10.0.0.5", ready=True)))
    assert tracker.ready(FN) == {"10.0.0.5:8080"}


# --- the source, fed by the stand-in API server ---------------------------------------------

Updates = list[tuple[stats.FunctionKey, frozenset[str]]]


@contextlib.asynccontextmanager
async def watching(
    updates: Updates, **options: Any
) -> AsyncIterator[tuple[discovery.KubeEndpointSource, Callable[[Event], Awaitable[None]]]]:
    """Runs a source (made with ``options``) against a stand-in API server, its updates going
    to ``updates``; yields it and a function that sends it one list or watch event and
    returns once the source has taken it in."""
    server = ApiServer()
    source = discovery.KubeEndpointSource(reflect=server.reflect, **options)
    running = asyncio.create_task(
        source.run(lambda function, addresses: updates.append((function, addresses)))
    )

    # The send returns after the store's listener was scheduled on this loop, which runs it
    # before it resumes the test.
    async def send(event: Event) -> None:
        await asyncio.to_thread(server.send, event)

    try:
        yield source, send
        assert server.calls[0][:3] == ("v1", "Pod", discovery.POD_SELECTOR)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        server.hang_up()


async def answers_never(ip: str) -> pod_probe.Probed:
    return pod_probe.Probed(pod_probe.Answer.NOT_READY)


@pytest.mark.asyncio
async def test_the_source_is_synced_by_the_first_list_and_a_relist_forgets_pods_gone() -> None:
    updates: Updates = []
    other = stats.FunctionKey("team", "other")
    async with watching(updates, probe=answers_never) as (source, send):
        assert not source.synced.is_set()
        await send([pod("a", "10.0.0.5", ready=True)])
        assert source.synced.is_set()
        assert updates == [(FN, {"10.0.0.5:8080"})]
        await send([pod("b", "10.0.0.9", ready=True, function="other")])
        assert sorted(updates[1:]) == [(FN, frozenset()), (other, {"10.0.0.9:8080"})]
        assert source.tracker.pods() == [view(pod("b", "10.0.0.9", ready=True, function="other"))]


@pytest.mark.asyncio
async def test_the_source_probes_a_starting_pod_and_pushes_it_the_moment_it_answers() -> None:
    not_ready, ready = pod_probe.Answer.NOT_READY, pod_probe.Answer.READY
    answers = {"10.0.0.5": [not_ready, not_ready, ready]}
    probed: list[str] = []

    async def probe(ip: str) -> pod_probe.Probed:
        probed.append(ip)
        return pod_probe.Probed(answers[ip].pop(0))

    updates: Updates = []
    async with watching(updates, probe_interval=0.001, probe=probe) as (_, send):
        await send([pod("a", "10.0.0.5", ready=False)])
        assert updates == [(FN, frozenset())]
        await until(lambda: len(updates) > 1)
        assert updates[-1] == (FN, frozenset({"10.0.0.5:8080"}))
        assert probed == ["10.0.0.5"] * 3
        await send(("MODIFIED", pod("a", "10.0.0.5", ready=True, deleting=True)))
        assert updates[-1] == (FN, frozenset())


@pytest.mark.asyncio
async def test_probing_stops_when_the_pod_goes_away() -> None:
    probed: list[str] = []

    async def never(ip: str) -> pod_probe.Probed:
        probed.append(ip)
        return pod_probe.Probed(pod_probe.Answer.NOT_READY)

    async with watching([], probe_interval=0.001, probe=never) as (source, send):
        await send([])
        await send(("ADDED", pod("a", "10.0.0.5")))
        await until(lambda: len(probed) >= 2)
        [probing] = source._probes.values()
        await send(("DELETED", pod("a", "10.0.0.5")))
        assert not source._probes
        await until(probing.done)
        assert probing.cancelled()


@pytest.mark.asyncio
async def test_the_source_pushes_a_pod_that_failed_to_load_until_one_that_loaded_is_there() -> None:
    answers = {"10.0.0.5": pod_probe.Answer.INIT_ERROR, "10.0.0.6": pod_probe.Answer.READY}

    async def probe(ip: str) -> pod_probe.Probed:
        return pod_probe.Probed(answers[ip])

    updates: Updates = []
    async with watching(updates, probe_interval=0.001, probe=probe) as (_, send):
        await send([pod("a", "10.0.0.5", ready=False)])
        await until(lambda: updates[-1] == (FN, {"10.0.0.5:8080"}))
        await send(("ADDED", pod("b", "10.0.0.6", ready=False)))
        await until(lambda: updates[-1] == (FN, {"10.0.0.6:8080"}))


# --- pool pods specialised for a function (kfn.activator.pools) ------------------------------


def pool_pod(uid: str, ip: str, *, state: str, function: str | None = "hello") -> dict[str, Any]:
    labels = {"app.kubernetes.io/component": "function-pool", "kfn.dev/pool-state": state}
    if function is not None:
        labels["kfn.dev/function"] = function
    return {
        "metadata": {"uid": uid, "namespace": "team", "labels": labels},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def test_a_pool_pod_is_a_function_pod_only_once_specialised_for_it() -> None:
    assert discovery.view(pool_pod("p", "10.0.0.8", state="idle", function=None)) is None
    assert discovery.view(pool_pod("p", "10.0.0.8", state="claimed")) is None
    v = view(pool_pod("p", "10.0.0.8", state="specialised"))
    assert (v.function, v.address) == (FN, "10.0.0.8:8080")


@pytest.mark.asyncio
async def test_an_adopted_pool_pod_is_an_endpoint_at_once_and_stays_one_in_the_watch() -> None:
    updates: Updates = []
    async with watching(updates, probe=answers_never) as (source, send):
        await send([])
        source.adopt(pool_pod("p", "10.0.0.8", state="specialised"), FN, 100.0)
        assert updates[-1] == (FN, {"10.0.0.8:8080"})
        assert source.instants.pods["10.0.0.8:8080"].created == 100.0
        await send(("ADDED", pool_pod("p", "10.0.0.8", state="specialised")))
        assert updates[-1] == (FN, {"10.0.0.8:8080"})
        other = stats.FunctionKey("team", "other")
        source.adopt(pool_pod("q", "10.0.0.9", state="specialised"), other, 100.0)
        assert source.tracker.ready(other) == frozenset()  # not the function it was labelled for


@pytest.mark.asyncio
async def test_an_adopted_pod_that_never_reached_the_watch_is_dropped() -> None:
    updates: Updates = []
    async with watching(updates, probe=answers_never) as (source, send):
        await send([])
        source.adopt(pool_pod("p", "10.0.0.8", state="specialised"), FN, 100.0)
        source.drop("p")
        assert updates[-1] == (FN, frozenset())
        assert "10.0.0.8:8080" not in source.instants.pods
