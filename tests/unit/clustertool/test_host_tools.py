"""A machine without the host tools: clean-up finds nothing, bring-up installs them first.

These run the cluster tool for real, as root, against a scratch state directory of their own
(``KFN_CLUSTER_STATE``/``KFN_CLUSTER_RUN``), with ``PATH`` cut down to a directory holding only
what the test puts there, which is how a fresh Debian machine looks to the tool.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from kfncluster import config, host, teardown

REPO = pathlib.Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the cluster tool runs as root")


def _env(tmp_path: pathlib.Path, bin_dir: pathlib.Path) -> dict[str, str]:
    return {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path / "home"),
        "PYTHONPATH": f"{REPO / 'operator'}:{REPO / 'hack' / 'cluster'}",
        "KFN_CLUSTER_STATE": str(tmp_path / "state"),
        "KFN_CLUSTER_RUN": str(tmp_path / "run"),
        "KFN_KUBECONFIG_OUT": str(tmp_path / "kubeconfig"),
    }


def _tool(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kfncluster", *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_clean_up_without_any_host_tool_finds_nothing_and_reports_no_error(
    tmp_path: pathlib.Path,
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    env = _env(tmp_path, empty)
    status = _tool(env, "status")
    assert (status.returncode, status.stdout.strip()) == (1, "not running"), status.stderr
    for command in ("stop", "down"):
        result = _tool(env, command)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "nothing to" in result.stdout
        assert result.stderr == ""


def test_clean_up_code_run_in_process_without_tools_treats_them_as_nothing_to_clean(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = config.Paths(state=tmp_path / "state", run=tmp_path / "run", cache=tmp_path / "c")
    paths.state.mkdir()
    # A record of a bring-up exists, so the bridge and the guard would be looked for.
    paths.owned.write_text('{"chains_before": {}}')
    monkeypatch.setenv("PATH", str(tmp_path))
    for tool in ("iptables", "ip6tables", "ip", "umount"):
        assert host.which(tool) is None
    assert teardown.leftovers(paths) == []
    teardown.stop(paths, crictl=["crictl"])
    assert not paths.owned.exists()


def test_a_missing_tool_outside_clean_up_names_the_debian_package_that_has_it(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(host.MissingToolError, match="Debian package iptables"):
        host.run(["iptables", "-w", "-t", "mangle", "-L"])
    assert host.run(["ip", "link"], missing_ok=True).returncode == 127


def test_bring_up_installs_the_host_packages_before_it_uses_any_host_tool(
    tmp_path: pathlib.Path,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    go = shutil.which("go")
    assert go is not None, "the Go toolchain comes with the machine"
    (bin_dir / "go").symlink_to(go)
    # apt-get is there (it is on every Debian machine); this one records its call and fails,
    # so bring-up stops right after the step that must come first.
    calls = tmp_path / "apt-calls"
    apt = bin_dir / "apt-get"
    apt.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "no network here" >&2\nexit 100\n')
    apt.chmod(0o755)

    result = _tool(_env(tmp_path, bin_dir), "up")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "host packages: apt-get update failed" in result.stderr
    assert calls.read_text().startswith("update")
    first_step = result.stdout.splitlines()[0]
    assert "host packages" in first_step
    # Nothing ran before apt-get: the trace of every command the tool ran starts with it.
    trace = (tmp_path / "state" / "logs" / "commands.log").read_text().splitlines()
    assert trace, "the tool traces every command it runs"
    assert " apt-get update " in f" {trace[0].split(' ', 1)[1]}"
