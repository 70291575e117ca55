"""What the activator adds to a streamed answer: time to first byte, memory, throughput.

A runtime (Python and/or Node.js, a subprocess each) serves the streaming handlers of
``tests/unit/runtimes/handlers/*/streams.*``; an activator (``python -m kfn.activator``,
uvloop) routes every path to it. Every figure is measured twice in the same run, through
the activator and directly against the runtime, so the difference is what the activator
adds:

1. **Time to first byte.** ``GET /ttfb`` (``streams.first_byte``: one piece at once), one
   keep-alive connection per path, the two paths alternating request by request so that
   the machine's drift falls on both; the time from sending the request to the first body
   byte read. p50 and p99 of each, and their difference. Target: added p50 and p99 <= 5 ms.
2. **50 MiB.** ``GET /flood?mib=50`` (``streams.flood``: 64 KiB pieces, as fast as the reader
   takes them), read as fast as the client can (``--repeats`` times, the median reported),
   then by a client reading at ``--slow-mibps`` (a slow reader: the activator must hold the
   pod back, not buffer for it). Throughput in MiB/s, and the activator's RSS growth: its
   peak resident set (``VmHWM``) after the streams minus its resident set before them (a
   fresh activator for each, so the peak is theirs). Target: growth of a few MiB.

Run: ``.venv/bin/python bench/streaming.py [--languages python,nodejs] [--requests 1000]``.
The activator is pinned to core 0, runtime and client to core 1. Loopback only; every
process it starts is stopped by its PID. About a minute per language.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import shutil
import socket
import statistics
import sys
import tempfile
import time

import httptools

from localprocs import free_port, process, wait_for_port

REPO = pathlib.Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
PYTHON = REPO / ".venv" / "bin" / "python"
HANDLERS = REPO / "tests" / "unit" / "runtimes" / "handlers"
MIB = 1024 * 1024


def runtime_cmd(language: str) -> list[str]:
    if language == "python":
        return ["taskset", "-c", "1", "python3", "-m", "kfn_runtime"]
    return ["taskset", "-c", "1", "node", str(REPO / "runtime-images/nodejs/kfn_runtime/index.js")]


def start_runtime(
    stack: contextlib.ExitStack, tmp: pathlib.Path, language: str, handler: str
) -> int:
    root = tmp / f"task-{language}-{handler}"
    root.mkdir(exist_ok=True)
    source = HANDLERS / language / ("streams.py" if language == "python" else "streams.js")
    shutil.copy(source, root / source.name)
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "KFN_HOST": HOST,
        "KFN_PORT": str(port),
        "KFN_HANDLER": f"streams.{handler}",
        "KFN_FUNCTION_NAME": "bench",
        "KFN_TIMEOUT_MS": "120000",
        "KFN_CONCURRENCY": "4",
        "LAMBDA_TASK_ROOT": str(root),
        "PYTHONPATH": str(REPO / "runtime-images/python"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    log = tmp / f"runtime-{language}-{handler}.log"
    stack.enter_context(process(runtime_cmd(language), f"{language} runtime", log, env))
    wait_for_port(port, timeout=15.0)
    return port


def start_activator(
    stack: contextlib.ExitStack, tmp: pathlib.Path, runtime_port: int, name: str
) -> tuple[int, int]:
    """An activator routing everything to the runtime; returns its port and PID."""
    config = {
        "functions": [
            {
                "namespace": "bench",
                "name": "stream",
                "concurrency": 4,
                "timeout_ms": 120_000,
                "queue_limit": 100,
                "endpoints": [f"{HOST}:{runtime_port}"],
            }
        ],
        "routes": [{"host": "*", "path_prefix": "/", "function": "bench/stream"}],
    }
    config_file = tmp / f"activator-{name}.json"
    config_file.write_text(json.dumps(config))
    port = free_port()
    command = [
        "env",
        f"PYTHONPATH={REPO / 'operator'}",
        "taskset",
        "-c",
        "0",
        str(PYTHON),
        "-m",
        "kfn.activator",
        "--config",
        str(config_file),
        "--port",
        str(port),
        "--metrics-port",
        str(free_port()),
        "--id",
        "bench",
    ]
    proc = stack.enter_context(process(command, "activator", tmp / f"activator-{name}.log"))
    wait_for_port(port, timeout=15.0)
    return port, proc.pid


class Answer:
    """One response read off a socket: when its first body byte came, how much, whether done."""

    def __init__(self) -> None:
        self.first_body_at = 0.0
        self.size = 0
        self.complete = False

    def on_body(self, body: bytes) -> None:
        if not self.size:
            self.first_body_at = time.perf_counter()
        self.size += len(body)

    def on_message_complete(self) -> None:
        self.complete = True


class Connection:
    """A keep-alive client connection reading answers with httptools."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray(1 << 20)

    def get(self, path: str, *, mibps: float = 0.0) -> tuple[Answer, float]:
        """The answer to ``GET path`` and when the request was sent; ``mibps``: read no
        faster than that."""
        answer = Answer()
        parser = httptools.HttpResponseParser(answer)
        view = memoryview(self.buffer)
        sent = time.perf_counter()
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        received = 0
        while not answer.complete:
            count = self.sock.recv_into(self.buffer, 256 * 1024 if mibps else 0)
            if not count:
                raise ConnectionError("closed before the answer ended")
            parser.feed_data(view[:count])
            received += count
            if mibps:
                ahead = received / (mibps * MIB) - (time.perf_counter() - sent)
                if ahead > 0:
                    time.sleep(ahead)
        return answer, sent

    def close(self) -> None:
        self.sock.close()


