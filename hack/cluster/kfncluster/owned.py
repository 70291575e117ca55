"""What the cluster made on the host, so that tear-down removes exactly that.

The machine may run other things that look like ours: kind's or k3s's kubelet, another
kube-proxy's ``KUBE-*`` chains, network namespaces holding 10.244.0.x addresses (kind's and
flannel's default range). Tear-down must leave them alone, so nothing is found by pattern:

* **Processes** are the ones in the PID files (with their start times), the processes inside
  this cluster's own cgroup root (the kubelet's ``cgroupRoot`` is ``/<run dir name>``), and the
  containerd shims serving this cluster's containerd socket.
* **Network namespaces** are mounted by containerd under its own state directory
  (``netns_mounts_under_state_dir``), never in ``/var/run/netns``.
* **Mounts** are those under the cluster's state and run directories.
* **iptables chains**: bring-up records the ``KUBE-*``/``CNI-*`` chains present before it
  starts anything (``owned.json``); tear-down removes the chains that hang off the built-in
  chains (plus the two canary chains kube-proxy and the kubelet create), following jumps, and
  skips every chain of that record. A foreign chain, even one named like kube-proxy's, is
  neither in the tree our kube-proxy built nor removed. kube-router's chains
  (:mod:`kfncluster.kuberouter`) are ours wherever they hang, when the record does not list
  them: a policy's chain no pod jumps to is still its.
* **ipsets**: kube-router's (``KUBE-SRC-*``, ``KUBE-DST-*``), but for those the record lists as
  there before bring-up; they go after the rules that match on them.
* **The bridge** ``kfn0`` and the egress guard chain are named for kfn. Bring-up claims them
  host-wide (:data:`CLAIM` names the state and run directories of the cluster that made
  them). A second cluster that finds the bridge refuses to start while its claimant runs;
  when the claimant was killed (no process of its records alive), it stops that cluster
  with that cluster's own record, as ``make cluster-stop`` would, and goes on.

The chain logic is pure (:func:`owned_chains` over iptables ``-S`` listings), so it is tested
on tables; the rest reads the host through :mod:`kfncluster.host`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shlex
from collections.abc import Iterable, Mapping

from kfncluster import config, host, kuberouter

PREFIXES = ("KUBE-", "CNI-")
TABLES = ("filter", "nat", "mangle", "raw")
TOOLS = ("iptables", "ip6tables")
#: Chains kube-proxy and the kubelet create without jumping to them (they probe for a flush).
CANARIES = frozenset({"KUBE-PROXY-CANARY", "KUBE-KUBELET-CANARY"})
#: Chains only a kube-proxy makes: when another kube-proxy's are present, ours would share
#: (and on tear-down remove) them, so bring-up refuses.
KUBE_PROXY_ROOTS = frozenset({"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING"})
#: Prefixes of the nat chains kube-proxy (iptables mode) sweeps as stale when no Service of
#: its own has them: a running kube-proxy deletes any such chain it did not make, so bring-up
#: refuses while one is there, and nothing can keep one made while our kube-proxy runs.
SWEPT_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-FW-", "KUBE-EXT-", "KUBE-SEP-")
#: Which kfn cluster made the bridge and the guard. Under /run: both go with a reboot.
CLAIM = pathlib.Path("/run/kfn0.claim")

Listing = Mapping[str, str]
"""``"<tool>/<table>"`` → the output of ``<tool> -w -t <table> -S``."""


@dataclasses.dataclass(frozen=True)
class Record:
    """What was on the host before bring-up made anything.

    ``sets_before`` is None in a record written before the cluster ran kube-router: then no
    ipset is known to be ours until one is noted (:func:`note_sets`).
    """

    chains_before: dict[str, list[str]]
    sets_before: list[str] | None = None

    def dump(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def parse(cls, text: str) -> Record:
        doc = json.loads(text)
        sets = doc.get("sets_before")
        return cls(
            chains_before={k: list(v) for k, v in doc["chains_before"].items()},
            sets_before=None if sets is None else list(sets),
        )


# --- iptables chains (pure) --------------------------------------------------------------


def chains_in(listing: str) -> list[str]:
    """The user chains of one ``-S`` listing that have one of our prefixes."""
    return [
        line.split()[1]
        for line in listing.splitlines()
        if line.startswith("-N ") and line.split()[1].startswith(PREFIXES)
    ]


def _jumps(listing: str) -> list[tuple[str, str]]:
    """(chain, target) for every rule that jumps or goes to another chain."""
    found = []
    for line in listing.splitlines():
        if not line.startswith("-A "):
            continue
        parts = shlex.split(line)
        for flag in ("-j", "-g"):
            if flag in parts[:-1]:
                found.append((parts[1], parts[parts.index(flag) + 1]))
    return found


def owned_chains(listings: Listing, before: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """The chains our cluster made, per ``tool/table``, in removal order (leaves last).

    A chain is ours when it is reachable from a built-in chain (or is a canary), has one of
    our prefixes, and was not there before bring-up.
    """
    result: dict[str, list[str]] = {}
    for key, listing in listings.items():
        existing = set(chains_in(listing))
        skip = set(before.get(key, ()))
        edges: dict[str, list[str]] = {}
        for chain, target in _jumps(listing):
            edges.setdefault(chain, []).append(target)
        builtins = {ln.split()[1] for ln in listing.splitlines() if ln.startswith("-P ")}
        roots = [t for c in sorted(builtins) for t in edges.get(c, [])]
        roots += sorted(CANARIES & existing)
        roots += sorted(c for c in existing if kuberouter.is_its_chain(c))
        reached: list[str] = []
        stack = [r for r in roots if r.startswith(PREFIXES)]
        while stack:
            chain = stack.pop()
            if chain in skip or chain in reached or chain not in existing:
                continue
            reached.append(chain)
            stack.extend(t for t in edges.get(chain, []) if t.startswith(PREFIXES))
        if reached:
            result[key] = reached
    return result


def removal_commands(listings: Listing, owned: Mapping[str, list[str]]) -> list[tuple[str, ...]]:
    """The iptables commands that remove ``owned``: other chains' jumps into them, then a
    flush of each, then their deletion."""
    commands: list[tuple[str, ...]] = []
    for key, chains in owned.items():
        tool, table = key.split("/")
        mine = set(chains)
        for line in listings.get(key, "").splitlines():
            parts = shlex.split(line)
            if parts[:1] != ["-A"] or parts[1] in mine:
                continue
            targets = {parts[i + 1] for i, p in enumerate(parts[:-1]) if p in ("-j", "-g")}
            if targets & mine:
                commands.append((tool, "-w", "-t", table, "-D", *parts[1:]))
        commands += [(tool, "-w", "-t", table, "-F", chain) for chain in chains]
        commands += [(tool, "-w", "-t", table, "-X", chain) for chain in chains]
    return commands


def conflicting(before: Mapping[str, Iterable[str]]) -> list[str]:
    """Chains our kube-proxy or kube-router would share or delete: another kube-proxy's roots,
    nat chains named like the service chains kube-proxy sweeps, and any chain named like
    kube-router's (``"<chain> (<tool>/<table>)"``)."""
    return sorted(
        f"{chain} ({key})"
        for key, chains in before.items()
        for chain in chains
        if chain in KUBE_PROXY_ROOTS
        or (key.endswith("/nat") and chain.startswith(SWEPT_PREFIXES))
        or kuberouter.is_its_chain(chain)
    )


