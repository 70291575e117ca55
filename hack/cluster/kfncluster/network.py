"""The node's network: the pod bridge, the egress guard, and their removal.

Pods must never send a packet off this machine. Three independent guards hold
that line, installed before any pod can start:

1. The egress guard: a chain in the ``mangle`` table's FORWARD hook (which runs
   before every ``filter`` rule, including those kube-proxy prepends) that
   accepts forwarding only between the pod bridge and itself and drops every
   other forwarded packet that enters or leaves the bridge — for IPv4 and IPv6.
2. Pods get no default route: the CNI config routes only the pod and service
   networks through the bridge.
3. No masquerade: the bridge plugin runs with ``ipMasq: false``, and the only
   resolver pods are given is the cluster DNS, which has no upstream.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import pathlib
import shlex
import subprocess

from kfncluster import config, host


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Commands of bring-up: the host packages are installed, a missing tool is an error."""
    return host.run(argv, check=check)


def _ok(*argv: str) -> bool:
    """Queries and clean-up: a missing tool means nothing is there."""
    return host.ok(*argv)


@dataclasses.dataclass(frozen=True)
class GuardRule:
    """One rule of the egress guard, as ``iptables -A`` arguments."""

    args: tuple[str, ...]


def guard_rules(bridge: str = config.BRIDGE) -> tuple[GuardRule, ...]:
    """The egress guard, in order (pure, so a test can compare it with the kernel's)."""
    return (
        GuardRule(("-i", bridge, "-o", bridge, "-j", "RETURN")),
        GuardRule(("-i", bridge, "-j", "DROP")),
        GuardRule(("-o", bridge, "-j", "DROP")),
    )


def install_guard() -> None:
    """Creates the guard chain in mangle/FORWARD for IPv4 and IPv6 (idempotent)."""
    for tool in ("iptables", "ip6tables"):
        chain = config.SAFETY_CHAIN
        if not _ok(tool, "-w", "-t", "mangle", "-L", chain, "-n"):
            _run(tool, "-w", "-t", "mangle", "-N", chain)
        _run(tool, "-w", "-t", "mangle", "-F", chain)
        for rule in guard_rules():
            _run(
                tool, "-w", "-t", "mangle", "-A", chain, *rule.args,
                "-m", "comment", "--comment", "kfn: pods never reach off the machine",
            )  # fmt: skip
        if not _ok(tool, "-w", "-t", "mangle", "-C", "FORWARD", "-j", chain):
            _run(tool, "-w", "-t", "mangle", "-I", "FORWARD", "1", "-j", chain)


def guard_installed() -> bool:
    """True if both guard chains hold exactly the expected rules and are hooked first."""
    for tool in ("iptables", "ip6tables"):
        listing = host.output(tool, "-w", "-t", "mangle", "-S", "FORWARD").splitlines()
        hooks = [line for line in listing if line.startswith("-A FORWARD")]
        if not hooks or hooks[0] != f"-A FORWARD -j {config.SAFETY_CHAIN}":
            return False
        chain = host.output(tool, "-w", "-t", "mangle", "-S", config.SAFETY_CHAIN)
        rules = [shlex.split(ln)[2:] for ln in chain.splitlines() if ln.startswith("-A ")]
        if [_without_comment(r) for r in rules] != [list(r.args) for r in guard_rules()]:
            return False
    return True


def _without_comment(tokens: list[str]) -> list[str]:
    out, skip = [], 0
    for i, tok in enumerate(tokens):
        if skip:
            skip -= 1
        elif tok == "-m" and tokens[i + 1 : i + 2] == ["comment"]:
            skip = 3  # -m comment --comment TEXT
        else:
            out.append(tok)
    return out


def remove_guard() -> None:
    for tool in ("iptables", "ip6tables"):
        while _ok(tool, "-w", "-t", "mangle", "-D", "FORWARD", "-j", config.SAFETY_CHAIN):
            pass
        if _ok(tool, "-w", "-t", "mangle", "-L", config.SAFETY_CHAIN, "-n"):
            _ok(tool, "-w", "-t", "mangle", "-F", config.SAFETY_CHAIN)
            _ok(tool, "-w", "-t", "mangle", "-X", config.SAFETY_CHAIN)


def guard_present() -> bool:
    """Whether the guard chain exists at all (for finding leftovers)."""
    return _ok("iptables", "-w", "-t", "mangle", "-L", config.SAFETY_CHAIN, "-n")


def ensure_bridge() -> None:
    """Creates the pod bridge with the node's address before anything listens on it."""
    if not _ok("ip", "link", "show", config.BRIDGE):
        _run("ip", "link", "add", config.BRIDGE, "type", "bridge")
    prefix = ipaddress.ip_network(config.POD_CIDR).prefixlen
    addr = f"{config.NODE_IP}/{prefix}"
    if addr not in _run("ip", "-4", "addr", "show", "dev", config.BRIDGE).stdout:
        _run("ip", "addr", "add", addr, "dev", config.BRIDGE)
    _run("ip", "link", "set", config.BRIDGE, "up")


def set_sysctls() -> None:
    """Forwarding is needed between pods and services; bridged traffic must see iptables."""
    for key, value in (
        ("net/ipv4/ip_forward", "1"),
        ("net/bridge/bridge-nf-call-iptables", "1"),
        ("net/bridge/bridge-nf-call-ip6tables", "1"),
    ):
        path = pathlib.Path("/proc/sys") / key
        if path.exists():
            path.write_text(value)


def cni_config(paths: config.Paths) -> dict[str, object]:
    """The CNI network: a bridge with host-local addresses and no default route."""
    return {
        "cniVersion": "1.0.0",
        "name": "kfn",
        "plugins": [
            {
                "type": "bridge",
                "bridge": config.BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": config.POD_CIDR, "gateway": config.NODE_IP}]],
                    "routes": [{"dst": config.SERVICE_CIDR}],
                    "dataDir": str(paths.cni_ipam_dir),
                },
            }
        ],
    }


def write_cni_config(paths: config.Paths) -> None:
    paths.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    (paths.cni_conf_dir / "10-kfn.conflist").write_text(json.dumps(cni_config(paths), indent=2))


def remove_bridge() -> None:
    if _ok("ip", "link", "show", config.BRIDGE):
        _ok("ip", "link", "delete", config.BRIDGE)


def bridge_exists() -> bool:
    return _ok("ip", "link", "show", config.BRIDGE)
