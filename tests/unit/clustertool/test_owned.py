"""Tear-down removes the iptables chains the cluster made, and no chain of anyone else."""

from __future__ import annotations

import pathlib

from kfncluster import config, owned

#: What ``iptables -t nat -S`` lists with our kube-proxy running, beside a foreign chain named
#: like one of kube-proxy's that nothing jumps to, and a Docker chain that was there before.
NAT = """\
-P PREROUTING ACCEPT
-P INPUT ACCEPT
-P OUTPUT ACCEPT
-P POSTROUTING ACCEPT
-N DOCKER
-N KUBE-MARK-MASQ
-N KUBE-NODEPORTS
-N KUBE-POSTROUTING
-N KUBE-PROXY-CANARY
-N KUBE-SEP-ABCDEFGHIJKLMNOP
-N KUBE-SERVICES
-N KUBE-SVC-FOREIGNCHAIN0000
-N KUBE-SVC-QRSTUVWXYZ012345
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-SEP-ABCDEFGHIJKLMNOP -s 10.244.0.5/32 -j KUBE-MARK-MASQ
-A KUBE-SEP-ABCDEFGHIJKLMNOP -p tcp -m tcp -j DNAT --to-destination 10.244.0.5:53
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 53 -j KUBE-SVC-QRSTUVWXYZ012345
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-QRSTUVWXYZ012345 -j KUBE-SEP-ABCDEFGHIJKLMNOP
"""


def test_the_chains_hanging_off_the_built_in_chains_and_the_canary_are_ours() -> None:
    found = owned.owned_chains({"iptables/nat": NAT}, {})
    assert sorted(found["iptables/nat"]) == [
        "KUBE-MARK-MASQ",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-PROXY-CANARY",
        "KUBE-SEP-ABCDEFGHIJKLMNOP",
        "KUBE-SERVICES",
        "KUBE-SVC-QRSTUVWXYZ012345",
    ]


def test_a_foreign_chain_named_like_kube_proxys_that_nothing_jumps_to_is_not_ours() -> None:
    found = owned.owned_chains({"iptables/nat": NAT}, {})
    assert "KUBE-SVC-FOREIGNCHAIN0000" not in found["iptables/nat"]


def test_a_chain_that_was_there_before_bring_up_is_never_ours_nor_followed() -> None:
    before = {"iptables/nat": ["KUBE-SVC-QRSTUVWXYZ012345"]}
    found = owned.owned_chains({"iptables/nat": NAT}, before)["iptables/nat"]
    assert "KUBE-SVC-QRSTUVWXYZ012345" not in found
    # Reached only through the chain that was there before: not ours either.
    assert "KUBE-SEP-ABCDEFGHIJKLMNOP" not in found


def test_chains_without_our_prefixes_are_never_touched() -> None:
    found = owned.owned_chains({"iptables/nat": NAT}, {})
    assert "DOCKER" not in found["iptables/nat"]


def test_removal_deletes_the_jumps_into_our_chains_then_flushes_then_deletes_them() -> None:
    listings = {"iptables/nat": NAT}
    commands = owned.removal_commands(listings, owned.owned_chains(listings, {}))
    deletes = [c for c in commands if c[4] == "-D"]
    assert {c[5] for c in deletes} == {"PREROUTING", "OUTPUT", "POSTROUTING"}
    assert not any("DOCKER" in c for c in deletes)
    kinds = [c[4] for c in commands]
    assert kinds == sorted(kinds, key=["-D", "-F", "-X"].index)
    removed = {c[5] for c in commands if c[4] == "-X"}
    assert "KUBE-SVC-FOREIGNCHAIN0000" not in removed
    assert all(c[:4] == ("iptables", "-w", "-t", "nat") for c in commands)


def test_another_kube_proxys_chains_before_bring_up_are_a_conflict() -> None:
    before = {"iptables/nat": ["KUBE-SERVICES"], "iptables/filter": ["KUBE-FOO"]}
    assert owned.conflicting(before) == ["KUBE-SERVICES (iptables/nat)"]


def test_a_nat_chain_named_like_the_service_chains_kube_proxy_sweeps_is_a_conflict() -> None:
    before = {
        "iptables/nat": ["KUBE-SVC-FOREIGNCHAIN0000", "KUBE-SEP-X", "KUBE-MARK-MASQ"],
        "iptables/mangle": ["KUBE-SVC-FOREIGNCHAIN0000"],
        "ip6tables/filter": ["KUBE-FOO"],
    }
    assert owned.conflicting(before) == [
        "KUBE-SEP-X (iptables/nat)",
        "KUBE-SVC-FOREIGNCHAIN0000 (iptables/nat)",
    ]


def test_the_record_of_what_was_there_round_trips() -> None:
    record = owned.Record(chains_before={"ip6tables/filter": ["KUBE-A", "CNI-B"]})
    assert owned.Record.parse(record.dump()) == record


def test_the_bridge_claim_names_the_cluster_that_made_it(tmp_path: pathlib.Path) -> None:
    at = tmp_path / "kfn0.claim"
    mine = config.Paths(state=tmp_path / "state", run=tmp_path / "run", cache=tmp_path / "c")
    owned.claim(mine, at)
    other = owned.claimant(config.Paths(state=tmp_path / "x", run=tmp_path / "y"), at)
    assert other is not None
    assert (other.state, other.run) == (mine.state, mine.run)


def test_only_the_claimant_releases_the_claim(tmp_path: pathlib.Path) -> None:
    at = tmp_path / "kfn0.claim"
    mine = config.Paths(state=tmp_path / "state", run=tmp_path / "run")
    theirs = config.Paths(state=tmp_path / "theirs", run=tmp_path / "run2")
    owned.claim(theirs, at)
    owned.release(mine, at)
    assert at.exists()
    owned.release(theirs, at)
    assert not at.exists()


def test_a_missing_or_unreadable_claim_names_no_cluster(tmp_path: pathlib.Path) -> None:
    at = tmp_path / "kfn0.claim"
    like = config.Paths(state=tmp_path / "s", run=tmp_path / "r")
    assert owned.claimant(like, at) is None
    at.write_text("not json")
    assert owned.claimant(like, at) is None
    at.write_text('{"state": "/x"}')
    assert owned.claimant(like, at) is None
