"""Starts a runtime as a real subprocess on a free loopback port and talks HTTP to it.

Each runtime gets a fresh task root (a copy of ``handlers/<language>``) and a minimal environment,
as the operator would give a function container. Both runtimes print
``listening on 127.0.0.1:<port>`` once bound (``KFN_PORT=0`` picks a free port).

Every test that starts a runtime runs once per runtime kfn offers (``test_x[python3.13]``), on
that runtime's own interpreter: this machine's when it has that version, else the one in the
runtime's base image, whose cached root filesystem the runtime is run in (a chroot in a private
mount namespace, with /tmp and the runtime code bound in; root only). A runtime with neither is
skipped, saying so; a test written for one language is skipped on the other's runtimes.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
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

from kfn.api import function
from kfncluster import config as cluster_config
from kfncluster import images, runtimeimages

REPO = Path(__file__).resolve().parents[3]
# The Python runtime's pure modules are unit-tested in-process too.
sys.path.insert(0, str(REPO / "runtime-images/python"))
HANDLERS = Path(__file__).resolve().parent / "handlers"
LANGUAGES = ("python", "nodejs")
_LISTENING = re.compile(r"listening on 127\.\d+\.\d+\.\d+:(\d+)")
#: PATH inside a base image (as its config sets it).
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def language_of(runtime: str) -> str:
    return "python" if runtime in function.PYTHON_RUNTIMES else "nodejs"


def version_of(runtime: str) -> str:
    """``3.13`` for python3.13, ``22`` for nodejs22."""
    return runtime.removeprefix(language_of(runtime))


def python_command() -> list[str]:
    """Debian's python3.11 as in the base image when present, else whichever python runs pytest."""
    exe = shutil.which("python3.11", path="/usr/bin") or shutil.which("python3") or "python3"
    return [exe, "-m", "kfn_runtime"]


def command(language: str, interpreter: str | None = None) -> list[str]:
    if language == "python":
        return [interpreter, "-m", "kfn_runtime"] if interpreter else python_command()
    return [interpreter or "node", str(REPO / "runtime-images/nodejs/kfn_runtime/index.js")]


@dataclasses.dataclass(frozen=True)
class Interpreter:
    """Where one runtime's interpreter is: this machine's, or a base image's root filesystem."""

    runtime: str
    executable: str
    rootfs: Path | None = None

    def argv(self) -> list[str]:
        """The command line starting the runtime."""
        return self.wrap(command(language_of(self.runtime), self.executable))

    def wrap(self, inner: list[str]) -> list[str]:
        """``inner`` run in ``rootfs`` when set: the host's /dev, /proc, /tmp and the runtime
        code are bound in, in a mount namespace of its own that ends with the process."""
        if self.rootfs is None:
            return inner
        runtime_dir = str(REPO / "runtime-images")
        script = (
            'set -e; root=$1; code=$2; shift 2; mkdir -p "$root$code"; '
            'mount --rbind /dev "$root/dev"; mount --rbind /proc "$root/proc"; '
            'mount --rbind /tmp "$root/tmp"; mount --bind "$code" "$root$code"; '
            'exec chroot "$root" "$@"'
        )
        return [
            "unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            str(self.rootfs), runtime_dir, *inner,
        ]  # fmt: skip


def _version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return ""
    return (done.stdout + done.stderr).strip()


def _matches(runtime: str, reported: str) -> bool:
    """Whether ``python3 --version`` / ``node --version`` output is ``runtime``'s version."""
    version = version_of(runtime)
    if language_of(runtime) == "python":
        return reported.startswith(f"Python {version}.")
    return reported.startswith(f"v{version}.")


def _host_interpreter(runtime: str) -> str | None:
    version = version_of(runtime)
    if language_of(runtime) == "python":
        candidates = [f"/usr/bin/python{version}", sys.executable]
    else:
        candidates = [shutil.which("node") or "node"]
    for exe in candidates:
        if os.path.exists(exe) and _matches(runtime, _version([exe, "--version"])):
            return exe
    return None


