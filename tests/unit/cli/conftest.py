"""Runs ``kubectl kfn`` in-process (its real parser and commands) and as the installed
executables would be run, for the tests of the plugin."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import stat
import sys
from typing import Protocol

import pytest

from kfn.cli import __main__ as cli

REPO = pathlib.Path(__file__).resolve().parents[3]
# The runtime's HTTP mapping builds the event the apigw sample is compared with.
sys.path.insert(0, str(REPO / "runtime-images/python"))


@dataclasses.dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


class Run(Protocol):
    def __call__(self, *argv: str) -> Result: ...


@pytest.fixture
def kfn(capsys: pytest.CaptureFixture[str]) -> Run:
    """``kfn("init", "hello")``: runs the plugin's ``main`` and returns its exit code and output."""

    def run(*argv: str) -> Result:
        code = cli.main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def plugin_on_path(tmp_path: pathlib.Path) -> dict[str, str]:
    """An environment whose PATH has ``kubectl-kfn`` and ``kubectl_complete-kfn`` running this
    checkout's kfn, as the package's entry points would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, function in (("kubectl-kfn", "main"), ("kubectl_complete-kfn", "complete")):
        script = bin_dir / name
        script.write_text(
            f"#!{sys.executable}\n"
            "import sys\n"
            f"sys.path.insert(0, {str(REPO / 'operator')!r})\n"
            f"from kfn.cli.__main__ import {function}\n"
            f"sys.exit({function}())\n"
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
