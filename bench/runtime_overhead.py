"""Per-invocation overhead of the Python runtime versus calling the handler in-process.

Starts ``python3 -m kfn_runtime`` on a free loopback port with a trivial handler, sends N
invocations over one keep-alive connection, and compares their latency with calling the same
handler directly. Prints p50/p99 of both and their ratio. Loopback only; bounded by --max-seconds.

    .venv/bin/python bench/runtime_overhead.py --invocations 2000
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNTIME_DIR = REPO / "runtime-images/python"
HANDLER_SOURCE = "def handler(event, context):\n    return {'echo': event['n']}\n"


class _Context:
    """Enough of a context for the trivial handler called in-process."""

    aws_request_id = "bench"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def direct(n: int, deadline: float) -> list[float]:
    namespace: dict[str, object] = {}
    exec(HANDLER_SOURCE, namespace)  # noqa: S102 - the bench's own fixed handler source
    handler = namespace["handler"]
    assert callable(handler)
    samples = []
    for i in range(n):
        if time.monotonic() > deadline:
            break
        body = json.dumps({"n": i}).encode()
        began = time.perf_counter()
        # what a caller pays in-process: decode the event, call, encode the result
        json.dumps(handler(json.loads(body), _Context())).encode()
        samples.append((time.perf_counter() - began) * 1e6)
    return samples


def through_runtime(n: int, deadline: float, concurrency: int) -> list[float]:
    with tempfile.TemporaryDirectory() as root:
        Path(root, "bench_handler.py").write_text(HANDLER_SOURCE)
        python = shutil.which("python3.11", path="/usr/bin") or sys.executable
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(RUNTIME_DIR),
            "KFN_HOST": "127.0.0.1",
            "KFN_PORT": "0",
            "KFN_HANDLER": "bench_handler.handler",
            "KFN_CONCURRENCY": str(concurrency),
            "LAMBDA_TASK_ROOT": root,
        }
        proc = subprocess.Popen(
            [python, "-m", "kfn_runtime"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert proc.stdout is not None
            port = 0
            for line in proc.stdout:
                if m := re.search(r"listening on 127\.0\.0\.1:(\d+)", line):
                    port = int(m.group(1))
                    break
            if not port:
                raise SystemExit("runtime did not start")
            # keep draining the runtime's log so that its pipe never fills
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            while True:
                conn.request("GET", "/_kfn/ready")
                ready = conn.getresponse()
                ready.read()
                if ready.status == 200:
                    break
                time.sleep(0.01)
            samples = []
            for i in range(n):
                if time.monotonic() > deadline:
                    break
                body = json.dumps({"n": i}).encode()
                began = time.perf_counter()
                conn.request("POST", "/_kfn/invoke", body, {"Kfn-Request-Id": f"b{i}"})
                r = conn.getresponse()
                payload = r.read()
                samples.append((time.perf_counter() - began) * 1e6)
                if r.status != 200 or json.loads(payload) != {"echo": i}:
                    raise SystemExit(f"unexpected answer {r.status} {payload!r}")
                if i and i % max(1, n // 10) == 0:
                    print(f"  {i}/{n} invocations", flush=True)
            conn.close()
            return samples
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invocations", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    args = parser.parse_args()
    deadline = time.monotonic() + args.max_seconds
    print(f"direct: {args.invocations} in-process calls", flush=True)
    inproc = direct(args.invocations, deadline)
    print(f"runtime: {args.invocations} invocations over one keep-alive connection", flush=True)
    remote = through_runtime(args.invocations, deadline, args.concurrency)
    for name, samples in (("direct", inproc), ("runtime", remote)):
        print(
            f"{name:8s} n={len(samples):6d}  p50={percentile(samples, 0.5):9.1f} us  "
            f"p99={percentile(samples, 0.99):9.1f} us  mean={statistics.fmean(samples):9.1f} us"
        )
    p50_overhead = percentile(remote, 0.5) - percentile(inproc, 0.5)
    print(
        f"overhead p50={p50_overhead:.1f} us per invocation; ratio runtime/direct "
        f"p50={percentile(remote, 0.5) / percentile(inproc, 0.5):.1f}x "
        f"p99={percentile(remote, 0.99) / percentile(inproc, 0.99):.1f}x"
    )


if __name__ == "__main__":
    main()
