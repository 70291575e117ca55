"""Functions scale from zero and back through the activator and autoscaler, losing no request.

Load goes from the test process to the activator Service's ClusterIP (reachable from this
machine), bounded in count and time. Each test has its own Function in one namespace of
this module; timings are printed (targets live in bench/cold_start.py, not here).
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kfncluster import fnimage, install
from tests.cluster import httpload
from tests.cluster.invoking import (
    activator_address,
    activator_memory_mib,
    deploy,
    invoke,
    invoke_address,
    invoke_event,
    known_to_every_activator,
)
from tests.cluster.kubeutil import (
    function_pods,
    kubectl,
    kubectl_json,
    scratch_namespace,
    wait_at_zero,
    wait_for,
)

pytestmark = pytest.mark.cluster

HANDLER = """\
import json, socket, time

CALLS = 0


def handler(event, context):
    global CALLS
    CALLS += 1
    if isinstance(event, dict) and "requestContext" in event:
        body = json.dumps({"path": event["rawPath"], "pod": socket.gethostname()})
        return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": body}
    event = event or {}
    time.sleep(float(event.get("sleep", 0)))
    if event.get("fail") or (event.get("fail_first") and CALLS == 1):
        raise RuntimeError("asked to fail")
    return {"pod": socket.gethostname(), "calls": CALLS}
