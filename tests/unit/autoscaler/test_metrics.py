"""The autoscaler's metrics: each decision per Function, the pods its status says are ready,
the stats messages by outcome, all at /metrics on the --metrics-port; nothing is left of a
Function the autoscaler stopped scaling."""

from __future__ import annotations

import asyncio
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

import prometheus_client
import pytest

from kfn import kube, stats
from kfn.autoscaler import autoscaler, scaler, scaling, server
from tests.unit.autoscaler import watching

from ..activator.http import Client

OPERATOR = pathlib.Path(__file__).resolve().parents[3] / "operator"
SERIES = (
    "kfn_autoscaler_desired_replicas",
    "kfn_autoscaler_actual_replicas",
    "kfn_autoscaler_panic_mode",
)


def sample(name: str, function: stats.FunctionKey) -> float | None:
    labels = {
        "namespace": function.namespace,
        "function": function.name,
        "version": function.version or "$LATEST",
    }
    return prometheus_client.REGISTRY.get_sample_value(name, labels)


def messages(outcome: str) -> float:
    value = prometheus_client.REGISTRY.get_sample_value(
        "kfn_autoscaler_stats_messages_total", {"outcome": outcome}
    )
    assert value is not None, "both outcomes are exported from the start"
    return value


def load(function: stats.FunctionKey, concurrency: float) -> stats.StatMessage:
    stat = stats.FunctionStat(function, concurrency, int(concurrency), 0, 1)
    return stats.StatMessage("act-1", 0.0, (stat,))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- decisions ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_each_decision_exports_the_desired_replicas_and_the_panic_mode() -> None:
    fn = stats.FunctionKey("shop", "checkout")
    scaling_loop = autoscaler.Autoscaler(scaler.InMemoryScaler({fn: 1}))
    scaling_loop.set_spec(fn, scaling.ScaleSpec(target_concurrency=1, min_replicas=1))
    await scaling_loop.receive(load(fn, 1.0), now=100.0)
    await scaling_loop.tick(now=100.0)
    assert (sample(SERIES[0], fn), sample(SERIES[2], fn)) == (1.0, 0.0)
    # A burst: four times what one pod takes, over the panic threshold.
    await scaling_loop.receive(load(fn, 4.0), now=101.0)
    await scaling_loop.tick(now=101.0)
    assert sample(SERIES[2], fn) == 1.0
    assert sample(SERIES[0], fn) == scaling_loop.decisions[fn].desired > 1


@pytest.mark.asyncio
async def test_a_function_no_longer_scaled_leaves_no_series_and_others_keep_theirs() -> None:
    gone, kept = stats.FunctionKey("shop", "gone"), stats.FunctionKey("shop", "kept")
    scaling_loop = autoscaler.Autoscaler(scaler.InMemoryScaler({gone: 2, kept: 2}))
    for fn in (gone, kept):
        scaling_loop.set_spec(fn, scaling.ScaleSpec(min_replicas=2))
        scaling_loop.observe_ready(fn, 2)
    await scaling_loop.tick(now=10.0)
    assert all(sample(name, gone) is not None for name in SERIES)
    scaling_loop.remove(gone)
    assert [sample(name, gone) for name in SERIES] == [None, None, None]
    assert [sample(name, kept) for name in SERIES] == [2.0, 2.0, 0.0]
    scaling_loop.observe_ready(gone, 1)  # a late status of the deleted Function
    assert sample(SERIES[1], gone) is None


class SlowScaler(scaler.InMemoryScaler):
    """Reads a replica count only once ``answer`` is set, as an API server that is slow."""

    def __init__(self, replicas: dict[stats.FunctionKey, int]) -> None:
        super().__init__(replicas)
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()

    async def get_scale(self, function: stats.FunctionKey) -> int:
        self.asked.set()
        await self.answer.wait()
        return await super().get_scale(function)


@pytest.mark.asyncio
async def test_a_function_removed_while_its_scale_is_read_gets_no_series_back() -> None:
    fn = stats.FunctionKey("shop", "racing")
    replicas = SlowScaler({fn: 1})
    scaling_loop = autoscaler.Autoscaler(replicas)
    scaling_loop.set_spec(fn, scaling.ScaleSpec(min_replicas=3))
    ticking = asyncio.create_task(scaling_loop.tick(now=10.0))
    await replicas.asked.wait()
    scaling_loop.remove(fn)
    replicas.answer.set()
    await ticking
    assert [sample(name, fn) for name in SERIES] == [None, None, None]
    assert fn not in scaling_loop.decisions
    assert replicas.history == [], "a deleted function is not scaled"


def function_body(name: str, ready: int | None) -> kube.Object:
    body: dict[str, Any] = {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name, "namespace": "team"},
        "spec": {"source": {"image": "registry.example/fn@sha256:" + "a" * 64}},
    }
    if ready is not None:
        body["status"] = {"replicas": ready + 1, "readyReplicas": ready}
    return body


@pytest.mark.asyncio
async def test_the_actual_replicas_are_the_ready_pods_the_functions_status_reports() -> None:
    fresh, scaled = stats.FunctionKey("team", "fresh"), stats.FunctionKey("team", "scaled")
    async with watching.function_specs() as (server_, _):
        # Each send returns once the listener was scheduled on this loop, which runs it first.
        await asyncio.to_thread(
            server_.send, [function_body("fresh", None), function_body("scaled", 3)]
        )
        assert (sample(SERIES[1], fresh), sample(SERIES[1], scaled)) == (0.0, 3.0)
        await asyncio.to_thread(server_.send, ("MODIFIED", function_body("scaled", 5)))
        assert sample(SERIES[1], scaled) == 5.0
        await asyncio.to_thread(server_.send, ("DELETED", function_body("scaled", 5)))
        assert sample(SERIES[1], scaled) is None


# --- stats messages -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_stats_messages_are_counted_as_accepted_or_rejected() -> None:
    async def receive(message: stats.StatMessage) -> None:
        del message

    port = free_port()
    endpoint = await server.serve(receive, "127.0.0.1", port)
    accepted, rejected = messages("accepted"), messages("rejected")
    client = await Client.connect(port)
    try:
        fn = stats.FunctionKey("shop", "counted")
        answers = [
            await client.request("POST", stats.STATS_PATH, stats.encode(load(fn, 1.0))),
            await client.request("POST", stats.STATS_PATH, b'{"v": 9}'),
            await client.request("POST", "/elsewhere", b"{}"),  # not a stats message at all
        ]
    finally:
        await client.close()
        endpoint.close()
    assert [answer.status for answer in answers] == [204, 400, 404]
    assert (messages("accepted"), messages("rejected")) == (accepted + 1, rejected + 1)


# --- the endpoint ---------------------------------------------------------------------------------


def test_the_autoscaler_serves_its_metrics_on_the_metrics_port_of_its_host() -> None:
    stats_port, metrics_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(OPERATOR)}
    process = subprocess.Popen(
        [sys.executable, "-m", "kfn.autoscaler", "--in-memory", "--host", "127.0.0.1",
         "--port", str(stats_port), "--metrics-port", str(metrics_port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    text = answer.read().decode()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "no /metrics on the metrics port"
                time.sleep(0.05)
        assert 'kfn_autoscaler_stats_messages_total{outcome="accepted"} 0.0' in text
        assert "# TYPE kfn_autoscaler_desired_replicas gauge" in text
    finally:
        process.terminate()
        process.wait(10)
