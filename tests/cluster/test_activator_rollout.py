"""A rolling restart of the activator loses no request, not even one of 20 s in flight.

Knative's TestDestroyPodInflight on kfn's activator: load runs through the activator
Service's ClusterIP (about 50 requests a second of short invocations, plus an invocation of
20 s started every second, so about twenty are in flight at any moment) while
``kubectl rollout restart`` replaces every activator. Each old activator keeps serving
through its preStop pause, then serves what it accepted to its end (its drain and grace
period derive from ``functions.maxTimeoutSeconds``; docs/architecture.md, "Rolling the
activator"). Every request must answer 200, and the rollout must end in bounded time.

The load's client opens one connection per request and sends it again once if the
connection is refused or reset before any response byte (:mod:`tests.cluster.httpload`),
as a client does when a proxy goes away; those resends are counted and printed.
"""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kfncluster import fnimage
from tests.cluster import httpload
from tests.cluster.invoking import deploy, invoke, invoke_address, known_to_every_activator
from tests.cluster.kubeutil import kubectl, kubectl_json, scratch_namespace
from tests.cluster.test_scale_from_zero import HANDLER, failures

pytestmark = pytest.mark.cluster

#: Short invocations a second, and how long each long one sleeps.
RATE = 50
LONG_SECONDS = 20.0
#: Load before the restart starts, and after the rollout ended.
BEFORE = 25.0
AFTER = 5.0
#: The rollout replaces two activators, each draining at most LONG_SECONDS after its preStop
#: pause, plus each new pod's start: generous, yet far below the grace period (923 s).
ROLLOUT_BOUND = 180.0


@pytest.fixture(scope="module")
def image(cluster: pathlib.Path) -> str:
    return fnimage.push_python_function("tests/rollout", "v1", {"app.py": HANDLER})


@pytest.fixture(scope="module")
def namespace(kfn: str) -> Iterator[str]:
    with scratch_namespace("rollout") as name:
        yield name


def _activators(kfn: str) -> set[str]:
    pods = kubectl_json("-n", kfn, "get", "pods", "-l", "app.kubernetes.io/component=activator")
    return {
        p["metadata"]["name"] for p in pods["items"] if not p["metadata"].get("deletionTimestamp")
    }


def test_a_rolling_restart_of_the_activator_under_load_fails_no_request(
    kfn: str, namespace: str, image: str
) -> None:
    activator = invoke_address(kfn)
    # Enough warm slots for ~20 long and ~3 short invocations at once: no cold start or
    # scaling decision takes part in what this test measures.
    deploy(
        namespace,
        "steady",
        image,
        timeout="60s",
        concurrency=50,
        scale={"minReplicas": 2, "maxReplicas": 2},
    )
    known_to_every_activator(activator, namespace, "steady")
    grace = kubectl_json("-n", kfn, "get", "deployment", "kfn-activator")["spec"]["template"][
        "spec"
    ]["terminationGracePeriodSeconds"]
    assert grace > LONG_SECONDS + 10
    before = _activators(kfn)

    async def scenario() -> tuple[list[httpload.Response], list[httpload.Response], float, float]:
        short: list[asyncio.Task[httpload.Response]] = []
        long: list[asyncio.Task[httpload.Response]] = []
        stop = asyncio.Event()

        async def open_loop() -> None:
            """RATE short invocations a second and one long one a second, until stopped."""
            tick = 0
            started = time.monotonic()
            while not stop.is_set():
                short.append(asyncio.ensure_future(invoke(activator, namespace, "steady")))
                if tick % RATE == 0:
                    event: dict[str, Any] = {"sleep": LONG_SECONDS}
                    long.append(
                        asyncio.ensure_future(invoke(activator, namespace, "steady", event))
                    )
                tick += 1
                await asyncio.sleep(max(0.0, started + tick / RATE - time.monotonic()))

        sender = asyncio.ensure_future(open_loop())
        await asyncio.sleep(BEFORE)  # about twenty long invocations are in flight now
        restarted = time.monotonic()
        await asyncio.to_thread(
            kubectl, "-n", kfn, "rollout", "restart", "deployment/kfn-activator"
        )
        await asyncio.to_thread(
            kubectl,
            "-n",
            kfn,
            "rollout",
            "status",
            "deployment/kfn-activator",
            f"--timeout={ROLLOUT_BOUND:.0f}s",
            timeout=ROLLOUT_BOUND + 30,
        )
        rolled = time.monotonic() - restarted
        await asyncio.sleep(AFTER)
        stop.set()
        await sender
        return (
            list(await asyncio.gather(*short)),
            list(await asyncio.gather(*long)),
            rolled,
            time.monotonic() - restarted,
        )

    short, long, rolled, total = asyncio.run(scenario())
    resent = sum(r.retried for r in short + long)
    print(
        f"rollout of the activator took {rolled:.1f}s under load; {len(short)} short and "
        f"{len(long)} long ({LONG_SECONDS:.0f}s) invocations, {resent} sent again after a "
        f"refused connection; slowest long: {max(r.seconds for r in long):.1f}s"
    )
    assert failures(short) == []
    assert failures(long) == []
    # The long ones ran to their end rather than being answered early.
    assert all(r.json()["pod"] for r in long)
    assert min(r.seconds for r in long) >= LONG_SECONDS
    # Every activator was replaced while long invocations went through it.
    assert not before & _activators(kfn)
    assert len(long) >= (BEFORE + rolled) - 1
    assert rolled < ROLLOUT_BOUND
    assert total < ROLLOUT_BOUND + AFTER + LONG_SECONDS + httpload.TIMEOUT
