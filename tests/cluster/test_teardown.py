"""Tear-down leaves nothing behind, and a warm bring-up restores the cluster."""

from __future__ import annotations

import fcntl
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from kfncluster import cluster as kcluster
from kfncluster import config, network, procs

pytestmark = pytest.mark.cluster

REPO = pathlib.Path(__file__).resolve().parents[2]


def _tool(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'operator'}:{REPO / 'hack' / 'cluster'}"}
    return subprocess.run(
        [sys.executable, "-m", "kfncluster", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def test_down_leaves_no_process_mount_interface_netns_or_rule_and_up_restores_it(
    cluster: pathlib.Path,
) -> None:
    paths = config.Paths()
    assert kcluster.running(paths)
    pids = [r.pid for r in kcluster.supervisor(paths).records()]

    down = _tool("down")
    assert down.returncode == 0, down.stdout + down.stderr

    assert kcluster.leftovers(paths) == []
    # Gone, or a zombie waiting for init to reap it: nothing runs.
    assert all(procs.start_time_of(pid) is None for pid in pids)
    assert not network.bridge_exists()
    assert network.kube_chains() == {}
    assert network.pod_netns() == []
    mounts = pathlib.Path("/proc/self/mountinfo").read_text()
    assert str(paths.state) not in mounts
    assert str(paths.run) not in mounts
    assert not paths.kafka_data.exists()
    assert not paths.nats_data.exists()
    listening = subprocess.run(["ss", "-Htln"], capture_output=True, text=True, check=True).stdout
    for port in (":9092 ", ":4222 ", ":9093 ", ":8222 "):
        assert port not in listening, f"a broker still listens on {port.strip()}"

    again = _tool("down")
    assert again.returncode == 0
    assert "nothing to tear down" in again.stdout

    t0 = time.monotonic()
    up = _tool("up")
    warm = time.monotonic() - t0
    assert up.returncode == 0, up.stdout + up.stderr
    assert kcluster.running(paths)
    assert network.guard_installed()
    print(f"warm bring-up took {warm:.1f}s")


def test_a_second_bring_up_of_a_running_cluster_is_a_no_op(cluster: pathlib.Path) -> None:
    result = _tool("up")
    assert result.returncode == 0
    assert "already running; nothing to do" in result.stdout


def test_bring_up_after_a_killed_run_cleans_what_it_left_and_starts(cluster: pathlib.Path) -> None:
    paths = config.Paths()
    sup = kcluster.supervisor(paths)
    # What a power cut or `kill -9` of the whole session would do: every
    # process of the cluster dies at once, its bridge, rules, mounts stay.
    for record in sup.records():
        os.kill(record.pid, signal.SIGKILL)
    for pid, _name in kcluster._pod_processes(paths):
        os.kill(pid, signal.SIGKILL)
    assert not kcluster.running(paths)
    assert network.bridge_exists()

    result = _tool("up")
    assert result.returncode == 0, result.stdout + result.stderr
    first_step = result.stdout.splitlines()[1]
    assert "leftovers" in first_step, first_step
    assert kcluster.running(paths)
    assert network.guard_installed()


def test_a_bring_up_while_another_holds_the_lock_says_so_and_does_nothing(
    cluster: pathlib.Path,
) -> None:
    paths = config.Paths()
    with paths.lock.open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            result = _tool("up")
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
    assert result.returncode == 0
    assert "in progress" in result.stdout
    assert kcluster.running(paths)
