"""How much the activator adds to a request, compared with nginx as a reverse proxy.

Three paths to the same backend (an nginx worker answering a fixed 13-byte body):

* direct                 client -> backend
* nginx                  client -> nginx (proxy_pass, keep-alive upstream) -> backend
* activator              client -> kfn activator (uvloop) -> backend

``--compare-src NAME=DIR`` (repeatable) adds a path through an activator run from
another source tree (``DIR`` holds the ``kfn`` package, e.g. an older checkout's
``operator/``), so one run measures two versions side by side under the same load
(with ``--auth``, its invoke paths too).

Each proxy runs pinned to core 0; the client and the backend share core 1.

1. Latency at a fixed 1,000 requests/s: an open-loop asyncio client (uvloop, on core
   1) sends each request at its scheduled time on one of 32 keep-alive connections
   and measures from the scheduled time, so a stalled proxy cannot hide its queueing
   (no coordinated omission). wrk cannot hold a fixed rate and Debian has no wrk2;
   h2load reports no percentiles. Added latency = proxied percentile - direct
   percentile, all measured in this run.
2. Maximum throughput: wrk (1 thread, 64 connections) for a few seconds per path;
   with ``--rounds N`` every path is measured N times, in a rotated order each round,
   and the median is reported (the machine's drift then falls on every path alike).

``--auth`` adds two paths through the invoke API, ``POST /_kfn/functions/bench/hello/invoke``:
``activator invoke`` (an activator whose one door serves it without auth) and ``activator
invoke+rbac`` (an activator's invoke door checking each request's bearer token with the
cluster's API server, ``KUBECONFIG``: a ServiceAccount token bound to kfn-invoker, as the
cluster tests make it). The warm path is measured: the decision is cached after the first
request, so the API server is asked once per cache lifetime (10 s), which the measurement
includes. Needs the local cluster up (``make up``).

``--scrape-interval S`` scrapes the measured activator's ``/metrics`` every S
seconds during its measurements (from core 1), to show what scraping costs; it
also measures each activator's CPU time per scrape while it serves nothing else.

Run: ``.venv/bin/python bench/activator_overhead.py``; it installs ``nginx`` and ``wrk`` from
Debian's packages (``nginx-light``, ``wrk``) when they are missing. Loopback only; every
process it starts is stopped by PID. Takes about a minute, plus half a minute per compared
tree and round.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
import typing
import urllib.request
from collections.abc import Iterator

import httptools
import uvloop

from localprocs import free_port, process, wait_for_port

ROOT = pathlib.Path(__file__).resolve().parent.parent
#: The checkout's own virtualenv, else the interpreter running the benchmark.
PYTHON = ROOT / ".venv" / "bin" / "python"
if not PYTHON.exists():
    PYTHON = pathlib.Path(sys.executable)
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


@dataclasses.dataclass(frozen=True)
class Request:
    """What a path is asked: a GET of a route, or an invoke with its headers."""

    method: str = "GET"
    target: str = "/hello"
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""

    def encode(self, host: str) -> bytes:
        lines = [f"{self.method} {self.target} HTTP/1.1", f"Host: {host}"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        if self.method == "POST":
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n" + self.body).encode()

    def wrk_script(self, tmp: pathlib.Path) -> list[str]:
        """wrk's arguments for this request (a Lua script for a POST)."""
        args = [a for name, value in self.headers for a in ("-H", f"{name}: {value}")]
        if self.method == "GET":
            return args
        script = tmp / f"wrk-{abs(hash(self))}.lua"
        script.write_text(
            f"wrk.method = {json.dumps(self.method)}\n"
            f"wrk.body = {json.dumps(self.body)}\n"
            f'wrk.headers["Content-Type"] = "application/json"\n'
        )
        return [*args, "-s", str(script)]


ROUTE = Request()


async def fixed_rate(
    port: int, rate: int, seconds: float, connections: int = 32, asked: Request = ROUTE
) -> list[float]:
    """Latencies (seconds) of requests sent at a fixed rate, from their scheduled time."""
    loop = asyncio.get_running_loop()
    idle: collections.deque[_Conn] = collections.deque()
    for _ in range(connections):
        _, conn = await loop.create_connection(_Conn, HOST, port)
        idle.append(conn)
    available = asyncio.Condition()
    request = asked.encode(f"{HOST}:{port}")
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


def latency_run(port: int, rate: int, seconds: float, asked: Request = ROUTE) -> dict[str, float]:
    os.sched_setaffinity(0, {1})
    latencies = uvloop.run(fixed_rate(port, rate, seconds, asked=asked))
    return {
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
        "count": len(latencies),
    }


