"""A function whose handler failed to load: the activator's probe tells such a pod apart, routes
to it only when nothing better exists, and the caller gets Lambda's init error at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kfn import stats
from kfn.activator import discovery, pod_probe
from tests.unit.runtimes import conftest as runtimes

from .conftest import FN, MakeActivator, until
from .http import Backend, Client
from .test_discovery import pod, view

INVOKE = "/_kfn/functions/default/hello/invoke"
TEAM_FN = stats.FunctionKey("team", "hello")


@pytest.mark.parametrize(
    ("head", "answer"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Type: application/json", pod_probe.Answer.READY),
        (
            b"HTTP/1.1 503 Service Unavailable\r\nkfn-init-error: Runtime.HandlerNotFound",
            pod_probe.Answer.INIT_ERROR,
        ),
        (
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json",
            pod_probe.Answer.NOT_READY,
        ),
        (
            b"HTTP/1.1 500 Oops\r\nKfn-Init-Error: Runtime.HandlerNotFound",
            pod_probe.Answer.NOT_READY,
        ),
        (b"garbage", pod_probe.Answer.NOT_READY),
        (b"", pod_probe.Answer.NOT_READY),
    ],
)
def test_a_probe_answer_is_read_from_its_status_and_the_init_error_header(
    head: bytes, answer: pod_probe.Answer
) -> None:
    assert pod_probe.read(head) is answer


def test_a_pod_that_failed_to_load_is_routed_to_only_while_no_pod_loaded() -> None:
    tracker = discovery.PodTracker()
    tracker.observe(view(pod("broken", "10.0.0.5", ready=False)))
    tracker.probed("broken", init_error=True)
    assert tracker.ready(TEAM_FN) == {"10.0.0.5:8080"}
    tracker.observe(view(pod("good", "10.0.0.6", ready=False)))
    assert tracker.ready(TEAM_FN) == {"10.0.0.5:8080"}
    tracker.probed("good")
    assert tracker.ready(TEAM_FN) == {"10.0.0.6:8080"}
    tracker.observe(view(pod("good", "10.0.0.6", ready=True, deleting=True)))
    assert tracker.ready(TEAM_FN) == {"10.0.0.5:8080"}


def test_the_kubelet_keeping_a_pod_that_failed_to_load_unready_does_not_unroute_it() -> None:
    tracker = discovery.PodTracker()
    tracker.observe(view(pod("broken", "10.0.0.5")))
    tracker.probed("broken", init_error=True)
    tracker.observe(view(pod("broken", "10.0.0.5", ready=False)))
    assert tracker.ready(TEAM_FN) == {"10.0.0.5:8080"}
    assert not tracker.needs_probe("broken")


@pytest.fixture
def failing_runtime(tmp_path: Path) -> Iterator[runtimes.RunningRuntime]:
    """The Python runtime on loopback with a handler whose import fails."""
    root = runtimes.make_task_root("python", tmp_path)
    rt = runtimes.start("python", root, "imports_missing.handler")
    rt.wait_ready()
    yield rt
    rt.stop()


@pytest.mark.asyncio
async def test_the_probe_reads_a_real_runtimes_init_error(
    failing_runtime: runtimes.RunningRuntime, tmp_path: Path
) -> None:
    probed = await pod_probe.probe("127.0.0.1", failing_runtime.port)
    assert probed.answer is pod_probe.Answer.INIT_ERROR
    root = runtimes.make_task_root("python", tmp_path / "good")
    good = runtimes.start("python", root, "app.echo")
    try:
        good.wait_ready()
        assert (await pod_probe.probe("127.0.0.1", good.port)).answer is pod_probe.Answer.READY
    finally:
        good.stop()
    closed = Backend()
    await closed.start()
    port = closed.port
    await closed.stop()
    assert (await pod_probe.probe("127.0.0.1", port)).answer is pod_probe.Answer.NOT_READY


@pytest.mark.asyncio
async def test_a_request_waiting_at_zero_gets_the_init_error_as_soon_as_the_pod_is_probed(
    failing_runtime: runtimes.RunningRuntime, make_activator: MakeActivator
) -> None:
    """The whole path on loopback: a caller waits for a function at zero, the activator's probe
    finds the pod that failed to load, routes to it, and the caller gets Lambda's error long
    before its timeout (30 s here)."""
    activator = await make_activator(timeout_ms=30_000)
    client = await Client.connect(activator.ports[0])
    started = time.perf_counter()
    waiting = asyncio.create_task(client.request("POST", INVOKE, b"{}"))
    await until(lambda: activator.throttlers[FN].queued == 1)
    tracker = discovery.PodTracker()
    tracker.observe(view(pod("broken", "127.0.0.1", ready=False)))
    answer = await pod_probe.probe("127.0.0.1", failing_runtime.port)
    tracker.probed("broken", init_error=answer is pod_probe.Answer.INIT_ERROR)
    assert tracker.ready(TEAM_FN) == {"127.0.0.1:8080"}
    activator.update_endpoints(FN, frozenset({f"127.0.0.1:{failing_runtime.port}"}))
    response = await asyncio.wait_for(waiting, 2.0)
    assert response.status == 502
    assert response.headers["kfn-function-error"] == "Unhandled"
    assert response.json()["errorType"] == "Runtime.ImportModuleError"
    assert time.perf_counter() - started < 2.0
    again = time.perf_counter()
    second = await client.request("POST", INVOKE, b"{}")
    assert second.json()["errorType"] == "Runtime.ImportModuleError"
    assert time.perf_counter() - again < 0.5
