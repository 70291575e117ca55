"""The real activator as its own process on loopback, in front of a real upstream.

Each test starts ``python -m kfn.activator --config`` (uvloop, as deployed) with its
limits set through the environment, so that the memory measured
(:meth:`RunningActivator.rss_mib`, the process's resident set) is the activator's
alone. ``KFN_ACTIVATOR_SRC`` runs another source tree instead (e.g. an older
``operator/``), to show the same abuse against code without the bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import pathlib
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest_asyncio

from tests.unit.activator.http import Backend


async def wait_listening(proc: asyncio.subprocess.Process, port: int) -> None:
    """Until the activator process takes connections on ``port`` (15 s at most); fails at
    once if it exits first."""
    async with asyncio.timeout(15):
        while True:
            assert proc.returncode is None, "the activator exited"
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                await writer.wait_closed()
                return
            await asyncio.sleep(0.05)


REPO = pathlib.Path(__file__).resolve().parents[3]
SOURCE = pathlib.Path(os.environ.get("KFN_ACTIVATOR_SRC", REPO / "operator"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclasses.dataclass
class RunningActivator:
    proc: asyncio.subprocess.Process
    port: int

    def rss_mib(self) -> float:
        """The process's resident set now, in MiB."""
        for line in pathlib.Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    @contextlib.asynccontextmanager
    async def peak_rss(self) -> AsyncIterator[list[float]]:
        """Sample the resident set every 10 ms while the block runs; ``[peak]`` in MiB."""
        peak = [self.rss_mib()]

        async def sample() -> None:
            while True:
                peak[0] = max(peak[0], self.rss_mib())
                await asyncio.sleep(0.01)

        sampler = asyncio.ensure_future(sample())
        try:
            yield peak
        finally:
            sampler.cancel()
            peak[0] = max(peak[0], self.rss_mib())

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(5):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


StartActivator = Callable[..., Awaitable[RunningActivator]]


@pytest_asyncio.fixture
async def backend() -> AsyncIterator[Backend]:
    started = await Backend("pod").start()
    yield started
    await started.stop()


@pytest_asyncio.fixture
async def start_activator(tmp_path: pathlib.Path) -> AsyncIterator[StartActivator]:
    """``await start_activator(functions, routes, **env)``: a running activator process.

    ``functions`` are the static config's entries, ``routes`` its routes; ``env`` sets
    limits (``KFN_MAX_CONNECTIONS=...``).
    """
    started: list[RunningActivator] = []

    async def start(
        functions: list[dict[str, object]], routes: list[dict[str, object]], **env: str
    ) -> RunningActivator:
        config = tmp_path / f"activator-{len(started)}.json"
        config.write_text(json.dumps({"functions": functions, "routes": routes}))
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kfn.activator",
            f"--config={config}",
            f"--port={port}",
            f"--metrics-port={free_port()}",
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(SOURCE), **env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        running = RunningActivator(proc, port)
        started.append(running)
        await wait_listening(proc, port)
        return running

    yield start
    for running in started:
        await running.stop()


def one_function(
    backend: Backend | None, name: str = "hello", **limits: object
) -> dict[str, object]:
    return {
        "namespace": "default",
        "name": name,
        "concurrency": 10,
        "timeout_ms": 10_000,
        "endpoints": [backend.address] if backend is not None else [],
        **limits,
    }


def route(prefix: str = "/", name: str = "hello") -> dict[str, object]:
    return {"host": "*", "path_prefix": prefix, "function": f"default/{name}"}
