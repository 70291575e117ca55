"""The local cluster's shape, read without starting it: safety first."""

from __future__ import annotations

import ipaddress
import pathlib

import pytest
import yaml

from kfncluster import components, config, host, network, procs


def test_the_egress_guard_lets_pods_talk_only_to_pods_and_drops_the_rest() -> None:
    rules = [r.args for r in network.guard_rules("br")]
    assert rules == [
        ("-i", "br", "-o", "br", "-j", "RETURN"),
        ("-i", "br", "-j", "DROP"),
        ("-o", "br", "-j", "DROP"),
    ]


def test_pods_get_no_default_route_and_no_masquerade() -> None:
    conf = network.cni_config(config.Paths(state=pathlib.Path("/x")))
    (bridge,) = conf["plugins"]  # type: ignore[misc]
    assert bridge["ipMasq"] is False
    routes = [r["dst"] for r in bridge["ipam"]["routes"]]
    assert routes == [config.SERVICE_CIDR]
    assert "0.0.0.0/0" not in routes


def test_the_pod_resolver_is_only_the_cluster_dns(tmp_path: pathlib.Path) -> None:
    paths = config.Paths(state=tmp_path)
    components.write_configs(paths)
    assert (paths.config / "pod-resolv.conf").read_text() == f"nameserver {config.DNS_SERVICE_IP}\n"
    kubelet = yaml.safe_load((paths.config / "kubelet.yaml").read_text())
    assert kubelet["resolvConf"] == str(paths.config / "pod-resolv.conf")
    assert kubelet["clusterDNS"] == [config.DNS_SERVICE_IP]


def test_every_pod_namespace_enforces_baseline_pod_security_so_none_joins_the_host_network() -> (
    None
):
    admission = yaml.safe_load(components.admission_config())
    defaults = admission["plugins"][0]["configuration"]["defaults"]
    exemptions = admission["plugins"][0]["configuration"]["exemptions"]
    assert defaults["enforce"] == "baseline"
    assert exemptions == {"usernames": [], "runtimeClasses": [], "namespaces": []}


def test_addresses_fit_together() -> None:
    pods = ipaddress.ip_network(config.POD_CIDR)
    assert ipaddress.ip_address(config.NODE_IP) in pods
    assert pods.subnet_of(ipaddress.ip_network(config.CLUSTER_CIDR))  # type: ignore[arg-type]
    services = ipaddress.ip_network(config.SERVICE_CIDR)
    assert ipaddress.ip_address(config.DNS_SERVICE_IP) in services
    assert ipaddress.ip_address(config.KUBERNETES_SERVICE_IP) in services
    assert not pods.overlaps(services)


def test_the_api_server_listens_on_the_node_address_not_on_every_interface(
    tmp_path: pathlib.Path,
) -> None:
    names = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
    bins = {name: tmp_path / name for name in (*names, "etcd")}
    argv = components.argv("kube-apiserver", config.Paths(state=tmp_path), bins)
    assert f"--bind-address={config.NODE_IP}" in argv
    etcd = components.argv("etcd", config.Paths(state=tmp_path), bins)
    assert all("0.0.0.0" not in a for a in etcd)  # noqa: S104


def test_a_recycled_pid_is_not_taken_for_ours() -> None:
    import os  # noqa: PLC0415

    me = procs.start_time_of(os.getpid())
    assert me is not None
    assert procs.Record("x", os.getpid(), me).alive()
    assert not procs.Record("x", os.getpid(), me + 1).alive()


def test_a_failing_command_names_the_step_and_the_log_holding_its_output(
    tmp_path: pathlib.Path,
) -> None:
    log = tmp_path / "logs" / "step.log"
    host.run_logged(["sh", "-c", "echo fine"], log, "a good step")
    with pytest.raises(RuntimeError, match=r"a bad step failed \(exit 3\) — read .*step\.log"):
        host.run_logged(["sh", "-c", "echo broken >&2; exit 3"], log, "a bad step")
    text = log.read_text()
    assert "=== sh -c echo fine\nfine\n" in text
    assert "broken" in text
