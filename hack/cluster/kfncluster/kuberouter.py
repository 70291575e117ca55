"""NetworkPolicy on the node: kube-router's network-policy controller, and nothing else of it.

The bridge CNI enforces no NetworkPolicy. kube-router's firewall controller does, beside an
iptables kube-proxy and a bridge CNI, with rules in the filter table and ipsets of pod
addresses; it runs here as a supervised host process like the rest of the cluster, started
once the node is Ready (it reads its own Node object at start).

Only the firewall runs. ``--run-router`` and ``--run-service-proxy`` default to true in
kube-router: the router would start GoBGP (port 179) with an unauthenticated gRPC admin port
(50051) and add routes, the proxy would take Services over from kube-proxy. Both are off on
the command line, as are its CNI, health, metrics and pprof servers, and bring-up checks after
the start that it listens on nothing and that no BGP or gRPC port is open.

What it makes on the host carries names of its own: the chains ``KUBE-ROUTER-INPUT``,
``-FORWARD`` and ``-OUTPUT`` (hooked first in the filter table's built-in chains),
``KUBE-NWPLCY-*`` (one a policy) and ``KUBE-POD-FW-*`` (one a pod), and the ipsets
``KUBE-SRC-*`` and ``KUBE-DST-*`` (plus ``TMP-<16 base32>``, which lives only during a swap).
A running kube-router deletes every ``KUBE-NWPLCY-``/``KUBE-POD-FW-`` chain and
``KUBE-SRC-``/``KUBE-DST-`` set it did not make, so bring-up refuses while another one's are
there, and tear-down removes those its record (:mod:`kfncluster.owned`) does not list as
present before bring-up.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import yaml

from kfncluster import config, host, network, procs

NAME = "kube-router"
#: The user its client certificate names (``pki.CLIENTS``), bound to :data:`ROLE`.
USER = "kfn:kube-router"
ROLE = "kfn:kube-router"

#: The built-in filter chains it hooks, and the chain each jumps to.
HOOKS = {
    "INPUT": "KUBE-ROUTER-INPUT",
    "FORWARD": "KUBE-ROUTER-FORWARD",
    "OUTPUT": "KUBE-ROUTER-OUTPUT",
}
#: The chains its firewall makes, one a policy and one a pod, beside those of :data:`HOOKS`
#: (all in the filter table).
CHAIN_PREFIXES = ("KUBE-NWPLCY-", "KUBE-POD-FW-")
#: The ipsets of its policies; IPv6 sets would carry ``inet6:`` in front.
SET_PREFIXES = ("KUBE-SRC-", "KUBE-DST-")
_TMP_SET = re.compile(r"TMP-[A-Z2-7]{16}")
#: GoBGP's port and its gRPC admin port: open only if the router ran.
FORBIDDEN_PORTS = (179, 50051)
#: Logged by the policy controller as it starts, after the router and the proxy would have.
STARTED = "Starting network policy controller"


def argv(paths: config.Paths, bins: Mapping[str, pathlib.Path]) -> list[str]:
    """The firewall alone: every other controller and server of kube-router off."""
    return [
        str(bins[NAME]),
        f"--kubeconfig={paths.config / 'kube-router.kubeconfig'}",
        f"--hostname-override={config.NODE_NAME}",
        "--run-firewall=true",
        "--run-router=false",
        "--run-service-proxy=false",
        "--run-loadbalancer=false",
        "--enable-cni=false",
        "--enable-ipv4=true",
        "--enable-ipv6=false",
        f"--service-cluster-ip-range={config.SERVICE_CIDR}",
        "--service-node-port-range=30000-32767",
        "--health-port=0",
        "--metrics-port=0",
        "--enable-pprof=false",
        "--v=0",
    ]


def rbac_objects() -> list[dict[str, Any]]:
    """What its informers list and watch, and the Node it reads at start; nothing it writes."""
    watch = ["list", "watch"]
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": ROLE},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["pods", "namespaces", "services", "endpoints"],
                    "verbs": watch,
                },
                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", *watch]},
                {
                    "apiGroups": ["networking.k8s.io"],
                    "resources": ["networkpolicies"],
                    "verbs": watch,
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": watch,
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": ROLE},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": ROLE,
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
        },
    ]


def apply_rbac(kubectl: Callable[..., str]) -> None:
    docs = "\n---\n".join(yaml.safe_dump(o, sort_keys=False) for o in rbac_objects())
    kubectl("apply", "--server-side", "--field-manager=kfn-cluster", "-f", "-", input=docs)


# --- what it makes (pure) ----------------------------------------------------------------


def is_its_chain(name: str) -> bool:
    return name in HOOKS.values() or name.startswith(CHAIN_PREFIXES)


def is_its_set(name: str) -> bool:
    bare = name.removeprefix("inet6:")
    return bare.startswith(SET_PREFIXES) or _TMP_SET.fullmatch(bare) is not None


def hooked(listings: Mapping[str, str]) -> bool:
    """Whether each built-in filter chain jumps to kube-router's (``-S <chain>`` listings)."""
    return all(
        any(
            line.startswith(f"-A {builtin} ") and line.endswith(f"-j {chain}")
            for line in listings.get(builtin, "").splitlines()
        )
        for builtin, chain in HOOKS.items()
    )


