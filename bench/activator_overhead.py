"""How much the activator adds to a request, compared with nginx as a reverse proxy.

Three paths to the same backend (an nginx worker answering a fixed 13-byte body):

* direct                 client -> backend
* nginx                  client -> nginx (proxy_pass, keep-alive upstream) -> backend
* activator              client -> kfn activator (uvloop) -> backend

Each proxy runs pinned to core 0; the client and the backend share core 1.

1. Latency at a fixed 1,000 requests/s: an open-loop asyncio client (uvloop, on core
   1) sends each request at its scheduled time on one of 32 keep-alive connections
   and measures from the scheduled time, so a stalled proxy cannot hide its queueing
   (no coordinated omission). wrk cannot hold a fixed rate and Debian has no wrk2;
   h2load reports no percentiles. Added latency = proxied percentile - direct
   percentile, all measured in this run.
2. Maximum throughput: wrk (1 thread, 64 connections) for a few seconds per path.

Run: ``.venv/bin/python bench/activator_overhead.py`` (needs ``nginx`` and ``wrk``:
``apt-get install -y nginx-light wrk``). Loopback only; every process it starts is
stopped by PID. Takes about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import typing
from collections.abc import Iterator

import httptools
import uvloop

ROOT = pathlib.Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
HOST = "127.0.0.1"
BODY = "hello, world\n"

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx-{name}.pid;
error_log {tmp}/nginx-{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body-{name};
    proxy_temp_path {tmp}/proxy-{name};
    fastcgi_temp_path {tmp}/fastcgi-{name};
    uwsgi_temp_path {tmp}/uwsgi-{name};
    scgi_temp_path {tmp}/scgi-{name};
    keepalive_requests 1000000;
    {body}
}}
"""

BACKEND = """
    server {{
        listen {host}:{port} backlog=4096;
        location / {{ default_type text/plain; return 200 "{text}"; }}
    }}
"""

PROXY = """
    upstream backend {{ server {host}:{backend}; keepalive 128; }}
    server {{
        listen {host}:{port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffering off;
        }}
    }}
"""


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
def process(args: list[str], name: str, log: pathlib.Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start a process and stop it (by its PID) however the benchmark ends."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
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


def nginx(tmp: pathlib.Path, name: str, body: str, core: int) -> list[str]:
    conf = tmp / f"nginx-{name}.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, name=name, body=body))
    return ["taskset", "-c", str(core), "nginx", "-p", str(tmp), "-c", str(conf)]


# --- fixed-rate latency client ----------------------------------------------------------


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport.
        self.transport = typing.cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("closed"))


async def fixed_rate(port: int, rate: int, seconds: float, connections: int = 32) -> list[float]:
    """Latencies (seconds) of requests sent at a fixed rate, from their scheduled time."""
    loop = asyncio.get_running_loop()
    idle: collections.deque[_Conn] = collections.deque()
    for _ in range(connections):
        _, conn = await loop.create_connection(_Conn, HOST, port)
        idle.append(conn)
    available = asyncio.Condition()
    request = f"GET /hello HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    latencies: list[float] = []
    errors = 0

    async def one(scheduled: float) -> None:
        nonlocal errors
        async with available:
            await available.wait_for(lambda: bool(idle))
            conn = idle.popleft()
        conn.done = loop.create_future()
        assert conn.transport is not None
        conn.transport.write(request)
        try:
            status = await conn.done
            if status != 200:
                errors += 1
        except ConnectionError:
            errors += 1
            return
        latencies.append(time.perf_counter() - scheduled)
        async with available:
            idle.append(conn)
            available.notify()

    tasks = []
    start = time.perf_counter() + 0.05
    total = int(rate * seconds)
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    for conn in idle:
        assert conn.transport is not None
        conn.transport.close()
    if errors:
        raise RuntimeError(f"{errors} requests failed")
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def latency_run(port: int, rate: int, seconds: float) -> dict[str, float]:
    os.sched_setaffinity(0, {1})
    latencies = uvloop.run(fixed_rate(port, rate, seconds))
    return {
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
        "count": len(latencies),
    }