def _unpacked(image_name: str) -> Path | None:
    """The root filesystem of the base image cached as ``image_name``, unpacked once."""
    paths = cluster_config.Paths()
    image = images.find_cached(paths, image_name)
    if image is None:
        return None
    return images.unpacked(paths, image_name, image)


@functools.cache
def find_interpreter(runtime: str) -> Interpreter | str:
    """The runtime's interpreter, or why there is none here (the reason a test is skipped)."""
    exe = _host_interpreter(runtime)
    if exe is not None:
        return Interpreter(runtime, exe)
    return image_interpreter(runtime)


@functools.cache
def image_interpreter(runtime: str) -> Interpreter | str:
    """The interpreter in the runtime's cached base image, or why there is none here."""
    made = runtimeimages.IMAGES.get(runtime)
    if made is None:
        return (
            f"{runtime}: this machine has no {language_of(runtime)} {version_of(runtime)} and "
            "the local cluster makes no base image for it (kfncluster.runtimeimages says why)"
        )
    if os.geteuid() != 0:
        return f"{runtime}: running it in its base image's root filesystem needs root"
    rootfs = _unpacked(made.cache_name)
    if rootfs is None:
        return f"{runtime}: its base image {made.cache_name} is not cached yet (make up makes it)"
    exe = "python3" if language_of(runtime) == "python" else "node"
    found = Interpreter(runtime, exe, rootfs)
    reported = _version(found.wrap([exe, "--version"]))
    if not _matches(runtime, reported):
        return f"{runtime}: the base image {made.cache_name} has {reported!r}"
    return found


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


def start(
    language: str,
    task_root: Path,
    handler: str,
    *,
    interpreter: Interpreter | None = None,
    **env: str,
) -> RunningRuntime:
    """Starts the ``language`` runtime on ``interpreter`` (by default this machine's)."""
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
    argv = command(language)
    if interpreter is not None:
        argv = interpreter.argv()
        if interpreter.rootfs is not None:
            environment["PATH"] = IMAGE_PATH
    return launch(language, argv, environment, task_root)


def launch(
    language: str, argv: list[str], environment: dict[str, str], cwd: Path
) -> RunningRuntime:
    """Runs ``argv`` with exactly ``environment`` and waits until it listens."""
    proc = subprocess.Popen(
        argv,
        env=environment,
        cwd=cwd,
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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that starts a runtime runs on each runtime kfn offers."""
    if "runtime" in metafunc.fixturenames:
        metafunc.parametrize("runtime", function.RUNTIMES, indirect=True)


@pytest.fixture
def runtime(request: pytest.FixtureRequest) -> str:
    """The runtime a test runs on (``python3.13``...), one of the parameters above."""
    return str(request.param)


@pytest.fixture
def language(runtime: str) -> str:
    return language_of(runtime)


@pytest.fixture
def start_runtime(tmp_path: Path, runtime: str) -> Iterator[Starter]:
    """``start_runtime(language, handler, **env)`` → a running runtime, killed at teardown.

    A test for the other language than the runtime's is skipped, as is a runtime whose
    interpreter this machine lacks (the reason says which and why)."""
    started: list[RunningRuntime] = []
    roots: dict[str, Path] = {}

    def starter(language: str, handler: str, **env: str) -> RunningRuntime:
        if language != language_of(runtime):
            pytest.skip(f"written for the {language} runtimes")
        found = find_interpreter(runtime)
        if isinstance(found, str):
            pytest.skip(found)
        if language not in roots:
            roots[language] = make_task_root(language, tmp_path)
        running = start(language, roots[language], handler, interpreter=found, **env)
        started.append(running)
        return running

    yield starter
    for running in started:
        running.stop()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def sigterm(runtime: RunningRuntime) -> None:
    runtime.proc.send_signal(signal.SIGTERM)