# --- ipsets (pure) -------------------------------------------------------------------------


def owned_sets(present: Iterable[str], before: Iterable[str] | None) -> list[str]:
    """kube-router's ipsets that were not there before bring-up (none without a record)."""
    if before is None:
        return []
    skip = set(before)
    return sorted(s for s in present if kuberouter.is_its_set(s) and s not in skip)


def conflicting_sets(present: Iterable[str]) -> list[str]:
    """ipsets another kube-router made: ours would rewrite or destroy them."""
    return sorted(s for s in present if kuberouter.is_its_set(s))


# --- reading and changing the host --------------------------------------------------------


def listings() -> dict[str, str]:
    """The ``-S`` listing of every table; empty where iptables is not installed."""
    return {
        f"{tool}/{table}": host.output(tool, "-w", "-t", table, "-S")
        for tool in TOOLS
        for table in TABLES
    }


def present_chains() -> dict[str, list[str]]:
    found = {key: chains_in(text) for key, text in listings().items()}
    return {key: chains for key, chains in found.items() if chains}


def record(paths: config.Paths) -> Record:
    """Notes what is on the host now, before bring-up makes anything (kept until tear-down)."""
    made = Record(chains_before=present_chains(), sets_before=kuberouter.sets())
    paths.state.mkdir(parents=True, exist_ok=True)
    paths.owned.write_text(made.dump())
    claim(paths)
    return made


