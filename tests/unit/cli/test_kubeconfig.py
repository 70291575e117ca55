"""The cluster commands read the kubeconfig as kubectl does: the context, its namespace, -n,
and the user's own bearer token (no request is made)."""

from __future__ import annotations

import argparse
import pathlib

import pytest
import yaml

from kfn.cli import cluster, errors

from .conftest import Run


def _kubeconfig(tmp_path: pathlib.Path) -> pathlib.Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [
            {"name": "with-token", "user": {"token": "s3cr3t-token"}},
            {"name": "with-certs", "user": {"username": "u", "password": "p"}},
        ],
        "contexts": [
            {"name": "team-a",
             "context": {"cluster": "c", "user": "with-token", "namespace": "team-a"}},
            {"name": "plain", "context": {"cluster": "c", "user": "with-certs"}},
        ],
        "current-context": "team-a",
    }  # fmt: skip
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def _connect(**given: str | None) -> cluster.Cluster:
    args = argparse.Namespace(**{"namespace": None, "context": None, "kubeconfig": None, **given})
    return cluster.Cluster.connect(args)


def test_the_current_contexts_namespace_and_token_are_used(tmp_path: pathlib.Path) -> None:
    kube = _connect(kubeconfig=str(_kubeconfig(tmp_path)))

    assert kube.namespace == "team-a"
    assert kube.host == "https://127.0.0.1:6443"
    assert kube.bearer_token() == "s3cr3t-token"
    assert not kube.in_cluster


def test_another_context_without_a_namespace_works_in_default_and_has_no_token(
    tmp_path: pathlib.Path,
) -> None:
    kube = _connect(kubeconfig=str(_kubeconfig(tmp_path)), context="plain")

    assert kube.namespace == "default"
    assert kube.bearer_token() is None


def test_namespace_wins_over_the_contexts(tmp_path: pathlib.Path) -> None:
    assert _connect(kubeconfig=str(_kubeconfig(tmp_path)), namespace="prod").namespace == "prod"


def test_kubeconfig_from_the_environment_is_read(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path)))

    assert _connect().namespace == "team-a"


def test_a_context_that_does_not_exist_is_an_error_naming_the_options(
    tmp_path: pathlib.Path,
) -> None:
    with pytest.raises(errors.CliError, match="--context to choose a context"):
        _connect(kubeconfig=str(_kubeconfig(tmp_path)), context="nope")


def test_an_unreachable_cluster_is_an_error_not_a_traceback(
    kfn: Run, tmp_path: pathlib.Path
) -> None:
    config = _kubeconfig(tmp_path)
    text = config.read_text().replace("https://127.0.0.1:6443", "https://127.0.0.1:9")
    config.write_text(text)

    result = kfn("describe", "hello", "--kubeconfig", str(config))

    assert result.code == 1
    assert result.err.startswith("error: the cluster at https://127.0.0.1:9 cannot be reached")
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["invoke", "f", "-d", "{}", "-f", "x.json"],
         "argument -f/--filename: not allowed with argument -d/--data"),
        (["invoke", "f", "--log-type", "Full"], "argument --log-type: invalid choice: 'Full'"),
        (["invoke", "f", "--event", "sqs"], "argument --event: invalid choice: 'sqs'"),
        (["logs", "f", "--tail", "many"], "argument --tail: invalid int value: 'many'"),
        (["describe", "f", "-o", "wide"], "argument -o/--output: invalid choice: 'wide'"),
        (["deploy", "a", "b"], 'unexpected argument "b"'),
    ],
)  # fmt: skip
def test_the_cluster_commands_usage_errors_exit_2(kfn: Run, argv: list[str], message: str) -> None:
    result = kfn(*argv)

    assert result.code == 2
    assert result.err.startswith(f"error: {message}")
