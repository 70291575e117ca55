"""A real cold start in-process: the pod watch (a stand-in API server), the activator's own
probe and a real runtime process, and the ``Server-Timing`` of the answer that paid for it."""

from __future__ import annotations

import asyncio
import os
import pathlib
import re
from typing import Any

import pytest

from kfn.activator import discovery
from tests.unit.apiserver import ApiServer
from tests.unit.runtimes import conftest as runtimes

from .conftest import FN, MakeActivator, until
from .http import Client

INVOKE = "/_kfn/functions/default/hello/invoke"


def _pod(ip: str = "", node: str = "") -> dict[str, Any]:
    """The function's pod as the API server shows it while it is created, bound and started."""
    labels = {discovery.LABEL_FUNCTION: FN.name, discovery.LABEL_COMPONENT: "function"}
    return {
        "metadata": {"uid": "cold-1", "namespace": FN.namespace, "labels": labels},
        "spec": {"nodeName": node} if node else {},
        "status": {"phase": "Pending" if not ip else "Running", "podIP": ip},
    }


def _timing(header: str) -> dict[str, float]:
    return {
        name: float(duration)
        for name, duration in (part.split(";dur=") for part in header.split(", "))
    }


@pytest.mark.asyncio
@pytest.mark.parametrize("language", runtimes.LANGUAGES)
async def test_a_cold_start_answers_its_phases_summing_to_the_total_with_little_left_over(
    make_activator: MakeActivator,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    language: str,
) -> None:
    # The pod's address is <its IP>:8080, as in a cluster: the runtime listens there, on a
    # loopback address of its own.
    ip = f"127.77.{os.getpid() % 250}.{3 + runtimes.LANGUAGES.index(language)}"
    monkeypatch.setattr(runtimes, "_LISTENING", re.compile(r"listening on [\d.]+:(\d+)"))
    activator = await make_activator()
    api = ApiServer()
    source = discovery.KubeEndpointSource(
        reflect=api.reflect, pods=activator.pods, probe_interval=0.005
    )
    watching = asyncio.create_task(source.run(activator.update_endpoints))
    started: list[runtimes.RunningRuntime] = []
    try:
        await asyncio.to_thread(api.send, [])
        client = await Client.connect(activator.ports[0])
        others = [await Client.connect(activator.ports[0]) for _ in range(2)]
        first = asyncio.ensure_future(client.request("POST", INVOKE, b'{"n": 0}'))
        await until(lambda: activator.throttlers[FN].queued == 1)
        waiting = [asyncio.ensure_future(c.request("POST", INVOKE, b"{}")) for c in others]
        await until(lambda: activator.throttlers[FN].queued == 3)
        # What the scheduler and the kubelet do: the pod is created, bound, given its IP,
        # and then its container starts the runtime.
        await asyncio.to_thread(api.send, ("ADDED", _pod()))
        await asyncio.to_thread(api.send, ("MODIFIED", _pod(node="node-1")))
        await asyncio.to_thread(api.send, ("MODIFIED", _pod(ip, node="node-1")))
        # The process's start is read in 10 ms ticks: it starts clearly after the binding.
        await asyncio.sleep(0.02)
        root = runtimes.make_task_root(language, tmp_path)
        started.append(
            await asyncio.to_thread(
                runtimes.start, language, root, "app.echo", KFN_HOST=ip, KFN_PORT="8080"
            )
        )
        response = await asyncio.wait_for(first, 15)
        assert response.status == 200
        timing = _timing(response.headers["server-timing"])
        assert list(timing) == [
            "scale",
            "schedule",
            "container_start",
            "runtime_init",
            "handler_import",
            "ready",
            "first_byte",
            "other",
            "cold-start",
        ]
        total = timing.pop("cold-start")
        # Each printed to 0.01 ms.
        assert sum(timing.values()) == pytest.approx(total, abs=0.01 * len(timing))
        # Every source reported its instants: nothing is left for other.
        assert timing["other"] <= 0.1 * total
        for phase in ("scale", "container_start", "runtime_init", "handler_import", "ready"):
            assert timing[phase] > 0, phase
        # The others that waited hear their own wait only: queued later, answered a little
        # after the first.
        for answer in await asyncio.gather(*waiting):
            assert answer.status == 200
            [(name, waited)] = _timing(answer.headers["server-timing"]).items()
            assert name == "cold-start"
            assert 0.5 * total < waited < total + 1000
        fm = activator.metrics.of(FN)
        assert fm.cold_starts == 1
        assert sum(fm.cold_start_phases["runtime_init"].counts) == 1
        assert fm.cold_start_durations.total == pytest.approx(total / 1000, abs=1e-4)
        # The next request finds the pod ready: no cold start, no Server-Timing.
        warm = await client.request("POST", INVOKE, b"{}")
        assert "server-timing" not in warm.headers
        for c in (client, *others):
            await c.close()
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        api.hang_up()
        for runtime in started:
            runtime.stop()