"""


@pytest.fixture(scope="module")
def image(cluster: pathlib.Path) -> str:
    return fnimage.push_python_function("tests/scale", "v1", {"app.py": HANDLER})


@pytest.fixture(scope="module")
def namespace(kfn: str) -> Iterator[str]:
    with scratch_namespace("scale") as name:
        yield name


@pytest.fixture(scope="module")
def activator(kfn: str) -> tuple[str, int]:
    """The invoke door."""
    return invoke_address(kfn)


@pytest.fixture(scope="module")
def public(kfn: str) -> tuple[str, int]:
    """The public door, of HTTP Trigger routes."""
    return activator_address(kfn)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def replicas(namespace: str, name: str) -> int:
    return int(kubectl_json("-n", namespace, "get", "deployment", name)["spec"].get("replicas", 0))


async def load(
    activator: tuple[str, int],
    namespace: str,
    name: str,
    *,
    workers: int,
    seconds: float,
    event: dict[str, Any],
) -> list[httpload.Response]:
    """``workers`` closed-loop clients invoking for ``seconds``."""
    deadline = time.monotonic() + seconds
    results: list[httpload.Response] = []

    async def worker() -> None:
        while time.monotonic() < deadline:
            results.append(await invoke(activator, namespace, name, event))

    await asyncio.gather(*(worker() for _ in range(workers)))
    return results


def failures(results: list[httpload.Response]) -> list[tuple[int, bytes]]:
    return [(r.status, r.body[:200]) for r in results if r.status != 200]


# --- from zero ---------------------------------------------------------------------------------


def test_the_first_request_to_a_function_at_zero_is_answered(
    namespace: str, image: str, activator: tuple[str, int]
) -> None:
    deploy(namespace, "cold", image, scale={"idleTimeout": "2s"})
    known_to_every_activator(activator, namespace, "cold")
    seconds = []
    for _ in range(3):
        wait_at_zero(namespace, "cold")
        response = run(invoke(activator, namespace, "cold"))
        assert response.status == 200, response.body
        assert response.json()["calls"] == 1  # a fresh pod
        seconds.append(response.seconds)
    print(f"cold starts through the activator: {', '.join(f'{s:.2f}s' for s in seconds)}")


def test_a_burst_of_500_requests_at_zero_all_succeed(
    namespace: str, image: str, activator: tuple[str, int]
) -> None:
    deploy(namespace, "burst", image, scale={"idleTimeout": "5s", "maxReplicas": 5})
    known_to_every_activator(activator, namespace, "burst")
    wait_at_zero(namespace, "burst")

    async def burst() -> list[httpload.Response]:
        return await asyncio.gather(
            *(invoke(activator, namespace, "burst", {"sleep": 0.01}) for _ in range(500))
        )

    started = time.monotonic()
    results = run(burst())
    print(f"500 requests from zero answered in {time.monotonic() - started:.1f}s")
    assert failures(results) == []
    assert replicas(namespace, "burst") <= 5


# --- scaling -----------------------------------------------------------------------------------


def test_load_scales_a_function_up_within_max_replicas_and_idle_takes_it_to_zero(
    namespace: str, image: str, activator: tuple[str, int]
) -> None:
    deploy(namespace, "load", image, scale={"idleTimeout": "5s", "maxReplicas": 3})
    known_to_every_activator(activator, namespace, "load")
    seen: list[int] = []

    async def scenario() -> list[httpload.Response]:
        async def sample() -> None:
            while True:
                seen.append(await asyncio.to_thread(replicas, namespace, "load"))
                await asyncio.sleep(0.5)

        sampler = asyncio.create_task(sample())
        try:
            return await load(
                activator, namespace, "load", workers=8, seconds=12, event={"sleep": 0.2}
            )
        finally:
            sampler.cancel()

    results = run(scenario())
    stopped = time.monotonic()
    assert failures(results) == []
    assert max(seen) > 1, seen
    assert max(seen) <= 3, seen
    wait_for("load at zero", lambda: replicas(namespace, "load") == 0, timeout=30, every=0.5)
    print(f"zero {time.monotonic() - stopped:.1f}s after the last request (idleTimeout 5s)")
    assert time.monotonic() - stopped <= 5 + 10


def test_min_replicas_keeps_a_pod_through_idle_periods(
    namespace: str, image: str, activator: tuple[str, int]
) -> None:
    deploy(namespace, "warm", image, scale={"idleTimeout": "1s", "minReplicas": 1})
    known_to_every_activator(activator, namespace, "warm")
    assert run(invoke(activator, namespace, "warm")).status == 200
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        assert replicas(namespace, "warm") >= 1
        time.sleep(0.5)


# --- no lost request ---------------------------------------------------------------------------


def test_no_request_fails_while_pods_are_scaled_down_and_deleted_under_load(
    namespace: str, image: str, activator: tuple[str, int]
) -> None:
    deploy(namespace, "steady", image, scale={"minReplicas": 3, "maxReplicas": 3})
    known_to_every_activator(activator, namespace, "steady")
    wait_for("three steady pods", lambda: len(function_pods(namespace, "steady")) == 3, timeout=60)

    async def scenario() -> list[httpload.Response]:
        traffic = asyncio.create_task(
            load(activator, namespace, "steady", workers=4, seconds=12, event={"sleep": 0.05})
        )
        await asyncio.sleep(3)
        victim = (await asyncio.to_thread(function_pods, namespace, "steady"))[0]["metadata"][
            "name"
        ]
        await asyncio.to_thread(kubectl, "-n", namespace, "delete", "pod", victim, "--wait=false")
        await asyncio.sleep(3)
        # Lower the bounds: the autoscaler takes pods away while the load goes on.
        patch = json.dumps({"spec": {"scale": {"minReplicas": 1, "maxReplicas": 1}}})
        await asyncio.to_thread(
            kubectl, "-n", namespace, "patch", "function", "steady", "--type=merge", "-p", patch
        )
        return await traffic

    results = run(scenario())
    assert len(results) > 100
    assert failures(results) == []
    wait_for("steady at one pod", lambda: len(function_pods(namespace, "steady")) == 1, timeout=60)


def test_killing_one_activator_under_load_loses_no_request(
    namespace: str, image: str, activator: tuple[str, int]
) -> None:
    deploy(namespace, "ha", image, scale={"minReplicas": 2, "maxReplicas": 2})
    known_to_every_activator(activator, namespace, "ha")

    async def scenario() -> list[httpload.Response]:
        traffic = asyncio.create_task(
            load(activator, namespace, "ha", workers=6, seconds=10, event={"sleep": 0.05})
        )
        await asyncio.sleep(3)
        names = await asyncio.to_thread(
            kubectl,
            "-n",
            install.NAMESPACE,
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/component=activator",
            "-o",
            "name",
        )
        name = names.split()[0]
        await asyncio.to_thread(kubectl, "-n", install.NAMESPACE, "delete", name, "--wait=false")
        return await traffic

    results = run(scenario())
    assert len(results) > 100
    assert failures(results) == []
    print(f"{sum(r.retried for r in results)} of {len(results)} requests retried a reset")
    kubectl(
        "-n", install.NAMESPACE, "rollout", "status", "deployment/kfn-activator", "--timeout=120s"
    )


# --- routes, bounds and asynchronous invocation --------------------------------------------------


def test_an_http_trigger_routes_its_path_to_the_function_and_reports_its_url(
    namespace: str, image: str, public: tuple[str, int]
) -> None:
    deploy(namespace, "web", image, scale={"idleTimeout": "5s"})
    prefix = f"/{namespace}/shop"
    trigger = {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": "shop", "namespace": namespace},
        "spec": {"functionRef": {"name": "web"}, "http": {"pathPrefix": prefix}},
    }
    kubectl("apply", "-f", "-", input=json.dumps(trigger))

    def routed() -> httpload.Response | None:
        response = run(httpload.request(*public, "GET", f"{prefix}/cart?x=1"))
        return response if response.status == 200 else None

    response = wait_for("the trigger's route", routed, timeout=60, every=0.5)
    assert response.json()["path"] == f"{prefix}/cart"

    def with_url() -> dict[str, Any] | None:
        body: dict[str, Any] = kubectl_json("-n", namespace, "get", "trigger", "shop")
        return body if body.get("status", {}).get("url") else None

    body = wait_for("the Trigger's status", with_url, timeout=30)
    assert body["status"]["type"] == "Http"
    assert (
        body["status"]["url"]
        == f"http://kfn-activator.{install.NAMESPACE}.svc.cluster.local{prefix}"
    )
    (ready,) = body["status"]["conditions"]
    assert (ready["type"], ready["status"]) == ("Ready", "True")


def test_requests_beyond_the_queue_bound_are_refused_at_once_with_429_and_retry_after(
    namespace: str, image: str, activator: tuple[str, int]
) -> None:
    # One pod taking one request at a time for 4 s: every other request queues. Each of the
    # two activators holds at most 1000 (the chart's default queueLimit); the rest is refused.
    deploy(namespace, "narrow", image, timeout="5s", scale={"maxReplicas": 1, "minReplicas": 1})
    known_to_every_activator(activator, namespace, "narrow")

    async def flood() -> list[httpload.Response]:
        return await asyncio.gather(
            *(invoke(activator, namespace, "narrow", {"sleep": 4}) for _ in range(2300))
        )

    before = activator_memory_mib("VmRSS")
    results = run(flood())
    after = activator_memory_mib("VmRSS")
    # Lambda's answer to a call past the function's concurrency: 429, at once for those past
    # the queue bound, and within the queue timeout for those that waited in it.
    refused = [r for r in results if r.status == 429]
    full = [r for r in refused if b"already waiting" in r.body]
    assert len(full) >= 250, {r.status for r in results}
    for response in refused:
        assert response.headers.get("retry-after") == "1"
        assert response.json()["errorType"] == "TooManyRequestsException"
    assert min(r.seconds for r in full) < 2.0
    assert {r.status for r in results} <= {200, 429}, {r.status for r in results}
    # The queues are bounded, so 2,300 requests held at once cost each activator little
    # memory, and what they cost is given back; nothing was killed for its memory.
    print(f"activator RSS before {before} MiB, after {after} MiB")
    assert all(a - b < 48 for a, b in zip(after, before, strict=True)), (before, after)
    assert max(activator_memory_mib("VmHWM")) < 200


def test_an_asynchronous_invocation_is_accepted_at_once_and_then_executed(
    namespace: str, image: str, activator: tuple[str, int]
) -> None:
    deploy(namespace, "later", image, scale={"idleTimeout": "5s"})
    known_to_every_activator(activator, namespace, "later")
    wait_at_zero(namespace, "later")
    response = run(invoke_event(activator, namespace, "later", {"sleep": 0.5}))
    assert response.status == 202
    assert response.seconds < 1.0  # accepted without waiting for a cold start
    request_id = response.json()["requestId"]

    def logged() -> bool:
        names = [p["metadata"]["name"] for p in function_pods(namespace, "later")]
        logs = "".join(kubectl("-n", namespace, "logs", name, check=False) for name in names)
        return f"END RequestId: {request_id}" in logs

    wait_for("the event's invocation in the function's log", logged, timeout=60, every=0.5)


def test_a_failed_asynchronous_invocation_is_retried(
    namespace: str, image: str, activator: tuple[str, int]
) -> None:
    # The pod's first call fails; the retry (after Lambda's 60 s) reaches the same pod.
    deploy(namespace, "flaky", image, scale={"minReplicas": 1, "maxReplicas": 1})
    known_to_every_activator(activator, namespace, "flaky")
    wait_for("one flaky pod", lambda: len(function_pods(namespace, "flaky")) == 1, timeout=60)
    response = run(invoke_event(activator, namespace, "flaky", {"fail_first": True}))
    assert response.status == 202
    request_id = response.json()["requestId"]
    (name,) = [p["metadata"]["name"] for p in function_pods(namespace, "flaky")]

    def attempts() -> int:
        return kubectl("-n", namespace, "logs", name).count(f"START RequestId: {request_id}")

    wait_for("the first attempt", lambda: attempts() == 1, timeout=30, every=0.5)
    wait_for("the retry", lambda: attempts() == 2, timeout=90, every=1)