@dataclasses.dataclass(frozen=True)
class Throughput:
    """One wrk run: requests per second, and the proxy's CPU time per request."""

    rps: float
    cpu_us: float | None


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(
    port: int,
    seconds: int,
    connections: int,
    pid: int | None = None,
    *,
    asked: Request = ROUTE,
    tmp: pathlib.Path | None = None,
) -> Throughput:
    """Requests/s through ``port``; with the proxy's ``pid``, also its CPU per request.

    CPU time per request is what the proxy itself spends, so it stays comparable
    when other jobs share the machine and requests/s swings with their load.
    """
    before = cpu_seconds(pid) if pid is not None else 0.0
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            *asked.wrk_script(tmp or pathlib.Path(tempfile.gettempdir())),
            f"http://{HOST}:{port}{asked.target}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    spent = cpu_seconds(pid) - before if pid is not None else None
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    if not match or not count or "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk failed:\n{out}")
    cpu_us = spent / int(count.group(1)) * 1e6 if spent is not None else None
    return Throughput(float(match.group(1)), cpu_us)


def scraper(port: int, interval: float) -> list[str]:
    """A process that GETs ``/metrics`` every ``interval`` seconds until stopped."""
    code = (
        "import sys, time, urllib.request\n"
        "url, interval = sys.argv[1], float(sys.argv[2])\n"
        "while True:\n"
        "    urllib.request.urlopen(url, timeout=5).read()\n"
        "    time.sleep(interval)\n"
    )
    url = f"http://{HOST}:{port}/metrics"
    return ["taskset", "-c", "1", sys.executable, "-c", code, url, str(interval)]


def scrape_cost(metrics_port: int, pid: int, scrapes: int = 1000) -> float:
    """Milliseconds of the activator's CPU per ``/metrics`` scrape, with no other load."""
    url = f"http://{HOST}:{metrics_port}/metrics"
    for _ in range(50):
        urllib.request.urlopen(url, timeout=5).read()
    before = cpu_seconds(pid)
    for _ in range(scrapes):
        urllib.request.urlopen(url, timeout=5).read()
    return (cpu_seconds(pid) - before) / scrapes * 1000


@contextlib.contextmanager
def scraping(metrics_port: int | None, interval: float, tmp: pathlib.Path) -> Iterator[None]:
    """Scrape an activator's metrics while the block runs (nothing for other paths)."""
    if metrics_port is None or interval <= 0:
        yield
        return
    with process(scraper(metrics_port, interval), "scraper", tmp / "scraper.log"):
        yield


def activator_cmd(
    src: pathlib.Path,
    config: pathlib.Path,
    port: int,
    metrics: int,
    invoke_port: int | None = None,
) -> list[str]:
    """``python -m kfn.activator`` from the source tree ``src``, pinned to core 0; with
    ``invoke_port``, an invoke door there checking tokens with the cluster's API server."""
    doors = (
        [] if invoke_port is None else ["--invoke-port", str(invoke_port), "--invoke-auth", "rbac"]
    )
    return [
        "env",
        f"PYTHONPATH={src}",
        "taskset",
        "-c",
        "0",
        str(PYTHON),
        "-m",
        "kfn.activator",
        "--config",
        str(config),
        "--port",
        str(port),
        "--metrics-port",
        str(metrics),
        "--id",
        "bench",
        *doors,
    ]


def compared(values: list[str]) -> dict[str, pathlib.Path]:
    """``NAME=DIR`` (or ``DIR``, named after its parent) -> path name -> source tree."""
    trees: dict[str, pathlib.Path] = {}
    for value in values:
        name, sep, directory = value.partition("=")
        if not sep:
            directory = value
            name = pathlib.Path(value).resolve().parent.name
        tree = pathlib.Path(directory).resolve()
        if not (tree / "kfn" / "activator" / "__main__.py").exists():
            sys.exit(f"--compare-src {value}: no kfn/activator in {tree}")
        trees[f"activator@{name}"] = tree
    return trees


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--throughput-seconds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--compare-src",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="also run an activator from this source tree (the dir holding kfn/); repeatable",
    )
    parser.add_argument("--rounds", type=int, default=1, help="measurements of every path")
    parser.add_argument(
        "--auth",
        action="store_true",
        help="also measure the invoke API without auth and behind RBAC (needs the cluster)",
    )
    parser.add_argument(
        "--scrape-interval",
        type=float,
        default=0.0,
        help="scrape the measured activator's /metrics this often (seconds; 0: never)",
    )
    return parser.parse_args()


@dataclasses.dataclass
class Path:
    """One way to the backend: its port, the proxy's pid, its metrics port if it has one."""

    port: int
    pid: int | None = None
    metrics_port: int | None = None
    asked: Request = ROUTE


