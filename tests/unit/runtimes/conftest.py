"""Starts a runtime as a real subprocess on a free loopback port and talks HTTP to it.

Each runtime gets a fresh task root (a copy of ``handlers/<language>``) and a minimal environment,
as the operator would give a function container. Both runtimes print
``listening on 127.0.0.1:<port>`` once bound (``KFN_PORT=0`` picks a free port).
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
# The Python runtime's pure modules are unit-tested in-process too.
sys.path.insert(0, str(REPO / "runtime-images/python"))
HANDLERS = Path(__file__).resolve().parent / "handlers"
LANGUAGES = ("python", "nodejs")
_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


def python_command() -> list[str]:
    """Debian's python3.11 as in the base image when present, else whichever python runs pytest."""
    exe = shutil.which("python3.11", path="/usr/bin") or shutil.which("python3") or "python3"
    return [exe, "-m", "kfn_runtime"]


def command(language: str) -> list[str]:
    if language == "python":
        return python_command()
    return ["node", str(REPO / "runtime-images/nodejs/kfn_runtime/index.js")]


@dataclasses.dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclasses.dataclass
class RunningRuntime:
    language: str
    proc: subprocess.Popen[str]
    port: int
    lines: list[str]

    def connection(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        conn: http.client.HTTPConnection | None = None,
    ) -> Response:
        own = conn is None
        c = conn or self.connection()
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return Response(r.status, r.headers, r.read())
        finally:
            if own:
                c.close()

    def invoke(self, event: Any, headers: dict[str, str] | None = None) -> Response:
        return self.request(
            "POST",
            "/_kfn/invoke",
            json.dumps(event).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )

    def wait_ready(self, timeout: float = 10.0) -> Response:
        """Polls readiness until 200, or until it reports that the handler failed to load."""
        end = time.monotonic() + timeout
        while True:
            r = self.request("GET", "/_kfn/ready")
            if r.status == 200 or "errorType" in r.json() or time.monotonic() > end:
                return r
            time.sleep(0.02)

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_output(self, needle: str, timeout: float = 5.0) -> str:
        end = time.monotonic() + timeout
        while needle not in self.output():
            if time.monotonic() > end:
                raise AssertionError(f"{needle!r} not in output:\n{self.output()}")
            time.sleep(0.02)
        return self.output()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def make_task_root(language: str, dest: Path) -> Path:
    """Copies the test handlers; ``.sample`` files (kept as published) lose their suffix."""
    root = dest / f"task-{language}"
    shutil.copytree(HANDLERS / language, root)
    for sample in root.rglob("*.sample"):
        sample.rename(sample.with_suffix(""))
    return root


def start(language: str, task_root: Path, handler: str, **env: str) -> RunningRuntime:
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(task_root),
        "KFN_HOST": "127.0.0.1",
        "KFN_PORT": "0",
        "KFN_HANDLER": handler,
        "KFN_FUNCTION_NAME": "tested",
        "KFN_TIMEOUT_MS": "3000",
        "KFN_CONCURRENCY": "4",
        "KFN_MEMORY_MB": "256",
        "LAMBDA_TASK_ROOT": str(task_root),
        "PYTHONPATH": str(REPO / "runtime-images/python"),
        "PYTHONDONTWRITEBYTECODE": "1",
        **env,
    }
    proc = subprocess.Popen(
        command(language),
        env=environment,
        cwd=task_root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines: list[str] = []
    bound = threading.Event()
    port: list[int] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if not port and (m := _LISTENING.search(line)):
                port.append(int(m.group(1)))
                bound.set()
        bound.set()

    threading.Thread(target=pump, daemon=True).start()
    if not bound.wait(15) or not port:
        proc.kill()
        raise AssertionError("runtime did not start:\n" + "\n".join(lines))
    return RunningRuntime(language, proc, port[0], lines)


Starter = Callable[..., RunningRuntime]


@pytest.fixture
def start_runtime(tmp_path: Path) -> Iterator[Starter]:
    """``start_runtime(language, handler, **env)`` → a running runtime, killed at teardown."""
    started: list[RunningRuntime] = []
    roots: dict[str, Path] = {}

    def starter(language: str, handler: str, **env: str) -> RunningRuntime:
        if language not in roots:
            roots[language] = make_task_root(language, tmp_path)
        runtime = start(language, roots[language], handler, **env)
        started.append(runtime)
        return runtime

    yield starter
    for runtime in started:
        runtime.stop()


@pytest.fixture(params=LANGUAGES)
def language(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def sigterm(runtime: RunningRuntime) -> None:
    runtime.proc.send_signal(signal.SIGTERM)