@dataclasses.dataclass(frozen=True)
class Listener:
    """A listening socket, from ``ss -Htlnup``."""

    proto: str
    address: str
    port: int
    processes: tuple[tuple[str, int], ...]

    def __str__(self) -> str:
        who = ", ".join(f"{name} pid {pid}" for name, pid in self.processes) or "unknown process"
        return f"{self.proto} {self.address}:{self.port} ({who})"


_PROCESS = re.compile(r'\("([^"]*)",pid=(\d+)')


def listeners(ss: str) -> list[Listener]:
    """The listening sockets of an ``ss -Htlnup`` listing."""
    found = []
    for line in ss.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        address, _, port = fields[4].rpartition(":")
        if not port.isdigit():
            continue
        processes = tuple((n, int(p)) for n, p in _PROCESS.findall(line))
        found.append(Listener(fields[0], address, int(port), processes))
    return found


def forbidden(found: Iterable[Listener], pid: int) -> list[Listener]:
    """Sockets on the BGP and gRPC ports, whoever holds them, and any socket of ``pid``."""
    return [s for s in found if s.port in FORBIDDEN_PORTS or any(p == pid for _, p in s.processes)]


def masquerades(nat: str) -> list[str]:
    """The MASQUERADE rules of a ``-t nat -S`` listing that are not kube-proxy's one."""
    rules = [ln for ln in nat.splitlines() if ln.startswith("-A ") and "-j MASQUERADE" in ln]
    return [rule for rule in rules if not rule.startswith("-A KUBE-POSTROUTING ")]


# --- on the host ----------------------------------------------------------------------------


def _filter_listings() -> dict[str, str]:
    return {b: host.output("iptables", "-w", "-t", "filter", "-S", b) for b in HOOKS}


def sets() -> list[str]:
    """Every ipset on the host (none without the ``ipset`` tool)."""
    return host.output("ipset", "list", "-n").split()


def problems(pid: int) -> list[str]:
    """What would make kube-router's presence unsafe, as checked after it starts."""
    found = [f"listens on {s}" for s in forbidden(listeners(host.output("ss", "-Htlnup")), pid)]
    if not network.guard_installed():
        found.append(f"{config.SAFETY_CHAIN} is no longer first in mangle FORWARD")
    for tool in ("iptables", "ip6tables"):
        nat = host.output(tool, "-w", "-t", "nat", "-S")
        found += [f"masquerades ({tool}): {rule}" for rule in masquerades(nat)]
    return found


def start(
    sup: procs.Supervisor,
    paths: config.Paths,
    bins: Mapping[str, pathlib.Path],
    kubectl: Callable[..., str],
    timeout: float = 90.0,
) -> procs.Record:
    """Grants its role, starts it, waits for its chains, and checks it changed nothing else.

    A failure stops it and names it and its log.
    """
    apply_rbac(kubectl)
    log = sup.log_path(NAME)
    offset = log.stat().st_size if log.exists() else 0

    def ready() -> bool:
        with log.open("rb") as f:
            f.seek(offset)
            started = STARTED.encode() in f.read()
        return started and hooked(_filter_listings())

    record = sup.start(NAME, argv(paths, bins))
    sup.wait_until(record, ready, timeout, what="hook its chains into the filter table")
    found = problems(record.pid)
    if found:
        sup.stop(record)
        raise procs.ComponentError(NAME, log, "stopped, since it " + "; ".join(found))
    return record
