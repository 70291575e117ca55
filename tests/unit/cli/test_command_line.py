"""kubectl's conventions: exit codes, ``error:`` messages, help, and global options anywhere."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from kfn.cli import commands

from .conftest import REPO, Run


@pytest.mark.parametrize(
    ("argv", "message", "helpline"),
    [
        (["deploy-all"], 'unknown command "deploy-all" for "kubectl kfn"', "kubectl kfn --help"),
        (["init"], "the following arguments are required: NAME", "kubectl kfn init --help"),
        (["init", "x", "--runtime", "java"], "argument --runtime: invalid choice: 'java'",
         "kubectl kfn init --help"),
        (["events", "-o", "xml"], "argument -o/--output: invalid choice: 'xml'",
         "kubectl kfn events --help"),
        (["events", "--follow"], "unknown flag: --follow", "kubectl kfn events --help"),
        (["events", "s3", "kafka"], 'unexpected argument "kafka"', "kubectl kfn events --help"),
        (["--verbose", "events"], "unknown flag: --verbose", "kubectl kfn events --help"),
        (["--namespace"], "argument -n/--namespace: expected one argument", "kubectl kfn --help"),
    ],
)  # fmt: skip
def test_a_usage_error_exits_2_saying_what_and_where_the_help_is(
    kfn: Run, argv: list[str], message: str, helpline: str
) -> None:
    result = kfn(*argv)

    assert result.code == 2
    assert result.out == ""
    assert result.err.startswith(f"error: {message}")
    assert result.err.endswith(f"See '{helpline}' for usage.\n")


def test_an_error_exits_1_with_the_message_on_stderr_only(kfn: Run) -> None:
    result = kfn("events", "nope")

    assert (result.code, result.out) == (1, "")
    assert result.err.startswith("error: ")


def test_no_command_prints_the_help_and_succeeds_as_kubectl_does(kfn: Run) -> None:
    result = kfn()

    assert result.code == 0
    assert result.out.startswith("usage: kubectl kfn")


@pytest.mark.parametrize("name", ["", *(c.name for c in commands.ALL)])
def test_every_command_has_help_with_examples(kfn: Run, name: str) -> None:
    result = kfn(*([name] if name else []), "--help")

    assert result.code == 0
    assert result.out.startswith(f"usage: kubectl kfn {name}".rstrip())
    assert "Examples:\n  # " in result.out


@pytest.mark.parametrize(
    "argv",
    [
        ["-n", "team-a", "--context", "kind", "events", "s3"],
        ["events", "s3", "-n", "team-a", "--context", "kind", "--kubeconfig", "/dev/null"],
        ["events", "--namespace=team-a", "s3"],
    ],
)
def test_global_options_are_taken_before_or_after_the_command(kfn: Run, argv: list[str]) -> None:
    assert kfn(*argv).code == 0


def test_options_and_arguments_may_come_in_any_order(kfn: Run, tmp_path: pathlib.Path) -> None:
    result = kfn("init", "orders", "--runtime", "nodejs22", str(tmp_path / "o"), "-n", "x")

    assert result.code == 0, result.err
    assert (tmp_path / "o" / "index.js").is_file()


def test_the_module_runs_as_the_kubectl_kfn_executable() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kfn.cli", "events", "nope"],
        env={"PYTHONPATH": str(REPO / "operator")}, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip

    assert done.returncode == 1
    assert done.stderr.startswith('error: there is no test event "nope"')


def test_a_file_that_cannot_be_written_is_an_error_not_a_traceback(
    kfn: Run, tmp_path: pathlib.Path
) -> None:
    (tmp_path / "taken").write_text("a file where init wants a folder\n")

    result = kfn("init", "hello", str(tmp_path / "taken"))

    assert result.code == 1
    assert result.err.startswith("error: ")
    assert "Traceback" not in result.err
