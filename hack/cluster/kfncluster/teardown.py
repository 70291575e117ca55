"""Stopping the cluster (its data kept) and removing it (its data gone).

``stop`` ends every process and removes everything the running cluster made on the host —
mounts, the pods' network namespaces, its cgroups, its iptables chains and ipsets, the bridge,
the egress guard — as recorded by :mod:`kfncluster.owned`, and puts the kernel settings back.
etcd, the registry, containerd's images, Kafka's and NATS's data stay, so the next bring-up
resumes the same cluster with every Function in it. ``remove`` deletes that data too (but the
registry's images, a cache of what the tool pushes). Both are safe to run twice, after a killed
run, and on a machine without the host tools (a missing tool means nothing of it to remove).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import signal
import time

from kfncluster import config, host, network, owned, procs


def leftovers(paths: config.Paths) -> list[str]:
    """What a running or killed cluster holds on the host (empty once stopped)."""
    sup = procs.Supervisor(paths.pids, paths.logs)
    found = [
        f"process {r.name} (pid {r.pid}{'' if r.alive() else ', dead'})" for r in sup.records()
    ]
    found += [f"process {name} (pid {pid})" for pid, name in pod_processes(paths)]
    found += [f"mount {m}" for m in mounts(paths)]
    found += [f"netns {n}" for n in owned.netns(paths)]
    # The bridge and the guard have fixed names: they are this cluster's only when its
    # record (written before it made them) is there.
    if paths.owned.exists() and network.bridge_exists():
        found.append(f"interface {config.BRIDGE}")
    if paths.owned.exists() and network.guard_present():
        found.append(f"iptables chain {config.SAFETY_CHAIN}")
    found += [f"iptables chains {k}: {len(v)}" for k, v in owned.our_chains(paths).items()]
    found += [f"ipset {name}" for name in owned.our_sets(paths)]
    found += [f"cgroup {c}" for c in owned.cgroups(paths)]
    return found


def alive(paths: config.Paths) -> bool:
    """Whether any process the cluster started still runs (a stopped or killed one has none)."""
    return any(r.alive() for r in procs.Supervisor(paths.pids, paths.logs).records())


def mounts(paths: config.Paths) -> list[str]:
    """Mount points under the cluster's state and run directories."""
    roots = (str(paths.state) + "/", str(paths.run) + "/")
    found = []
    for line in pathlib.Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if (point + "/").startswith(roots):
            found.append(point)
    return found


def pod_processes(paths: config.Paths) -> list[tuple[int, str]]:
    """Processes in this cluster's cgroups (containers, sandboxes) and the containerd shims
    serving its containerd."""
    pids: set[int] = set()
    for cg in owned.cgroups(paths):
        for procs_file in cg.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs_file.read_text().split())
    marker = str(paths.containerd_socket).encode()
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and marker in argv:
            pids.add(int(proc.name))
    found = []
    for pid in sorted(pids):
        try:
            found.append((pid, pathlib.Path(f"/proc/{pid}/comm").read_text().strip()))
        except OSError:
            continue
    return found


def stop(paths: config.Paths, crictl: list[str] | None = None) -> None:
    """Ends the cluster's processes and removes what it made on the host; keeps its data.

    ``crictl`` is the command (with its endpoints) that removes pods while containerd still
    runs, when there is one.
    """
    _stop_processes(paths, crictl)
    for point in sorted(mounts(paths), key=len, reverse=True):
        host.run(["umount", "-l", point], check=False, missing_ok=True)
    _remove_cgroups(paths)
    owned.remove_chains(paths)
    owned.remove_sets(paths)
    if paths.owned.exists():
        network.remove_bridge()
        network.remove_guard()
        owned.release(paths)
    _restore_kernel_tunables(paths)
    # Addresses and CNI results of pods that no longer exist.
    shutil.rmtree(paths.cni_ipam_dir, ignore_errors=True)
    for cache in pathlib.Path("/var/lib/cni/results").glob("kfn-*"):
        cache.unlink(missing_ok=True)
    _clean_container_log_links(paths)
    if paths.run.is_dir():
        for child in paths.run.iterdir():
            if child != paths.lock:
                _remove(child)
    paths.owned.unlink(missing_ok=True)


def remove(paths: config.Paths) -> None:
    """Deletes the cluster's data but the registry's images (a cache of what the tool pushes)."""
    keep = {paths.registry_data.name}
    if paths.state.is_dir():
        for child in paths.state.iterdir():
            if child.name not in keep:
                _remove(child)


def _stop_processes(paths: config.Paths, crictl: list[str] | None) -> None:
    sup = procs.Supervisor(paths.pids, paths.logs)
    records = {r.name: r for r in sup.records()}
    # The node first, so nothing restarts pods while they are removed; kube-router while the
    # API server it watches still answers.
    for name in (
        "kube-router",
        "kube-proxy",
        "kubelet",
        "kube-scheduler",
        "kube-controller-manager",
    ):
        if name in records:
            sup.stop(records.pop(name))
    if crictl and "containerd" in records and records["containerd"].alive():
        host.run([*crictl, "rmp", "-fa"], check=False, missing_ok=True, timeout=60)
    for name in ("containerd", "kube-apiserver", "etcd", "registry", "registry-auth"):
        if name in records:
            sup.stop(records.pop(name))
    for record in records.values():
        sup.stop(record)
    # Whatever a killed run left in the pod cgroups: containers, sandboxes, shims.
    for _ in range(3):
        left = pod_processes(paths)
        if not left:
            break
        for pid, _name in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)


def _remove_cgroups(paths: config.Paths) -> None:
    for cg in owned.cgroups(paths):
        for d in sorted(cg.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if d.is_dir():
                with contextlib.suppress(OSError):
                    d.rmdir()
        with contextlib.suppress(OSError):
            cg.rmdir()


# --- kernel tunables the kubelet changes ----------------------------------------

#: The kubelet sets the vm/kernel ones at start (as on every Kubernetes node);
#: the node network turns on forwarding and bridge netfilter. Stopping puts the
#: machine's own values back.
TUNABLES = (
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)


def save_kernel_tunables(paths: config.Paths) -> None:
    saved = paths.state / "sysctl-before.json"
    if saved.exists():
        return
    values = {
        k: pathlib.Path("/proc/sys", k).read_text().strip()
        for k in TUNABLES
        if pathlib.Path("/proc/sys", k).exists()
    }
    saved.write_text(json.dumps(values))


def _restore_kernel_tunables(paths: config.Paths) -> None:
    saved = paths.state / "sysctl-before.json"
    if not saved.exists():
        return
    for key, value in json.loads(saved.read_text()).items():
        with contextlib.suppress(OSError):
            pathlib.Path("/proc/sys", key).write_text(value)
    saved.unlink()


def _remove(path: pathlib.Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _clean_container_log_links(paths: config.Paths) -> None:
    """The kubelet links container logs into /var/log/containers; drop our links."""
    links = pathlib.Path("/var/log/containers")
    if not links.is_dir():
        return
    for link in links.iterdir():
        if link.is_symlink() and str(os.readlink(link)).startswith(str(paths.pod_logs)):
            link.unlink()
    with contextlib.suppress(OSError):
        links.rmdir()