def memory_mib(pid: int, field: str) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for {pid}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def time_to_first_byte(direct: int, proxied: int, requests: int) -> dict[str, list[float]]:
    paths = {"direct": Connection(direct), "activator": Connection(proxied)}
    times: dict[str, list[float]] = {name: [] for name in paths}
    for i in range(requests + 50):
        order = list(paths.items()) if i % 2 else list(reversed(paths.items()))
        for name, conn in order:
            answer, sent = conn.get("/ttfb")
            if i >= 50:  # the first 50 warm up both paths
                times[name].append((answer.first_body_at - sent) * 1000)
    for conn in paths.values():
        conn.close()
    return times


def stream(
    port: int, activator_pid: int | None, mib: int, mibps: float, repeats: int
) -> dict[str, float]:
    """Median throughput over ``repeats`` streams, and the activator's growth over all."""
    conn = Connection(port)
    conn.get("/flood?mib=1")  # warm: the activator's pooled connection and buffers exist
    before = memory_mib(activator_pid, "VmRSS") if activator_pid else 0.0
    seconds = []
    for _ in range(repeats):
        answer, sent = conn.get(f"/flood?mib={mib}", mibps=mibps)
        seconds.append(time.perf_counter() - sent)
        if answer.size != mib * MIB:
            raise RuntimeError(f"got {answer.size} bytes of {mib * MIB}")
    conn.close()
    elapsed = statistics.median(seconds)
    result = {"mibps": mib / elapsed, "seconds": elapsed}
    if activator_pid:
        result["rss_growth_mib"] = memory_mib(activator_pid, "VmHWM") - before
        result["rss_after_mib"] = memory_mib(activator_pid, "VmRSS")
    return result


def run_language(language: str, args: argparse.Namespace, tmp: pathlib.Path) -> None:
    print(f"\n== {language} runtime", flush=True)
    with contextlib.ExitStack() as stack:
        ttfb_runtime = start_runtime(stack, tmp, language, "first_byte")
        ttfb_activator, _ = start_activator(stack, tmp, ttfb_runtime, f"{language}-ttfb")
        times = time_to_first_byte(ttfb_runtime, ttfb_activator, args.requests)
    p = {name: (percentile(v, 0.5), percentile(v, 0.99)) for name, v in times.items()}
    print(f"time to first byte over {args.requests} requests (ms):")
    for name, (p50, p99) in p.items():
        mean = statistics.fmean(times[name])
        p90 = percentile(times[name], 0.9)
        print(
            f"  {name:<10} p50 {p50:7.3f}  p99 {p99:7.3f}  (p90 {p90:.3f}, mean {mean:.3f},"
            f" max {max(times[name]):.3f})"
        )
    added50 = p["activator"][0] - p["direct"][0]
    added99 = p["activator"][1] - p["direct"][1]
    print(f"  added      p50 {added50:7.3f}  p99 {added99:7.3f}   (target <= 5 ms)")

    slow = f"reader at {args.slow_mibps:g} MiB/s"
    for label, mibps in (("full speed", 0.0), (slow, args.slow_mibps)):
        mib = args.mib if not mibps else min(args.mib, int(mibps * 4) or 1)
        with contextlib.ExitStack() as stack:
            # A fresh activator per run: its peak resident set is this stream's alone.
            flood_runtime = start_runtime(stack, tmp, language, "flood")
            flood_activator, pid = start_activator(stack, tmp, flood_runtime, f"{language}-flood")
            repeats = 1 if mibps else args.repeats
            direct = stream(flood_runtime, None, mib, mibps, repeats)
            proxied = stream(flood_activator, pid, mib, mibps, repeats)
        print(f"{mib} MiB, {label} (median of {repeats}):")
        print(f"  direct     {direct['mibps']:8.1f} MiB/s  ({direct['seconds']:.2f} s)")
        print(
            f"  activator  {proxied['mibps']:8.1f} MiB/s  ({proxied['seconds']:.2f} s)"
            f"  = {proxied['mibps'] / direct['mibps']:.0%} of direct;"
            f" activator RSS +{proxied['rss_growth_mib']:.1f} MiB"
            f" (peak over the stream), {proxied['rss_after_mib']:.1f} MiB after"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--languages", default="python,nodejs")
    parser.add_argument("--requests", type=int, default=1000, help="per path, for TTFB")
    parser.add_argument("--mib", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5, help="full-speed streams per path")
    parser.add_argument("--slow-mibps", type=float, default=8.0, help="the slow reader's pace")
    args = parser.parse_args()
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {1})
    with tempfile.TemporaryDirectory(prefix="kfn-bench-streaming-") as tmp:
        for language in args.languages.split(","):
            run_language(language, args, pathlib.Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
