"""Bringing the local cluster up, stopping it and tearing it down.

``up`` is idempotent: a healthy cluster is left alone; what a killed run left on the host
(dead PIDs, a bridge, rules, mounts) is cleaned first; a cluster stopped or killed with its
data kept resumes with it (every Function still there); a second ``up`` while one is under way
says so and does nothing. ``stop`` ends the cluster but keeps its data; ``down`` also deletes
the data. Both remove exactly what the cluster made (:mod:`kfncluster.owned`) and are safe to
run twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import pathlib
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

from kfn import oci
from kfncluster import (
    addons,
    brokers,
    build,
    components,
    config,
    gateway,
    host,
    hostdeps,
    images,
    kuberouter,
    network,
    owned,
    pki,
    procs,
    proxies,
    registry,
    teardown,
)

REPO = pathlib.Path(__file__).resolve().parents[3]


class AlreadyRunningError(RuntimeError):
    """Another bring-up or tear-down holds the lock."""


class Progress:
    """Numbered progress lines with the time each step took."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.step = 0
        self.started = time.monotonic()

    @contextlib.contextmanager
    def __call__(self, what: str) -> Iterator[Callable[[str], None]]:
        self.step += 1
        t0 = time.monotonic()
        prefix = f"[{self.step:2d}/{self.total}] {what}"
        print(f"{prefix} ...", flush=True)
        notes: list[str] = []
        yield notes.append
        extra = f" ({', '.join(notes)})" if notes else ""
        print(f"{prefix}: done in {time.monotonic() - t0:.1f}s{extra}", flush=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


@contextlib.contextmanager
def locked(paths: config.Paths) -> Iterator[None]:
    paths.run.mkdir(parents=True, exist_ok=True)
    with paths.lock.open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise AlreadyRunningError(holder) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()


def supervisor(paths: config.Paths) -> procs.Supervisor:
    return procs.Supervisor(paths.pids, paths.logs)


# --- health checks ---------------------------------------------------------


def _tls_context(paths: config.Paths, client: str | None = "admin") -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(paths.pki / "ca.crt"))
    if client:
        ctx.load_cert_chain(str(paths.pki / f"{client}.crt"), str(paths.pki / f"{client}.key"))
    return ctx


def _insecure_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _get(host: str, port: int, path: str, ctx: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    conn: http.client.HTTPConnection
    if ctx is None:
        conn = http.client.HTTPConnection(host, port, timeout=2)
    else:
        conn = http.client.HTTPSConnection(host, port, timeout=2, context=ctx)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _http_ok(
    host: str, port: int, path: str, ctx: ssl.SSLContext | None = None
) -> Callable[[], bool]:
    return lambda: _get(host, port, path, ctx)[0] == 200


def _socket_ok(path: pathlib.Path) -> Callable[[], bool]:
    def check() -> bool:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1)
            s.connect(str(path))
        return True

    return check


def readiness(name: str, paths: config.Paths) -> tuple[Callable[[], bool], float]:
    """How to tell that component ``name`` is serving, and how long to wait."""
    checks: dict[str, tuple[Callable[[], bool], float]] = {
        "etcd": (_http_ok("127.0.0.1", 2379, "/health"), 60),
        "registry-auth": (
            _http_ok(config.NODE_IP, registry.AUTH_PORT, "/healthz", _tls_context(paths, None)),
            30,
        ),
        # With token authentication an anonymous GET /v2/ is answered 401: it serves.
        "registry": (
            lambda: (
                _get(config.NODE_IP, config.REGISTRY_PORT, "/v2/", _tls_context(paths, None))[0]
                in (200, 401)
            ),
            30,
        ),
        "containerd": (_socket_ok(paths.containerd_socket), 30),
        "kube-apiserver": (
            lambda: (
                _get(config.NODE_IP, config.APISERVER_PORT, "/readyz", _tls_context(paths))[0]
                == 200
            ),
            120,
        ),
        "kube-controller-manager": (
            _http_ok("127.0.0.1", 10257, "/healthz", _insecure_context()),
            60,
        ),
        "kube-scheduler": (_http_ok("127.0.0.1", 10259, "/healthz", _insecure_context()), 60),
        "kubelet": (_http_ok("127.0.0.1", 10248, "/healthz"), 90),
        "kube-proxy": (_http_ok("127.0.0.1", 10256, "/healthz"), 60),
        "devpi": (_http_ok(config.NODE_IP, proxies.DEVPI_PORT, "/+api"), 90),
        "verdaccio": (_http_ok(config.NODE_IP, proxies.VERDACCIO_PORT, "/-/ping"), 90),
    }
    if name in brokers.BROKERS:
        return brokers.readiness(name)
    return checks[name]


