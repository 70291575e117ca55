"""Shell completion: what ``kubectl_complete-kfn`` answers kubectl, and the bash script."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

from kfn.api import function
from kfn.cli import __main__ as cli
from kfn.cli import commands, completion, events, parser

from .conftest import Run


def complete(*words: str) -> tuple[list[str], int]:
    """The values offered (descriptions dropped) and the directive."""
    found, directive = completion.complete(parser.build(commands.ALL), list(words))
    return [line.split("\t")[0] for line in found], directive


def test_the_first_word_completes_to_the_subcommands_with_their_summaries() -> None:
    found, directive = completion.complete(parser.build(commands.ALL), [""])

    assert found == [
        "init\tCreate a function folder: handler, function.yaml, test event",
        "deploy\tDeploy a function folder and follow it until it serves",
        "invoke\tInvoke a function and print its result and log",
        "logs\tPrint or follow a function's log, with pod and request id",
        "describe\tShow a function: conditions, triggers, last build, events",
        "publish\tPublish what a function runs now as a new version",
        "rollback\tPoint an alias, or $LATEST, back at a published version",
        "events\tList the built-in test events, or print one",
        "completion\tPrint a shell completion script (bash, zsh)",
    ]
    assert directive == completion.NO_FILE_COMP
    assert complete("ev") == (["events"], completion.NO_FILE_COMP)


def test_a_subcommand_after_global_options_is_still_found() -> None:
    assert complete("-n", "team-a", "--context", "kind", "events", "k")[0] == ["kafka"]


def test_options_complete_to_the_commands_own_and_the_global_ones() -> None:
    found, _ = complete("init", "--")

    assert found == ["--help", "--runtime", "--namespace", "--context", "--kubeconfig"]
    assert complete("events", "-o")[0] == ["-o"]


def test_values_complete_from_choices_names_and_the_kind_of_value() -> None:
    assert complete("init", "x", "--runtime", "")[0] == list(function.RUNTIMES)
    assert complete("init", "x", "--runtime", "node")[0] == list(function.NODEJS_RUNTIMES)
    assert complete("events", "--output=y") == (["--output=yaml"], completion.NO_FILE_COMP)
    assert complete("events", "") == (list(events.NAMES), completion.NO_FILE_COMP)
    assert complete("completion", "") == (["bash", "zsh"], completion.NO_FILE_COMP)
    # init NAME is free text; DIR is a directory; --kubeconfig a file.
    assert complete("init", "") == ([], completion.NO_FILE_COMP)
    assert complete("init", "hello", "") == ([], completion.FILTER_DIRS)
    assert complete("--kubeconfig", "") == ([], completion.DEFAULT)


def test_kubectl_complete_kfn_prints_candidates_then_the_directive(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.complete(["events", "s"]) == 0
    assert capsys.readouterr().out == "s3\nschedule\n:4\n"
    assert cli.main(["__complete", "completion", "z"]) == 0
    assert capsys.readouterr().out == "zsh\n:4\n"


def test_the_completion_command_prints_each_shells_script(kfn: Run) -> None:
    bash = kfn("completion", "bash")
    zsh = kfn("completion", "zsh")

    assert bash.code == zsh.code == 0
    assert "complete -F _kubectl_kfn_complete kubectl-kfn" in bash.out
    assert zsh.out.startswith("#compdef kubectl-kfn\n")


def _bash_complete(line: list[str], env: dict[str, str], cwd: pathlib.Path) -> list[str]:
    """COMPREPLY after the bash script completes ``line`` (its last word under the cursor)."""
    script = completion.BASH + (
        f"COMP_WORDS=({' '.join(repr(w) for w in line)}); COMP_CWORD={len(line) - 1}\n"
        "_kubectl_kfn_complete\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    done = subprocess.run(
        ["bash", "--norc", "-c", script], env=env, cwd=cwd, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [w for w in done.stdout.splitlines() if w]


def test_the_bash_script_completes_through_the_plugin(
    plugin_on_path: dict[str, str], tmp_path: pathlib.Path
) -> None:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    (tmp_path / "src").mkdir()
    (tmp_path / "setup.txt").write_text("")

    assert _bash_complete(["kubectl-kfn", "ev"], plugin_on_path, tmp_path) == ["events"]
    assert _bash_complete(["kubectl-kfn", "events", "s"], plugin_on_path, tmp_path) == [
        "s3", "schedule"
    ]  # fmt: skip
    # DIR offers directories only; --kubeconfig any file.
    assert _bash_complete(["kubectl-kfn", "init", "x", "s"], plugin_on_path, tmp_path) == ["src"]
    assert sorted(
        _bash_complete(["kubectl-kfn", "--kubeconfig", "s"], plugin_on_path, tmp_path)
    ) == ["setup.txt", "src"]


def test_the_global_options_typed_so_far_choose_the_cluster_asked_for_names() -> None:
    top = parser.build(commands.ALL)

    at = completion._locate(
        top, ["-n", "team-a", "invoke", "--context=kind", "--kubeconfig", "/k", "-d", "{}"]
    )

    assert at.options == {"namespace": "team-a", "context": "kind", "kubeconfig": "/k"}


def test_functions_and_namespaces_complete_to_nothing_when_the_cluster_cannot_be_asked(
    tmp_path: pathlib.Path,
) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )

    for words in (
        ["invoke", ""],
        ["logs", "-n", ""],
        ["describe", "he"],
        ["publish", ""],
        ["rollback", "--alias", "live", ""],
    ):
        found = complete("--kubeconfig", str(config), *words)
        assert found == ([], completion.NO_FILE_COMP), words
    assert complete("--kubeconfig", str(tmp_path / "missing"), "invoke", "") == (
        [],
        completion.NO_FILE_COMP,
    )