def start(
    stack: contextlib.ExitStack,
    tmp: pathlib.Path,
    trees: dict[str, pathlib.Path],
    token: str | None = None,
) -> dict[str, Path]:
    """Start the backend, the nginx proxy and one activator per source tree."""
    backend, via_nginx = free_port(), free_port()
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
    config_file = tmp / "activator.json"
    config_file.write_text(json.dumps(config))
    print("starting backend, nginx proxy and activators", flush=True)
    text = BODY.replace("\n", "\\n")
    backend_body = BACKEND.format(host=HOST, port=backend, text=text)
    proxy_body = PROXY.format(host=HOST, port=via_nginx, backend=backend)
    stack.enter_context(
        process(nginx(tmp, "backend", backend_body, 1), "backend nginx", tmp / "b.log")
    )
    proxy = stack.enter_context(
        process(nginx(tmp, "proxy", proxy_body, 0), "nginx proxy", tmp / "p.log")
    )
    paths = {"direct": Path(backend), "nginx": Path(via_nginx, proxy.pid)}
    for i, (name, src) in enumerate(trees.items()):
        port, metrics_port = free_port(), free_port()
        command = activator_cmd(src, config_file, port, metrics_port)
        started = stack.enter_context(process(command, f"{name} from {src}", tmp / f"a{i}.log"))
        paths[name] = Path(port, started.pid, metrics_port)
    if token is not None:
        invoke = Request("POST", "/_kfn/functions/bench/hello/invoke", body="{}")
        bearer = (("Authorization", f"Bearer {token}"),)
        checked = dataclasses.replace(invoke, headers=bearer)
        for i, (name, src) in enumerate(trees.items()):
            port, metrics_port = free_port(), free_port()
            command = activator_cmd(src, config_file, port, metrics_port)
            started = stack.enter_context(
                process(command, f"{name} invoke from {src}", tmp / f"ai{i}.log")
            )
            paths[f"{name} invoke"] = Path(port, started.pid, metrics_port, invoke)
            public, door, metrics_port = free_port(), free_port(), free_port()
            command = activator_cmd(src, config_file, public, metrics_port, door)
            started = stack.enter_context(
                process(command, f"{name} invoke+rbac from {src}", tmp / f"ar{i}.log")
            )
            paths[f"{name} invoke+rbac"] = Path(door, started.pid, metrics_port, checked)
    for path in paths.values():
        wait_for_port(path.port)
    return paths


@dataclasses.dataclass
class Runs:
    """Every measurement of one path, a list entry per round."""

    latency: list[dict[str, float]] = dataclasses.field(default_factory=list)
    throughput: list[Throughput] = dataclasses.field(default_factory=list)
    #: Milliseconds of CPU per metrics scrape, measured while idle (with --scrape-interval).
    scrape_ms: float | None = None

    def median(self, key: str) -> float:
        return statistics.median(row[key] for row in self.latency)

    @property
    def rps(self) -> float:
        return statistics.median(run.rps for run in self.throughput)

    @property
    def cpu_us(self) -> float | None:
        values = [run.cpu_us for run in self.throughput if run.cpu_us is not None]
        return statistics.median(values) if values else None


def measure(args: argparse.Namespace, paths: dict[str, Path], tmp: pathlib.Path) -> dict[str, Runs]:
    """Each round: latency at the fixed rate per path, then throughput per path.

    Each round starts one path later than the one before, so the machine's drift
    does not always fall on the same path.
    """
    runs = {name: Runs() for name in paths}
    order = list(paths)
    if args.scrape_interval > 0:
        os.sched_setaffinity(0, {1})
        for name, path in paths.items():
            if path.metrics_port is not None and path.pid is not None:
                cost = runs[name].scrape_ms = scrape_cost(path.metrics_port, path.pid)
                print(f"{name}: {cost:.2f} ms CPU per scrape (nothing else to do)", flush=True)
    for round_ in range(args.rounds):
        shift = round_ % len(order)
        rotated = order[shift:] + order[:shift]
        for name in rotated:
            path = paths[name]
            print(f"round {round_ + 1}: latency at {args.rate} rps via {name} ...", flush=True)
            with scraping(path.metrics_port, args.scrape_interval, tmp):
                # Warm up connections and caches.
                latency_run(path.port, args.rate, 1.0, path.asked)
                row = latency_run(path.port, args.rate, args.latency_seconds, path.asked)
            runs[name].latency.append(row)
            print(
                "  p50 {p50_ms:.3f} ms  p99 {p99_ms:.3f} ms  ({count:.0f} requests)".format(**row),
                flush=True,
            )
        for name in rotated:
            path = paths[name]
            print(f"round {round_ + 1}: max throughput via {name} ...", flush=True)
            with scraping(path.metrics_port, args.scrape_interval, tmp):
                wrk(path.port, 1, args.connections, asked=path.asked, tmp=tmp)
                run = wrk(
                    path.port,
                    args.throughput_seconds,
                    args.connections,
                    path.pid,
                    asked=path.asked,
                    tmp=tmp,
                )
            runs[name].throughput.append(run)
            cpu = f", {run.cpu_us:.1f} us CPU per request" if run.cpu_us is not None else ""
            print(f"  {run.rps:.0f} requests/s{cpu}", flush=True)
    return runs