def claim(paths: config.Paths, at: pathlib.Path = CLAIM) -> None:
    """Marks ``paths``' cluster as the maker of the bridge and the guard."""
    at.parent.mkdir(parents=True, exist_ok=True)
    at.write_text(json.dumps({"state": str(paths.state), "run": str(paths.run)}) + "\n")


def claimant(like: config.Paths, at: pathlib.Path = CLAIM) -> config.Paths | None:
    """The cluster that claimed the bridge (with ``like``'s cache), if a claim is there."""
    try:
        doc = json.loads(at.read_text())
        return dataclasses.replace(
            like, state=pathlib.Path(doc["state"]), run=pathlib.Path(doc["run"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def release(paths: config.Paths, at: pathlib.Path = CLAIM) -> None:
    """Drops the claim if it is ``paths``' (after its bridge is gone)."""
    other = claimant(paths, at)
    if other is not None and other.state == paths.state and other.run == paths.run:
        at.unlink(missing_ok=True)


def load(paths: config.Paths) -> Record | None:
    try:
        return Record.parse(paths.owned.read_text())
    except (OSError, ValueError, KeyError):
        return None


def our_chains(paths: config.Paths) -> dict[str, list[str]]:
    """The chains this cluster made that are still there (none without a record)."""
    made = load(paths)
    if made is None:
        return {}
    return owned_chains(listings(), made.chains_before)


def remove_chains(paths: config.Paths) -> None:
    made = load(paths)
    if made is None:
        return
    now = listings()
    for cmd in removal_commands(now, owned_chains(now, made.chains_before)):
        host.run(cmd, check=False, missing_ok=True)


def note_sets(paths: config.Paths) -> None:
    """Adds the ipsets present now to a record made before the cluster ran kube-router, so
    that a kube-router started into a running cluster owns exactly the sets it makes."""
    made = load(paths)
    if made is not None and made.sets_before is None:
        paths.owned.write_text(dataclasses.replace(made, sets_before=kuberouter.sets()).dump())


def our_sets(paths: config.Paths) -> list[str]:
    """The ipsets this cluster's kube-router made that are still there."""
    made = load(paths)
    if made is None:
        return []
    return owned_sets(kuberouter.sets(), made.sets_before)


def remove_sets(paths: config.Paths) -> None:
    """Destroys our ipsets; run after :func:`remove_chains`, since a set in use stays."""
    for name in our_sets(paths):
        host.run(["ipset", "destroy", name], check=False, missing_ok=True)


def netns(paths: config.Paths) -> list[pathlib.Path]:
    """The pods' network namespaces of this cluster (mount points under its state)."""
    if not paths.netns.is_dir():
        return []
    return sorted(p for p in paths.netns.iterdir() if not p.name.startswith("."))


def cgroups(paths: config.Paths) -> list[pathlib.Path]:
    """This cluster's cgroup root in every hierarchy where it exists."""
    root = pathlib.Path("/sys/fs/cgroup")
    if not root.is_dir():
        return []
    return sorted(h / paths.cgroup_name for h in root.iterdir() if (h / paths.cgroup_name).is_dir())


def make_cgroups(paths: config.Paths) -> None:
    """Creates the kubelet's cgroup root in every hierarchy (the kubelet requires it to exist).

    A new cpuset cgroup has no CPUs or memory nodes; it gets its parent's.
    """
    root = pathlib.Path("/sys/fs/cgroup")
    for hierarchy in sorted(root.iterdir()):
        if not hierarchy.is_dir() or hierarchy.is_symlink():
            continue
        target = hierarchy / paths.cgroup_name
        target.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (target / name).exists() and not (target / name).read_text().strip():
                (target / name).write_text((hierarchy / name).read_text())