def kubectl(paths: config.Paths, *args: str, check: bool = True, input: str | None = None) -> str:
    bins = build.binaries(paths)
    result = host.run(
        [str(bins["kubectl"]), f"--kubeconfig={paths.admin_kubeconfig}", *args],
        input=input,
        check=False,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def crictl_argv(paths: config.Paths) -> list[str]:
    return [
        str(build.binaries(paths)["crictl"]),
        f"--runtime-endpoint=unix://{paths.containerd_socket}",
        f"--image-endpoint=unix://{paths.containerd_socket}",
        "--timeout=30s",
    ]


def crictl(paths: config.Paths, *args: str) -> subprocess.CompletedProcess[str]:
    return host.run([*crictl_argv(paths), *args], check=False, missing_ok=True)


# --- state -----------------------------------------------------------------


def running(
    paths: config.Paths, names: tuple[str, ...] = components.ORDER, patience: float = 10.0
) -> bool:
    """All components (of ``names``) alive and the API server ready.

    With every process alive, a slow answer of the API server (a loaded machine) is asked
    again for up to ``patience`` seconds: a bring-up that took a busy cluster for a dead one
    would tear it down.
    """
    records = {r.name: r for r in supervisor(paths).records()}
    if any(name not in records or not records[name].alive() for name in names):
        return False
    check = readiness("kube-apiserver", paths)[0]
    deadline = time.monotonic() + patience
    while True:
        try:
            if check():
                return True
        except OSError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(1)


def leftovers(paths: config.Paths) -> list[str]:
    """What a previous run left on the host (for ``up`` to clean, for ``down``'s test to see)."""
    return teardown.leftovers(paths)


# --- up ----------------------------------------------------------------------


def up(paths: config.Paths | None = None) -> int:
    paths = paths or config.Paths()
    if os.geteuid() != 0:
        print("kfn cluster: must run as root (it manages containerd, the kubelet and iptables)")
        return 2
    host.trace_to(paths.logs / "commands.log")
    try:
        with locked(paths):
            return _up(paths)
    except AlreadyRunningError as exc:
        print(f"kfn cluster: another bring-up or tear-down is in progress ({exc}); nothing to do.")
        return 0
    except (procs.ComponentError, RuntimeError) as exc:
        print(f"\nkfn cluster: bring-up failed: {exc}", file=sys.stderr)
        return 1


def _up(paths: config.Paths) -> int:
    if running(paths):
        _finish(paths, None)
        print("kfn cluster: already running; nothing to do.")
        return 0
    core = tuple(n for n in components.ORDER if n not in components.EXTRAS)
    if running(paths, core):
        _add_missing(paths)
        _finish(paths, None)
        return 0
    steps = Progress(14 + len(components.ORDER) - len(components.BROKERS))
    # Nothing may use a host tool before this step; the clean-up after it finds what a
    # killed run left with the tools in place (before it, a missing tool means nothing).
    with steps("host packages") as note:
        installed = hostdeps.ensure(paths.logs / "apt.log")
        note(f"installed {', '.join(installed)}" if installed else "all present")
    with steps("clean up what a previous run left") as note:
        found = leftovers(paths)
        if found:
            note(f"{len(found)} leftovers")
            teardown.stop(paths, crictl_argv(paths))
        else:
            note("nothing found")
    _refuse_beside_another_cluster(paths)
    resuming = _has_data(paths)
    owned.record(paths)
    made = _prepare(paths, steps)
    _start(paths, steps, made)
    paths.stopped.unlink(missing_ok=True)
    if resuming:
        print(f"        resumed the data in {paths.state} (`make cluster-down` starts afresh)")
    _finish(paths, steps)
    return 0


def _has_data(paths: config.Paths) -> bool:
    """Whether etcd holds a cluster from an earlier run (stopped, killed or rebooted)."""
    return (paths.etcd_data / "member").is_dir()


def _refuse_beside_another_cluster(paths: config.Paths) -> None:
    """Our cluster shares the node address, bridge and kube-proxy's chains with any other.

    A kfn cluster that was killed (its processes gone, its bridge and chains left) is stopped
    with its own record, so that a killed scratch or CI cluster never blocks the next one.
    """
    if network.bridge_exists():
        other = owned.claimant(paths)
        if other is not None and other.state != paths.state and not teardown.alive(other):
            print(
                f"        the kfn cluster of {other.state} was killed and left its network; "
                "stopping it (its data stays)"
            )
            teardown.stop(other)
    if network.bridge_exists():
        other = owned.claimant(paths)
        raise RuntimeError(
            f"the bridge {config.BRIDGE} exists but this cluster ({paths.state}) did not make "
            f"it: the kfn cluster of {other.state if other else 'an unknown state directory'} "
            "runs here; stop it first (`make cluster-stop` with its KFN_CLUSTER_STATE and "
            "KFN_CLUSTER_RUN)"
        )
    others = owned.conflicting(owned.present_chains())
    if others:
        raise RuntimeError(
            "chains of another kube-proxy or kube-router, or named like the service chains "
            "kube-proxy sweeps, are on this machine's network ("
            + ", ".join(others)
            + "); the local cluster's kube-proxy or kube-router would share or delete them. "
            "Stop the other cluster (or remove the chains) first"
        )
    sets = owned.conflicting_sets(kuberouter.sets())
    if sets:
        raise RuntimeError(
            "ipsets of another kube-router are on this machine (" + ", ".join(sets) + "); the "
            "local cluster's kube-router would rewrite or destroy them. Stop the other cluster "
            "(or destroy the sets) first"
        )


def _prepare(paths: config.Paths, steps: Progress) -> dict[str, oci.Image]:
    """Everything before the first process starts; returns the images to push."""
    with steps("build components (cached by version)") as note:
        _build_components(paths, note)
    bins = build.binaries(paths)
    with steps("images (pause, coredns, versitygw, debian bases)") as note:
        made = _make_images(paths, bins)
        note("cached in " + str(paths.images))
    with steps("package proxies for builds (devpi-server, verdaccio)") as note:
        installed = proxies.ensure_installed(paths, paths.logs / "proxies-install.log")
        note(f"installed {', '.join(installed)}" if installed else "cached")
    with steps("broker runtimes (Kafka's classpath from Maven Central)") as note:
        fetched = brokers.ensure_kafka(paths, paths.logs / "kafka-resolve.log")
        note(f"resolved Kafka {config.KAFKA_VERSION}" if fetched else "cached")
    with steps("certificates, kubeconfigs and configs"):
        _write_pki_and_configs(paths)
    teardown.save_kernel_tunables(paths)
    with steps("node network: bridge, egress guard, CNI, cgroups") as note:
        _set_up_network(paths)
        note(f"{config.BRIDGE} {config.NODE_IP}, pods {config.POD_CIDR}")
    return made


def _start(paths: config.Paths, steps: Progress, made: dict[str, oci.Image]) -> None:
    """Starts every process, each waited for; the brokers come up alongside the rest."""
    bins = build.binaries(paths)
    sup = supervisor(paths)
    with steps(f"start {', '.join(brokers.BROKERS)} (answering checked at the end)") as note:
        brokers.prepare(paths, paths.logs)
        started = brokers.start(sup, paths, bins)
        note(", ".join(f"{r.name} pid {r.pid}" for r in started))
    for name in components.ORDER:
        if name in components.BROKERS or name in components.AFTER_NODE_READY:
            continue
        with steps(f"start {name}") as note:
            record = sup.start(name, components.argv(name, paths, bins), components.env(name))
            check, timeout = readiness(name, paths)
            sup.wait_until(record, check, timeout)
            note(f"pid {record.pid}, log {sup.log_path(name)}")
            if name == "registry":
                for ref, image in made.items():
                    images.push(image, ref, paths)
            if name == "containerd":
                _remove_stale_pods(paths)
    with steps("node Ready") as note:
        _wait_node_ready(paths, sup)
        note(config.NODE_NAME)
    with steps(f"start {kuberouter.NAME} (NetworkPolicy, its firewall alone)") as note:
        record = _start_kube_router(paths, sup, bins)
        note(f"pid {record.pid}, log {sup.log_path(kuberouter.NAME)}")
    with steps("cluster DNS (CoreDNS)"):
        addons.apply_coredns(lambda *a, **kw: kubectl(paths, *a, **kw))
    with steps(f"{', '.join(brokers.BROKERS)} answer") as note:
        brokers.wait(sup, started)
        note(f"kafka {config.KAFKA_BOOTSTRAP}, nats {config.NATS_URL}")
    with steps("PyPI mirror warmed for builds") as note:
        note(_warm_pypi(sup))


def _warm_pypi(sup: procs.Supervisor) -> str:
    """Warms devpi's mirror; a mirror that cannot reach its upstream is a warning, since
    only builds with Python dependencies need it."""
    try:
        return f"first page in {proxies.warm_pypi():.1f}s"
    except (OSError, http.client.HTTPException) as exc:
        return (
            f"WARNING: devpi did not answer ({exc}); builds with Python dependencies may "
            f"fail; read {sup.log_path('devpi')}"
        )


def _build_components(paths: config.Paths, note: Callable[[str], None]) -> None:
    for component in build.COMPONENTS:
        if build.is_built(paths, component):
            continue
        print(
            f"        building {component.describe()} "
            f"(first time on this machine, {component.expect})",
            flush=True,
        )
        t0 = time.monotonic()
        build.build(paths, component, paths.logs / f"build-{component.name}.log")
        note(f"{component.name} {time.monotonic() - t0:.0f}s")
    build.link_tools(paths)


def _make_images(paths: config.Paths, bins: dict[str, pathlib.Path]) -> dict[str, oci.Image]:
    """The locally made images, by the reference they are pushed as."""
    made = {
        config.PAUSE_IMAGE: images.pause(paths, bins["pause"]),
        config.COREDNS_IMAGE: images.coredns(paths, bins["coredns"]),
    }
    print("        debian base image (debootstrap on first run, ~1 min)", flush=True)
    made[config.BASE_PYTHON_IMAGE] = images.base_python(paths)
    made[config.VERSITYGW_IMAGE] = images.versitygw(paths, bins["versitygw"])
    made[config.BASE_NODEJS_IMAGE] = images.base_nodejs(paths)
    return made


def _add_missing(paths: config.Paths) -> None:
    """Brings a running cluster made by an earlier version of this tool up to date.

    Adds what it lacks without touching what runs: components and images made since (pushed
    when the registry lacks them) and supervised processes that were not part of it (the
    package proxies, the brokers) or that died since, so a healthy cluster is never torn down
    to gain them.
    """
    _build_components(paths, lambda built: print(f"kfn cluster: built {built}"))
    bins = build.binaries(paths)
    for ref, image in _make_images(paths, bins).items():
        images.push(image, ref, paths)
    sup = supervisor(paths)
    records = {r.name: r for r in sup.records()}
    missing = [n for n in components.EXTRAS if n not in records or not records[n].alive()]
    if not missing:
        return
    if any(n in components.PROXIES for n in missing):
        proxies.ensure_installed(paths, paths.logs / "proxies-install.log")
        proxies.write_configs(paths)
    if any(n in components.BROKERS for n in missing):
        brokers.prepare(paths, paths.logs)
    if kuberouter.NAME in missing:
        # A cluster made before it ran kube-router: its tool, credential and ipset record.
        hostdeps.ensure(paths.logs / "apt.log", ("ipset",))
        _write_client_kubeconfigs(paths)
        owned.note_sets(paths)
    for name in missing:
        if name == kuberouter.NAME:
            record = _start_kube_router(paths, sup, bins)
            print(f"kfn cluster: started {name} (pid {record.pid}, log {sup.log_path(name)})")
            continue
        record = sup.start(name, components.argv(name, paths, bins), components.env(name))
        check, timeout = readiness(name, paths)
        sup.wait_until(record, check, timeout)
        print(f"kfn cluster: started {name} (pid {record.pid}, log {sup.log_path(name)})")


def _start_kube_router(
    paths: config.Paths, sup: procs.Supervisor, bins: dict[str, pathlib.Path]
) -> procs.Record:
    return kuberouter.start(sup, paths, bins, lambda *a, **kw: kubectl(paths, *a, **kw))


def _write_client_kubeconfigs(paths: config.Paths) -> None:
    """A certificate and a kubeconfig for every client (those there are kept)."""
    pki.ensure(paths.pki)
    paths.config.mkdir(parents=True, exist_ok=True)
    server = f"https://{config.NODE_IP}:{config.APISERVER_PORT}"
    for client in pki.CLIENTS:
        target = paths.config / f"{client.stem}.kubeconfig"
        target.write_text(pki.kubeconfig(paths.pki, client.stem, server))
        target.chmod(0o600)


def _write_pki_and_configs(paths: config.Paths) -> None:
    _write_client_kubeconfigs(paths)
    shutil.copy(paths.config / "admin.kubeconfig", paths.admin_kubeconfig)
    components.write_configs(paths)
    for d in (paths.etcd_data, paths.kubelet_root, paths.pod_logs, paths.registry_data):
        d.mkdir(parents=True, exist_ok=True)
    paths.etcd_data.chmod(0o700)


def _set_up_network(paths: config.Paths) -> None:
    network.install_guard()
    if not network.guard_installed():
        raise RuntimeError("the egress guard did not install as expected; refusing to start pods")
    network.ensure_bridge()
    network.set_sysctls()
    network.write_cni_config(paths)
    owned.make_cgroups(paths)


def _remove_stale_pods(paths: config.Paths) -> None:
    """Removes sandboxes containerd kept from an earlier run, before the kubelet starts."""
    listing = crictl(paths, "pods", "-q")
    if listing.stdout.strip():
        crictl(paths, "rmp", "-fa")


def _wait_node_ready(paths: config.Paths, sup: procs.Supervisor) -> None:
    deadline = time.monotonic() + 120
    kubelet = sup.record("kubelet")
    assert kubelet is not None
    while time.monotonic() < deadline:
        if not kubelet.alive():
            raise procs.ComponentError("kubelet", sup.log_path("kubelet"), "exited")
        out = kubectl(paths, "get", "node", config.NODE_NAME, "-o", "json", check=False)
        if out:
            conditions = json.loads(out)["status"].get("conditions", [])
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                return
        time.sleep(0.5)
    raise procs.ComponentError(
        "kubelet", sup.log_path("kubelet"), "node did not become Ready in 120s"
    )


def kubeconfig_out() -> pathlib.Path:
    """Where bring-up leaves the admin kubeconfig for the developer (and the Makefile)."""
    return pathlib.Path(os.environ.get("KFN_KUBECONFIG_OUT") or REPO / ".kfn" / "kubeconfig")


def _finish(paths: config.Paths, steps: Progress | None) -> None:
    target = kubeconfig_out()
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(paths.admin_kubeconfig, target)
    target.chmod(0o600)
    build.link_tools(paths)
    if steps is not None:
        print(f"\nkfn cluster is up in {steps.elapsed():.1f}s ({config.KUBERNETES_VERSION}).")
        print(f"Logs: {paths.logs}/<component>.log")
    print(f"export KUBECONFIG={target} PATH={paths.bin}:$PATH")


# --- stop and down ---------------------------------------------------------------


def stop(paths: config.Paths | None = None) -> int:
    """Stops the cluster and removes what it made on the host, keeping its data."""
    return _end(paths or config.Paths(), keep_data=True)


def down(paths: config.Paths | None = None) -> int:
    """Stops the cluster and deletes its data (the registry's images stay, as a cache)."""
    return _end(paths or config.Paths(), keep_data=False)


def _end(paths: config.Paths, keep_data: bool) -> int:
    if os.geteuid() != 0:
        print("kfn cluster: must run as root")
        return 2
    host.trace_to(paths.logs / "commands.log" if paths.state.is_dir() else None)
    try:
        with locked(paths):
            t0 = time.monotonic()
            found = leftovers(paths)
            data = _has_data(paths) or paths.owned.exists()
            if not found and (keep_data or not data):
                print(
                    "kfn cluster: nothing to tear down."
                    if not keep_data
                    else "kfn cluster: not running; nothing to stop."
                )
                return 0
            host.trace_to(None)
            teardown.stop(paths, crictl_argv(paths))
            if keep_data:
                if _has_data(paths):
                    paths.stopped.touch()
            else:
                teardown.remove(paths)
                # The local CA went with the data: its certificate on the host is no one's now.
                gateway.ca_file(kubeconfig_out()).unlink(missing_ok=True)
            left = leftovers(paths)
            if left:
                print(
                    "kfn cluster: tear-down left behind:\n  " + "\n  ".join(left), file=sys.stderr
                )
                return 1
            what = "stopped, its data kept for `make cluster`" if keep_data else "torn down"
            print(f"kfn cluster: {what} in {time.monotonic() - t0:.1f}s; nothing left behind.")
            return 0
    except AlreadyRunningError as exc:
        print(f"kfn cluster: another bring-up or tear-down is in progress ({exc}); nothing to do.")
        return 0
