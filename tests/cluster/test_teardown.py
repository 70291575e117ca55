"""Tear-down leaves nothing behind and touches nothing it did not make; the developer's
cluster comes back with its Functions.

These tests take a cluster down and up again, so they never use the developer's: the
module stops it with its data kept, brings a scratch cluster up and down in state
directories of its own (``KFN_CLUSTER_STATE``/``KFN_CLUSTER_RUN``), then resumes the
developer's cluster and checks that a Function made before is still listed and answers.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from kfncluster import cluster as kcluster
from kfncluster import config, kuberouter, network, owned, procs, teardown
from tests.cluster import invoking, kubeutil

pytestmark = pytest.mark.cluster

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRATCH_STATE = pathlib.Path("/var/lib/kfn-cluster-scratch")
SCRATCH_RUN = pathlib.Path("/run/kfn-cluster-scratch")
SCRATCH = config.Paths(state=SCRATCH_STATE, run=SCRATCH_RUN)
SENTINEL_NS = "teardown-sentinel"
FOREIGN_CHAIN = "KUBE-SVC-KFNFOREIGNTEST00"
#: In the filter table, where kube-router's chains are, and named like them.
FOREIGN_FILTER_CHAIN = "KUBE-ROUTER-KFNFOREIGN"
FOREIGN_SET = "kfn-foreign-test"
FOREIGN_NETNS = "kfn-foreign-test"
#: Lets every pod reach CoreDNS, as without it, but gives kube-router a policy to make chains
#: and ipsets for.
DNS_POLICY = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "allow-dns", "namespace": "kube-system"},
    "spec": {
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        "policyTypes": ["Ingress"],
        "ingress": [{}],
    },
}
HANDLER = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'still here'}\n"


def _env(scratch: bool) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'operator'}:{REPO / 'hack' / 'cluster'}"}
    if scratch:
        env |= {
            "KFN_CLUSTER_STATE": str(SCRATCH_STATE),
            "KFN_CLUSTER_RUN": str(SCRATCH_RUN),
            "KFN_KUBECONFIG_OUT": str(SCRATCH_STATE.parent / "kfn-cluster-scratch.kubeconfig"),
        }
    return env


def _tool(*args: str, scratch: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kfncluster", *args],
        cwd=REPO, env=_env(scratch), capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip


def _invoke_sentinel() -> str:
    service = kubeutil.kubectl_json("-n", "kfn-system", "get", "service", "kfn-invoke")
    url = f"http://{service['spec']['clusterIP']}/_kfn/functions/{SENTINEL_NS}/sentinel/invoke"
    request = urllib.request.Request(url, data=b"{}", method="POST", headers=invoking.bearer())
    with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310 - a cluster URL
        return str(json.loads(resp.read())["body"])


def _resume_developer_cluster() -> str:
    result = _tool("up", scratch=False)
    assert result.returncode == 0, result.stdout + result.stderr
    for deployment in kubeutil.kubectl(
        "-n", "kfn-system", "get", "deployments", "-o", "name"
    ).split():
        kubeutil.kubectl("-n", "kfn-system", "rollout", "status", deployment, "--timeout=300s",
                         timeout=320)  # fmt: skip
    return result.stdout


@pytest.fixture(scope="module")
def scratch(kfn: str) -> Iterator[config.Paths]:
    """The developer's cluster stopped (a Function of theirs in it), a scratch one's paths."""
    image = _push_sentinel_image()
    kubeutil.kubectl("create", "namespace", SENTINEL_NS, check=False)
    kubeutil.python_function(SENTINEL_NS, "sentinel", image)
    kubeutil.wait_for("the sentinel answers", _invoke_sentinel, timeout=180, every=1)
    stopped = _tool("stop", scratch=False)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    try:
        yield SCRATCH
    finally:
        _tool("down")
        shutil.rmtree(SCRATCH_STATE, ignore_errors=True)
        shutil.rmtree(SCRATCH_RUN, ignore_errors=True)
        if not kcluster.running(config.Paths()):
            _resume_developer_cluster()
        kubeutil.kubectl("delete", "namespace", SENTINEL_NS, "--wait=false", check=False)


def _push_sentinel_image() -> str:
    from kfncluster import fnimage  # noqa: PLC0415

    return fnimage.push_python_function("tests/sentinel", "v1", {"app.py": HANDLER})


def _up_scratch() -> None:
    result = _tool("up")
    assert result.returncode == 0, result.stdout + result.stderr
    assert kcluster.running(SCRATCH)


def _scratch_kubectl(*args: str, input: str | None = None) -> str:
    return subprocess.run(
        [str(kubeutil.KUBECTL), f"--kubeconfig={_env(scratch=True)['KFN_KUBECONFIG_OUT']}", *args],
        input=input, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip


def test_down_leaves_no_process_mount_interface_netns_or_rule(scratch: config.Paths) -> None:
    _up_scratch()
    pids = [r.pid for r in kcluster.supervisor(scratch).records()]
    netns = owned.netns(scratch)
    assert netns, "pods of the scratch cluster have network namespaces"
    _scratch_kubectl("apply", "-f", "-", input=json.dumps(DNS_POLICY))
    made = kubeutil.wait_for("kube-router's ipsets for the policy",
                             lambda: owned.our_sets(scratch), timeout=30)  # fmt: skip
    chains = owned.our_chains(scratch)["iptables/filter"]
    assert any(c.startswith("KUBE-NWPLCY-") and c != "KUBE-NWPLCY-DEFAULT" for c in chains)

    down = _tool("down")
    assert down.returncode == 0, down.stdout + down.stderr

    assert teardown.leftovers(scratch) == []
    # Gone, or a zombie waiting for init to reap it: nothing runs.
    assert all(procs.start_time_of(pid) is None for pid in pids)
    assert not network.bridge_exists()
    present = owned.present_chains()
    assert owned.conflicting(present) == [], present
    assert not set(made) & set(kuberouter.sets()), "kube-router's ipsets are left"
    assert not any(path.exists() for path in netns)
    assert owned.cgroups(scratch) == []
    mounts = pathlib.Path("/proc/self/mountinfo").read_text()
    assert str(scratch.state) not in mounts
    assert str(scratch.run) not in mounts
    assert not scratch.kafka_data.exists()
    assert not scratch.etcd_data.exists()
    listening = subprocess.run(["ss", "-Htln"], capture_output=True, text=True, check=True).stdout
    for port in (":9092 ", ":4222 ", ":5000 ", ":6443 "):
        assert port not in listening, f"something still listens on {port.strip()}"

    again = _tool("down")
    assert again.returncode == 0
    assert "nothing to tear down" in again.stdout


def test_cluster_down_leaves_a_foreign_chain_and_a_foreign_netns_in_the_pod_range_alone(
    scratch: config.Paths,
) -> None:
    # In the mangle table: a running kube-proxy sweeps nat chains named like its service
    # chains whoever made them (bring-up refuses beside one, see the next test), so only a
    # table it does not sweep tells what our tear-down removes.
    _up_scratch()
    # Left by an interrupted run of this test, if any.
    _remove_foreign()
    _iptables("mangle", "-N", FOREIGN_CHAIN)
    subprocess.run(["ip", "netns", "add", FOREIGN_NETNS], check=True)
    # kube-router's firewall runs: a chain named like its own and an ipset beside its sets.
    _iptables("filter", "-N", FOREIGN_FILTER_CHAIN)
    subprocess.run(["ipset", "create", FOREIGN_SET, "hash:ip"], check=True)
    try:
        netns = ["ip", "-n", FOREIGN_NETNS]
        subprocess.run([*netns, "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                       check=True)  # fmt: skip
        subprocess.run([*netns, "addr", "add", "10.244.0.77/24", "dev", "v0"], check=True)

        down = subprocess.run(
            ["make", "cluster-down"], cwd=REPO, env=_env(scratch=True),
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        assert down.returncode == 0, down.stdout + down.stderr

        assert FOREIGN_CHAIN in owned.chains_in(_iptables("mangle", "-S").stdout), (
            "the foreign chain was removed"
        )
        assert FOREIGN_FILTER_CHAIN in owned.chains_in(_iptables("filter", "-S").stdout), (
            "the foreign chain named like kube-router's was removed"
        )
        assert FOREIGN_SET in kuberouter.sets(), "the foreign ipset was destroyed"
        addresses = subprocess.run([*netns, "-4", "addr"], capture_output=True, text=True,
                                   check=True).stdout  # fmt: skip
        assert "10.244.0.77/24" in addresses
    finally:
        _remove_foreign()


def _remove_foreign() -> None:
    """What the test above plants (also what an interrupted run of it left)."""
    _iptables("mangle", "-X", FOREIGN_CHAIN, check=False)
    _iptables("filter", "-X", FOREIGN_FILTER_CHAIN, check=False)
    subprocess.run(["ipset", "destroy", FOREIGN_SET], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "delete", FOREIGN_NETNS], capture_output=True, check=False)


def test_bring_up_refuses_beside_a_nat_chain_kube_proxy_would_sweep(
    scratch: config.Paths,
) -> None:
    assert _tool("down").returncode == 0
    _iptables("nat", "-N", FOREIGN_CHAIN)
    try:
        result = _tool("up")
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"{FOREIGN_CHAIN} (iptables/nat)" in result.stderr
        assert not network.bridge_exists()
        assert FOREIGN_CHAIN in owned.chains_in(_iptables("nat", "-S").stdout)
    finally:
        _iptables("nat", "-X", FOREIGN_CHAIN, check=False)


def _iptables(table: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", "-t", table, *args],
                          capture_output=True, text=True, check=check)  # fmt: skip


def test_stop_keeps_the_data_and_up_resumes_it(scratch: config.Paths) -> None:
    _up_scratch()
    kubeconfig = _env(scratch=True)["KFN_KUBECONFIG_OUT"]

    def kubectl(*args: str) -> str:
        return subprocess.run(
            [str(kubeutil.KUBECTL), f"--kubeconfig={kubeconfig}", *args],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip

    kubectl("create", "configmap", "kept", "--from-literal=answer=42")
    stopped = _tool("stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert teardown.leftovers(scratch) == []
    assert "stopped; its data is kept" in _tool("status").stdout
    _up_scratch()
    assert json.loads(kubectl("get", "configmap", "kept", "-o", "json"))["data"] == {"answer": "42"}


def test_a_second_bring_up_of_a_running_cluster_is_a_no_op(scratch: config.Paths) -> None:
    _up_scratch()
    result = _tool("up")
    assert result.returncode == 0
    assert "already running; nothing to do" in result.stdout


def _kill(paths: config.Paths) -> None:
    """What a power cut or `kill -9` of the whole session does: every process of the cluster
    dies at once; its bridge, rules and mounts stay."""
    for record in kcluster.supervisor(paths).records():
        if record.alive():
            os.kill(record.pid, signal.SIGKILL)
    for pid, _name in teardown.pod_processes(paths):
        os.kill(pid, signal.SIGKILL)
    kubeutil.wait_for("the cluster's processes are gone", lambda: not teardown.alive(paths) or None,
                      timeout=30, every=0.2)  # fmt: skip
    assert not kcluster.running(paths)


def test_bring_up_after_a_killed_run_cleans_what_it_left_and_starts(
    scratch: config.Paths,
) -> None:
    _up_scratch()
    _kill(scratch)
    assert network.bridge_exists()

    result = _tool("up")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    cleanup = next(line for line in lines if "clean up what a previous run left:" in line)
    assert "leftovers" in cleanup, cleanup
    assert kcluster.running(scratch)
    assert network.guard_installed()


def test_a_bring_up_while_another_holds_the_lock_says_so_and_does_nothing(
    scratch: config.Paths,
) -> None:
    scratch.run.mkdir(parents=True, exist_ok=True)
    with scratch.lock.open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            result = _tool("up")
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
    assert result.returncode == 0
    assert "in progress" in result.stdout


def test_a_bring_up_beside_a_running_kfn_cluster_refuses_and_names_it(
    scratch: config.Paths,
) -> None:
    _up_scratch()
    result = _tool("up", scratch=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"the kfn cluster of {SCRATCH_STATE} runs here" in result.stderr
    assert kcluster.running(scratch)


def test_the_developers_cluster_comes_back_with_its_functions_beside_a_killed_cluster(
    scratch: config.Paths,
) -> None:
    # The scratch cluster is killed, not stopped: its bridge and chains stay, and the
    # developer's bring-up must stop it by its own record rather than refuse for ever.
    _up_scratch()
    _kill(scratch)
    assert network.bridge_exists()
    t0 = time.monotonic()
    printed = _resume_developer_cluster()
    print(f"the developer's cluster resumed with kfn ready in {time.monotonic() - t0:.1f}s")
    assert f"the kfn cluster of {SCRATCH_STATE} was killed" in printed
    assert not teardown.leftovers(scratch), teardown.leftovers(scratch)
    listed = kubeutil.kubectl("get", "fn", "-A")
    assert "sentinel" in listed
    answer = kubeutil.wait_for("the sentinel answers", _invoke_sentinel, timeout=180, every=1)
    assert answer == "still here"
