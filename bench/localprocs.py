"""Processes the local benchmarks start on 127.0.0.1: a free port, waiting for a listener, and
a process stopped by its PID however the benchmark ends. Imported by the benchmark scripts
beside it (``python bench/<name>.py`` puts this folder on the import path)."""

from __future__ import annotations

import contextlib
import pathlib
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {HOST}:{port}")


@contextlib.contextmanager
def process(
    args: list[str], name: str, log: pathlib.Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a process and stop it (by its PID) however the benchmark ends."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    print(f"  started {name} (pid {proc.pid})", flush=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
