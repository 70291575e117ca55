"""A hostile client against the real activators: what it sends is refused at once with a
clear status, and none of it makes an activator hold more memory than its bounds allow.

The bounds are the chart's defaults (kfn.activator.bounds): an 8 KiB URL (414), a 32 KiB
head (431), 10 s to send a head (408), and per function a queue bound and a queue timeout
past which a caller hears 429. Each case sends many times the bound at once.
"""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest

from kfncluster import fnimage
from tests.cluster import httpload
from tests.cluster.invoking import (
    activator_memory_mib,
    deploy,
    invoke,
    invoke_address,
    invoke_path,
    known_to_every_activator,
)
from tests.cluster.kubeutil import scratch_namespace, wait_at_zero

pytestmark = pytest.mark.cluster

HANDLER = """\
import time


def handler(event, context):
    time.sleep(float((event or {}).get("sleep", 0)))
    return {"ok": True}
"""

KIB = 1024
MIB = 1024 * KIB
#: The activator container's memory limit is 256 MiB; its bounds keep it well below.
HIGH_WATER_MIB = 192


@pytest.fixture(scope="module")
def image(cluster: pathlib.Path) -> str:
    return fnimage.push_python_function("tests/abuse", "v1", {"app.py": HANDLER})


@pytest.fixture(scope="module")
def namespace(kfn: str) -> Iterator[str]:
    with scratch_namespace("abuse") as name:
        yield name


@pytest.fixture(scope="module")
def activator(kfn: str) -> tuple[str, int]:
    return invoke_address(kfn)


@pytest.fixture(scope="module")
def target(activator: tuple[str, int], namespace: str, image: str) -> str:
    """A function at zero with one pod at most, a 1 s timeout and a 5 s queue timeout."""
    deploy(
        namespace,
        "target",
        image,
        timeout="1s",
        queueTimeout="5s",
        concurrency=1,
        scale={"minReplicas": 0, "maxReplicas": 1, "idleTimeout": "10s"},
    )
    known_to_every_activator(activator, namespace, "target")
    return "target"


async def raw(activator: tuple[str, int], head: bytes, *, drip: float = 0.0) -> tuple[int, float]:
    """Sends ``head`` on a new connection (one byte every ``drip`` seconds when set) and
    returns the answer's status (0 for a connection closed without one) and its time."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(*activator)
    try:
        async with asyncio.timeout(30):
            if drip:

                async def send() -> None:
                    for byte in head:
                        writer.write(bytes([byte]))
                        await writer.drain()
                        await asyncio.sleep(drip)

                sender = asyncio.create_task(send())
                status_line = await reader.readline()
                sender.cancel()
            else:
                writer.write(head)
                status_line = await reader.readline()
    except (ConnectionError, TimeoutError):
        status_line = b""
    finally:
        writer.close()
    status = int(status_line.split()[1]) if status_line.startswith(b"HTTP/1.1 ") else 0
    return status, time.monotonic() - started


async def gather_all(
    coroutines: list[Coroutine[Any, Any, tuple[int, float]]],
) -> list[tuple[int, float]]:
    return list(await asyncio.gather(*coroutines))


def test_300_urls_of_256_kib_are_each_refused_with_414_and_hold_no_memory(
    activator: tuple[str, int], namespace: str, target: str
) -> None:
    url = invoke_path(namespace, target) + "?" + "a" * (256 * KIB)
    head = f"POST {url} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
    results = asyncio.run(gather_all([raw(activator, head) for _ in range(300)]))
    statuses = sorted({status for status, _ in results})
    print(f"\n300 x 256 KiB URLs: statuses {statuses}, slowest {max(s for _, s in results):.2f} s")
    assert statuses == [414]
    assert max(activator_memory_mib("VmHWM")) < HIGH_WATER_MIB


def test_20_heads_of_2_mib_are_each_refused_with_431(
    activator: tuple[str, int], namespace: str, target: str
) -> None:
    path = invoke_path(namespace, target)
    headers = "".join(f"X-Filler-{i}: {'b' * 4000}\r\n" for i in range(2 * MIB // 4000))
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: 0\r\n\r\n".encode()
    results = asyncio.run(gather_all([raw(activator, head) for _ in range(20)]))
    statuses = sorted({status for status, _ in results})
    print(f"\n20 x 2 MiB heads: statuses {statuses}, slowest {max(s for _, s in results):.2f} s")
    assert statuses == [431]
    assert max(activator_memory_mib("VmHWM")) < HIGH_WATER_MIB


def test_100_clients_dripping_their_heads_are_answered_408_within_the_head_timeout(
    activator: tuple[str, int], namespace: str, target: str
) -> None:
    # A byte every half second: a 100-byte head would take 50 s, the head timeout is 10 s.
    head = f"POST {invoke_path(namespace, target)} HTTP/1.1\r\nHost: x\r\n".encode()
    head += b"X-Slow: " + b"s" * 60 + b"\r\n\r\n"
    results = asyncio.run(gather_all([raw(activator, head, drip=0.5) for _ in range(100)]))
    statuses = sorted({status for status, _ in results})
    slowest = max(seconds for _, seconds in results)
    print(f"\n100 slow heads: statuses {statuses}, slowest answer after {slowest:.2f} s")
    assert statuses == [408]
    assert slowest < 13.0


def test_2000_requests_at_a_function_at_zero_hear_200_or_429_within_the_queue_timeout(
    activator: tuple[str, int], namespace: str, target: str
) -> None:
    wait_at_zero(namespace, target)

    async def burst() -> list[httpload.Response]:
        return await asyncio.gather(
            *(invoke(activator, namespace, target, {"sleep": 0.05}) for _ in range(2000))
        )

    results = asyncio.run(burst())
    by_status: dict[int, int] = {}
    for response in results:
        by_status[response.status] = by_status.get(response.status, 0) + 1
    slowest = max(r.seconds for r in results)
    print(f"\n2,000 requests at zero: {by_status}, slowest answer after {slowest:.2f} s")
    assert set(by_status) <= {200, 429}, by_status
    assert by_status.get(200, 0) > 0
    for response in results:
        if response.status == 429:
            assert response.json()["errorType"] == "TooManyRequestsException"
            assert response.headers.get("retry-after") == "1"
    # The queue timeout (5 s) starts when the request is accepted; the client's own
    # connection set-up for 2,000 sockets and the last handler run come on top.
    assert slowest < 8.2
    assert max(activator_memory_mib("VmHWM")) < HIGH_WATER_MIB
