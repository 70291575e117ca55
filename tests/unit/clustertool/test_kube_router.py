"""kube-router enforces NetworkPolicy with its firewall alone, and owns only what it makes."""

from __future__ import annotations

import pathlib

import pytest

from kfncluster import build, components, config, hostdeps, kuberouter, owned, pki, procs

#: What ``iptables -t filter -S`` lists with our kube-router running: a pod's chain jumping to
#: its policy's, a policy no pod here is selected by, a chain of a policy that was there before
#: bring-up, and two foreign chains (one named like kube-router's, one of Docker's).
FILTER = """\
-P INPUT ACCEPT
-P FORWARD ACCEPT
-P OUTPUT ACCEPT
-N DOCKER-USER
-N KUBE-NWPLCY-DEFAULT
-N KUBE-NWPLCY-AAAAAAAAAAAAAAAA
-N KUBE-NWPLCY-NOPODSELECTED0000
-N KUBE-NWPLCY-THEREBEFORE000000
-N KUBE-POD-FW-BBBBBBBBBBBBBBBB
-N KUBE-ROUTER-FORWARD
-N KUBE-ROUTER-FOREIGN
-N KUBE-ROUTER-INPUT
-N KUBE-ROUTER-OUTPUT
-A INPUT -m comment --comment "kube-router netpol - 4IA2OSFRMVNDXBVV" -j KUBE-ROUTER-INPUT
-A FORWARD -m comment --comment "kube-router netpol - TEMCG2JMHZYE7H7T" -j KUBE-ROUTER-FORWARD
-A FORWARD -j DOCKER-USER
-A OUTPUT -m comment --comment "kube-router netpol - VEAAIY32XVBHCSCA" -j KUBE-ROUTER-OUTPUT
-A KUBE-NWPLCY-DEFAULT -m comment --comment "rule to mark traffic matching a network policy" -j MARK --set-xmark 0x10000/0x10000
-A KUBE-POD-FW-BBBBBBBBBBBBBBBB -j KUBE-NWPLCY-AAAAAAAAAAAAAAAA
-A KUBE-POD-FW-BBBBBBBBBBBBBBBB -m mark ! --mark 0x10000/0x10000 -j REJECT --reject-with icmp-port-unreachable
-A KUBE-ROUTER-FORWARD -d 10.244.0.7/32 -j KUBE-POD-FW-BBBBBBBBBBBBBBBB
-A KUBE-ROUTER-FORWARD -m mark --mark 0x20000/0x20000 -j ACCEPT
"""  # noqa: E501 - iptables' own lines

SS = """\
tcp   LISTEN 0      4096      10.244.0.1:6443   0.0.0.0:* users:(("kube-apiserver",pid=12045,fd=3))
tcp   LISTEN 0      4096         0.0.0.0:179    0.0.0.0:* users:(("kube-router",pid=4242,fd=9))
tcp   LISTEN 0      4096       127.0.0.1:50051  0.0.0.0:* users:(("gobgpd",pid=777,fd=4))
tcp   LISTEN 0      4096               *:20244        *:* users:(("kube-router",pid=4242,fd=7))
udp   UNCONN 0      0          127.0.0.1:323    0.0.0.0:* users:(("chronyd",pid=99,fd=5))
tcp   LISTEN 0      128          0.0.0.0:2024   0.0.0.0:*
"""


def _paths(tmp_path: pathlib.Path) -> config.Paths:
    return config.Paths(state=tmp_path / "state", run=tmp_path / "run", cache=tmp_path / "cache")


# --- what runs --------------------------------------------------------------------------


def test_only_the_firewall_runs_with_the_router_proxy_cni_and_every_server_off(
    tmp_path: pathlib.Path,
) -> None:
    paths = _paths(tmp_path)
    bins = {name: tmp_path / name for name in build.binaries(paths)}
    argv = components.argv("kube-router", paths, bins)
    assert argv[0] == str(tmp_path / "kube-router")
    flags = dict(a.split("=", 1) for a in argv[1:])
    assert len(flags) == len(argv) - 1, "no flag is given twice"
    assert flags["--run-firewall"] == "true"
    for off in ("--run-router", "--run-service-proxy", "--run-loadbalancer", "--enable-cni"):
        assert flags[off] == "false", off
    for port in ("--health-port", "--metrics-port"):
        assert flags[port] == "0", port
    assert flags["--enable-pprof"] == "false"
    assert flags["--hostname-override"] == config.NODE_NAME
    assert flags["--service-cluster-ip-range"] == config.SERVICE_CIDR
    assert flags["--kubeconfig"].endswith("/config/kube-router.kubeconfig")