def wrk(port: int, seconds: int, connections: int) -> float:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            f"http://{HOST}:{port}/hello",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match or "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk failed:\n{out}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--throughput-seconds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    for tool in ("nginx", "wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"needs {tool}: apt-get install -y nginx-light wrk util-linux")

    with tempfile.TemporaryDirectory(prefix="kfn-bench-") as tmpdir:
        tmp = pathlib.Path(tmpdir)
        backend, via_nginx, via_activator, metrics = (free_port() for _ in range(4))
        config = {
            "functions": [
                {
                    "namespace": "bench",
                    "name": "hello",
                    "concurrency": 10_000,
                    "timeout_ms": 30_000,
                    "queue_limit": 10_000,
                    "endpoints": [f"{HOST}:{backend}"],
                }
            ],
            "routes": [{"host": "*", "path_prefix": "/", "function": "bench/hello"}],
        }
        (tmp / "activator.json").write_text(json.dumps(config))
        print("starting backend, nginx proxy and activator", flush=True)
        text = BODY.replace("\n", "\\n")
        backend_body = BACKEND.format(host=HOST, port=backend, text=text)
        proxy_body = PROXY.format(host=HOST, port=via_nginx, backend=backend)
        activator_cmd = [
            "taskset",
            "-c",
            "0",
            str(PYTHON),
            "-m",
            "kfn.activator",
            "--config",
            str(tmp / "activator.json"),
            "--port",
            str(via_activator),
            "--metrics-port",
            str(metrics),
            "--id",
            "bench",
        ]
        env_path = str(ROOT / "operator")
        os.environ["PYTHONPATH"] = env_path + os.pathsep + os.environ.get("PYTHONPATH", "")
        with (
            process(nginx(tmp, "backend", backend_body, 1), "backend nginx", tmp / "b.log"),
            process(nginx(tmp, "proxy", proxy_body, 0), "nginx proxy", tmp / "p.log"),
            process(activator_cmd, "activator", tmp / "a.log"),
        ):
            for port in (backend, via_nginx, via_activator):
                wait_for_port(port)
            paths = {"direct": backend, "nginx": via_nginx, "activator": via_activator}
            latency: dict[str, dict[str, float]] = {}
            for name, port in paths.items():
                print(f"latency at {args.rate} rps via {name} ...", flush=True)
                latency_run(port, args.rate, 1.0)  # warm up connections and caches
                latency[name] = latency_run(port, args.rate, args.latency_seconds)
                print(
                    "  p50 {p50_ms:.3f} ms  p99 {p99_ms:.3f} ms  ({count:.0f} requests)".format(
                        **latency[name]
                    ),
                    flush=True,
                )
            throughput: dict[str, float] = {}
            for name, port in paths.items():
                print(f"max throughput via {name} ...", flush=True)
                wrk(port, 1, args.connections)
                throughput[name] = wrk(port, args.throughput_seconds, args.connections)
                print(f"  {throughput[name]:.0f} requests/s", flush=True)

    direct = latency["direct"]
    print("\nresults (same run, same machine)")
    header = ("path", "p50 ms", "p99 ms", "added p50", "added p99", "max rps")
    print("{:<10} {:>8} {:>8} {:>10} {:>10} {:>9}".format(*header))
    for name in paths:
        row = latency[name]
        print(
            f"{name:<10} {row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f} "
            f"{row['p50_ms'] - direct['p50_ms']:>10.3f} {row['p99_ms'] - direct['p99_ms']:>10.3f} "
            f"{throughput[name]:>9.0f}"
        )
    ratio = throughput["activator"] / throughput["nginx"]
    added_p50 = latency["activator"]["p50_ms"] - direct["p50_ms"]
    added_p99 = latency["activator"]["p99_ms"] - direct["p99_ms"]
    print(
        f"\nactivator: added p50 {added_p50:.3f} ms (target <= 0.3), "
        f"added p99 {added_p99:.3f} ms (target <= 1.0), "
        f"max throughput {ratio:.0%} of nginx (target >= 50%)"
    )


if __name__ == "__main__":
    main()
