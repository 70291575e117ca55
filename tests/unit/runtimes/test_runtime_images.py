"""Each runtime's base image (once per runtime, by the ``runtime`` fixture) runs its
interpreter as the unprivileged user every function container runs as (uid 65532), and a
Node.js one has npm, which builds run in it."""

from __future__ import annotations

import subprocess

import pytest

from .conftest import IMAGE_PATH, Interpreter, image_interpreter, language_of

NONROOT = "65532:65532"


def _in_image(runtime: str) -> Interpreter:
    found = image_interpreter(runtime)
    if isinstance(found, str):
        pytest.skip(found)
    return found


def _as_nonroot(interpreter: Interpreter, *argv: str) -> subprocess.CompletedProcess[str]:
    assert interpreter.rootfs is not None
    return subprocess.run(
        ["chroot", f"--userspec={NONROOT}", str(interpreter.rootfs),
         "env", f"PATH={IMAGE_PATH}", "HOME=/home/nonroot", *argv],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_interpreter_runs_as_the_unprivileged_user(runtime: str) -> None:
    interpreter = _in_image(runtime)
    done = _as_nonroot(interpreter, interpreter.executable, "--version")
    assert done.returncode == 0, done.stderr


def test_a_nodejs_image_has_npm_for_builds(runtime: str) -> None:
    if language_of(runtime) != "nodejs":
        pytest.skip("builds run npm in the Node.js images only")
    interpreter = _in_image(runtime)
    done = _as_nonroot(interpreter, "npm", "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().split(".")[0].isdigit()