def test_it_starts_once_the_node_is_ready_and_a_running_cluster_can_gain_it() -> None:
    order = components.ORDER
    assert order.index("kube-router") > order.index("kube-proxy")
    assert "kube-router" in components.AFTER_NODE_READY
    assert "kube-router" in components.EXTRAS


def test_its_role_reads_what_its_informers_watch_and_writes_nothing() -> None:
    role, binding = kuberouter.rbac_objects()
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    watched = {
        ("", "pods"),
        ("", "namespaces"),
        ("", "nodes"),
        ("", "services"),
        ("", "endpoints"),
        ("networking.k8s.io", "networkpolicies"),
        ("discovery.k8s.io", "endpointslices"),
    }
    assert granted == {(g, r, v) for g, r in watched for v in ("list", "watch")} | {
        ("", "nodes", "get")
    }
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": kuberouter.USER}
    ]


def test_its_client_certificate_names_the_user_its_role_is_bound_to() -> None:
    (client,) = (c for c in pki.CLIENTS if c.stem == "kube-router")
    assert client.common_name == kuberouter.USER
    assert client.groups == ()


def test_bring_up_installs_ipset_with_the_other_host_packages(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "ipset" in hostdeps.REQUIRED
    monkeypatch.setenv("PATH", str(tmp_path))
    assert hostdeps.missing(("ipset",)) == (["ipset"], [])


# --- what it makes on the host ------------------------------------------------------------


def test_its_chains_are_ours_even_where_no_pod_jumps_to_them() -> None:
    found = owned.owned_chains({"iptables/filter": FILTER}, {})["iptables/filter"]
    assert sorted(found) == [
        "KUBE-NWPLCY-AAAAAAAAAAAAAAAA",
        "KUBE-NWPLCY-DEFAULT",
        "KUBE-NWPLCY-NOPODSELECTED0000",
        "KUBE-NWPLCY-THEREBEFORE000000",
        "KUBE-POD-FW-BBBBBBBBBBBBBBBB",
        "KUBE-ROUTER-FORWARD",
        "KUBE-ROUTER-INPUT",
        "KUBE-ROUTER-OUTPUT",
    ]


def test_a_chain_merely_named_like_kube_routers_or_there_before_bring_up_is_not_ours() -> None:
    before = {"iptables/filter": ["KUBE-NWPLCY-THEREBEFORE000000"]}
    found = owned.owned_chains({"iptables/filter": FILTER}, before)["iptables/filter"]
    assert "KUBE-NWPLCY-THEREBEFORE000000" not in found
    assert "KUBE-ROUTER-FOREIGN" not in found
    assert "DOCKER-USER" not in found


def test_removal_unhooks_its_chains_from_the_built_in_ones_then_flushes_and_deletes_them() -> None:
    listings = {"iptables/filter": FILTER}
    commands = owned.removal_commands(listings, owned.owned_chains(listings, {}))
    deletes = [c for c in commands if c[4] == "-D"]
    assert sorted(c[5] for c in deletes) == ["FORWARD", "INPUT", "OUTPUT"]
    assert not any("DOCKER-USER" in c for c in commands)
    assert not any("KUBE-ROUTER-FOREIGN" in c for c in commands)
    kinds = [c[4] for c in commands]
    assert kinds == sorted(kinds, key=["-D", "-F", "-X"].index)


def test_another_kube_routers_chains_or_sets_before_bring_up_are_a_conflict() -> None:
    before = {"iptables/filter": ["KUBE-ROUTER-INPUT", "KUBE-POD-FW-X", "KUBE-FIREWALL"]}
    assert owned.conflicting(before) == [
        "KUBE-POD-FW-X (iptables/filter)",
        "KUBE-ROUTER-INPUT (iptables/filter)",
    ]
    assert owned.conflicting_sets(["KUBE-DST-ABC", "docker-set", "inet6:KUBE-SRC-X"]) == [
        "KUBE-DST-ABC",
        "inet6:KUBE-SRC-X",
    ]


def test_its_sets_made_since_bring_up_are_ours_and_no_other() -> None:
    present = [
        "KUBE-SRC-7QCDOJ3LSRVPJWVR",
        "KUBE-DST-WH2VZ5ZUEBXX4LSL",
        "KUBE-DST-THEREBEFORE",
        "TMP-ABCDEFGHIJKLMNOP",
        "TMP-build-cache",
        "kfn-foreign-test",
    ]
    assert owned.owned_sets(present, ["KUBE-DST-THEREBEFORE"]) == [
        "KUBE-DST-WH2VZ5ZUEBXX4LSL",
        "KUBE-SRC-7QCDOJ3LSRVPJWVR",
        "TMP-ABCDEFGHIJKLMNOP",
    ]


def test_without_a_record_of_the_sets_before_no_set_is_ours() -> None:
    assert owned.owned_sets(["KUBE-SRC-A"], None) == []
    old = owned.Record.parse('{"chains_before": {}}')
    assert old.sets_before is None
    record = owned.Record(chains_before={}, sets_before=["KUBE-SRC-A"])
    assert owned.Record.parse(record.dump()) == record


def test_a_record_made_before_kube_router_ran_gains_the_sets_present_once(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _paths(tmp_path)
    paths.state.mkdir(parents=True)
    paths.owned.write_text('{"chains_before": {}}')
    present = ["KUBE-SRC-FOREIGN"]
    monkeypatch.setattr(kuberouter, "sets", lambda: list(present))
    owned.note_sets(paths)
    present.append("KUBE-DST-OURS")
    owned.note_sets(paths)  # a second start does not take ours for someone else's
    assert owned.our_sets(paths) == ["KUBE-DST-OURS"]


# --- checks after it starts -----------------------------------------------------------------


def test_it_is_ready_once_all_three_built_in_chains_jump_to_its_own() -> None:
    hooks = {
        chain: "\n".join(ln for ln in FILTER.splitlines() if ln.startswith(f"-A {chain} "))
        for chain in ("INPUT", "FORWARD", "OUTPUT")
    }
    assert kuberouter.hooked(hooks)
    assert not kuberouter.hooked({**hooks, "OUTPUT": "-P OUTPUT ACCEPT"})


def test_a_bgp_or_grpc_port_whoever_holds_it_and_any_socket_of_kube_router_are_refused() -> None:
    found = kuberouter.forbidden(kuberouter.listeners(SS), pid=4242)
    assert [str(s) for s in found] == [
        "tcp 0.0.0.0:179 (kube-router pid 4242)",
        "tcp 127.0.0.1:50051 (gobgpd pid 777)",
        "tcp *:20244 (kube-router pid 4242)",
    ]
    assert kuberouter.forbidden(kuberouter.listeners(SS), pid=1) == found[:2]


def test_only_kube_proxys_masquerade_is_allowed() -> None:
    nat = """\
-N KUBE-POSTROUTING
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A POSTROUTING -s 10.244.0.0/16 ! -o kfn0 -j MASQUERADE
"""  # noqa: E501 - iptables' own lines
    assert kuberouter.masquerades(nat) == [
        "-A POSTROUTING -s 10.244.0.0/16 ! -o kfn0 -j MASQUERADE"
    ]


def _fake_kube_router(tmp_path: pathlib.Path, script: str) -> dict[str, pathlib.Path]:
    binary = tmp_path / "kube-router"
    binary.write_text(f"#!/bin/sh\n{script}\n")
    binary.chmod(0o755)
    return {"kube-router": binary}


def test_a_kube_router_that_exits_is_named_with_its_log(tmp_path: pathlib.Path) -> None:
    paths = _paths(tmp_path)
    sup = procs.Supervisor(paths.pids, paths.logs)
    bins = _fake_kube_router(tmp_path, "echo 'failed to run kube-router: forbidden' >&2; exit 1")
    applied: list[str] = []
    with pytest.raises(
        procs.ComponentError, match=r"^kube-router: exited( at once)? — read .*kube-router\.log"
    ):
        kuberouter.start(sup, paths, bins, lambda *a, **kw: applied.append(kw["input"]) or "")
    assert "kind: ClusterRole" in applied[0]
    assert "forbidden" in sup.log_path("kube-router").read_text()


def test_a_kube_router_that_listens_is_stopped_and_named_with_its_log(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _paths(tmp_path)
    sup = procs.Supervisor(paths.pids, paths.logs)
    bins = _fake_kube_router(tmp_path, f"echo '{kuberouter.STARTED}'\nexec sleep 60")
    hooks = {chain: f"-A {chain} -j {target}" for chain, target in kuberouter.HOOKS.items()}
    monkeypatch.setattr(kuberouter, "_filter_listings", lambda: hooks)
    monkeypatch.setattr(kuberouter, "problems", lambda pid: [f"listens on tcp 0.0.0.0:179 ({pid})"])
    with pytest.raises(
        procs.ComponentError,
        match=r"^kube-router: stopped, since it listens on tcp 0\.0\.0\.0:179 .* — read .*\.log",
    ):
        kuberouter.start(sup, paths, bins, lambda *a, **kw: "")
    assert sup.record("kube-router") is None