def report(runs: dict[str, Runs], activators: list[str]) -> None:
    direct_p50, direct_p99 = runs["direct"].median("p50_ms"), runs["direct"].median("p99_ms")
    width = max(len(name) for name in runs)
    rounds = len(runs["direct"].throughput)
    print(f"\nresults (same run, same machine; medians of {rounds} round(s))")
    header = ("path", "p50 ms", "p99 ms", "added p50", "added p99", "max rps", "CPU us/req")
    print(f"{{:<{width}}} {{:>8}} {{:>8}} {{:>10}} {{:>10}} {{:>9}} {{:>10}}".format(*header))
    for name, run in runs.items():
        p50, p99, cpu = run.median("p50_ms"), run.median("p99_ms"), run.cpu_us
        print(
            f"{name:<{width}} {p50:>8.3f} {p99:>8.3f} {p50 - direct_p50:>10.3f} "
            f"{p99 - direct_p99:>10.3f} {run.rps:>9.0f} "
            + (f"{cpu:>10.1f}" if cpu is not None else f"{'-':>10}")
        )
    if rounds > 1:
        print("\nevery round: max rps / proxy CPU us per request / added p50 ms / added p99 ms")
        for name, run in runs.items():
            cells = [
                f"{t.rps:>6.0f} / "
                + (f"{t.cpu_us:4.1f}" if t.cpu_us is not None else "   -")
                + f" / {row['p50_ms'] - d['p50_ms']:.3f} / {row['p99_ms'] - d['p99_ms']:.2f}"
                for t, row, d in zip(
                    run.throughput, run.latency, runs["direct"].latency, strict=True
                )
            ]
            print(f"{name:<{width}}  " + "   ".join(cells))
    print()
    nginx = runs["nginx"]
    for name in activators:
        if runs[name].scrape_ms is not None:
            print(f"{name}: {runs[name].scrape_ms:.2f} ms CPU per /metrics scrape when idle")
    for name in activators:
        run = runs[name]
        # CPU per request moves less with the machine's other load than requests/s do.
        cpu = (
            f", nginx's CPU per request is {nginx.cpu_us / run.cpu_us:.0%} of its"
            if run.cpu_us and nginx.cpu_us
            else ""
        )
        print(
            f"{name}: added p50 {run.median('p50_ms') - direct_p50:.3f} ms (target <= 0.3), "
            f"added p99 {run.median('p99_ms') - direct_p99:.3f} ms (target <= 1.0), "
            f"max throughput {run.rps / nginx.rps:.0%} of nginx (target >= 50%){cpu}"
        )


def main() -> None:
    args = arguments()
    _tools(pathlib.Path(tempfile.gettempdir()) / "kfn-bench-apt.log")
    trees = {"activator": ROOT / "operator", **compared(args.compare_src)}
    with (
        tempfile.TemporaryDirectory(prefix="kfn-bench-") as tmpdir,
        contextlib.ExitStack() as stack,
    ):
        tmp = pathlib.Path(tmpdir)
        paths = start(stack, tmp, trees, _token() if args.auth else None)
        runs = measure(args, paths, tmp)
    report(runs, [name for name in paths if name.startswith("activator")])


def _tools(log: pathlib.Path) -> None:
    """nginx, wrk and taskset, installed from Debian's packages when missing (as bring-up
    installs the cluster's host tools)."""
    sys.path.insert(0, str(ROOT / "hack" / "cluster"))
    from kfncluster import hostdeps  # noqa: PLC0415 - the local cluster's tool, not kfn's

    installed = hostdeps.ensure(log, ("nginx", "wrk", "taskset"))
    if installed:
        print(f"installed {', '.join(installed)} (log: {log})", flush=True)


def _token() -> str:
    """A token of the cluster tests' ServiceAccount, which may invoke any function."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "hack" / "cluster"))
    from tests.cluster.invoking import invoke_token  # noqa: PLC0415 - needs the cluster

    return invoke_token()


if __name__ == "__main__":
    main()
