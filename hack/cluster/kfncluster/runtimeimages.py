"""The runtime images functions are built on: a Debian base plus a kfn runtime.

``kfn/runtime-<runtime>`` is the runtime's base plus ``runtime-images/<language>``: for
python3.11 and nodejs18 Debian bookworm's ``python3`` and ``nodejs`` (with ``npm``: builds run
npm in it), for python3.13 and nodejs20 Debian trixie's, for nodejs22 Node.js 22 from the npm
registry on trixie (:mod:`kfncluster.nodedist`), for python3.12 CPython built from source on
bookworm (:mod:`kfncluster.cpython`: no Debian release this machine installs from has it).
Each image is assembled as OCI data per the runtime's ``image.json``
(the same description its Dockerfile follows elsewhere): one layer holding the runtime
directory, pushed on top of the base with :func:`kfn.oci.extend`, so the base's layers are
mounted inside the registry and only the runtime layer travels.

They are made by ``make up`` and the test fixture that installs kfn, not at cluster bring-up:
the runtime code lives in the working tree and changes with it, while bring-up does nothing
to a healthy cluster. The bases are made here too (cached, see :mod:`kfncluster.images`) and
pushed when the registry lacks them: on a fresh machine the new ones take about 12 minutes
once (most of it compiling CPython 3.12); after that making the images takes well under a
second. The tag is ``<language version>-<content key>`` so each version of the runtime code has
its own name, and the chart gets them pinned by digest: a new runtime is a new build hash, so
functions rebuild.

A Python runtime's layer carries its bytecode, compiled by the base's own interpreter (a chroot
in the base's unpacked root filesystem; each Python version has its own bytecode) as
unchecked-hash ``.pyc``: function pods run with ``PYTHONDONTWRITEBYTECODE`` on a read-only root,
so without it every cold start compiles the runtime from source again. The same holds for the
base's standard library (the bases have no bytecode), so a layer of its bytecode, made once per
base (:func:`stdlib_bytecode`), goes under the runtime's: together about 0.2 s of a cold start.
The image's tag says whether it has bytecode, so an image made without it (not root here) is
not taken for one made with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence

from kfn import oci
from kfncluster import config, hostdeps, images
from kfncluster import registry as local_registry

REPO = pathlib.Path(__file__).resolve().parents[3]
RUNTIMES = REPO / "runtime-images"


@dataclasses.dataclass(frozen=True)
class RuntimeImage:
    """How one runtime's image is made here."""

    directory: str
    """``runtime-images/<directory>``: the runtime's code and ``image.json``."""
    version: str
    """The language version: the tag's first part, and Node.js's layer directory."""
    base: str
    """The reference its base is pushed as."""
    cache_name: str
    """The name its base is cached under (:func:`kfncluster.images.find_cached`)."""
    make_base: Callable[[config.Paths], oci.Image]
    """Makes (or finds in the cache) the base."""


#: runtime name in a Function → how its image is made
IMAGES = {
    "python3.11": RuntimeImage(
        "python", "3.11", config.BASE_PYTHON_IMAGE, "base-python", images.base_python
    ),
    "python3.12": RuntimeImage(
        "python", "3.12", config.BASE_PYTHON312_IMAGE, "base-python312", images.base_python312
    ),
    "python3.13": RuntimeImage(
        "python",
        "3.13",
        config.BASE_PYTHON_TRIXIE_IMAGE,
        "base-python-trixie",
        images.base_python_trixie,
    ),
    "nodejs18": RuntimeImage(
        "nodejs", "18", config.BASE_NODEJS_IMAGE, "base-nodejs", images.base_nodejs
    ),
    "nodejs20": RuntimeImage(
        "nodejs",
        "20",
        config.BASE_NODEJS_TRIXIE_IMAGE,
        "base-nodejs-trixie",
        images.base_nodejs_trixie,
    ),
    "nodejs22": RuntimeImage(
        "nodejs", "22", config.BASE_NODEJS22_IMAGE, "base-nodejs22", images.base_nodejs22
    ),
}


def repository(runtime: str) -> str:
    """``kfn/runtime-<runtime>``, the name the chart's default image uses too."""
    return f"kfn/runtime-{runtime}"


#: Part of a Python runtime's content key when it has bytecode (its own and its base's standard
#: library's): bump it when how the bytecode is compiled changes, to make the images again.
BYTECODE = "pyc:unchecked-hash:stdlib:2"
#: Where a base image's config puts its interpreters.
_IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _content_key(directory: pathlib.Path, base_digest: str, variant: str = "") -> str:
    sha = hashlib.sha256(base_digest.encode())
    if variant:
        sha.update(b"\0" + variant.encode() + b"\0")
    for path in sorted(directory.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            sha.update(path.relative_to(directory).as_posix().encode() + b"\0")
            sha.update(hashlib.sha256(path.read_bytes()).digest())
    return sha.hexdigest()[:12]


def why_no_bytecode(rootfs: pathlib.Path | None = None) -> str | None:
    """Why Python bytecode cannot be compiled in a base's root filesystem here (the image is
    then made without it), or None when it can: unpacking a base and chroot need root, and
    the base must have a ``python3``."""
    if os.geteuid() != 0:
        return "compiling in the base's root filesystem (chroot) needs root"
    if shutil.which("chroot") is None:
        return "this machine has no chroot"
    if rootfs is not None and not any(
        os.path.lexists(rootfs / d / "python3") for d in ("usr/local/bin", "usr/bin")
    ):
        return f"{rootfs} has no python3 in /usr/local/bin or /usr/bin"
    return None


@contextlib.contextmanager
def compiled(
    rootfs: pathlib.Path, files: Sequence[tuple[str, pathlib.Path]]
) -> Iterator[list[tuple[str, pathlib.Path]]]:
    """``files`` (``(path in image, directory on disk)`` pairs) with their Python bytecode:
    copied into ``rootfs``'s /tmp (without any bytecode of their own) and compiled there by its
    ``python3`` in a chroot, as unchecked-hash ``.pyc`` recording the paths in the image.
    Yields the pairs for the copies, which are removed afterwards."""
    reason = why_no_bytecode(rootfs)
    if reason is not None:
        raise RuntimeError(reason)
    staging = pathlib.Path(tempfile.mkdtemp(prefix="kfn-bytecode-", dir=rootfs / "tmp"))
    try:
        copies: list[tuple[str, pathlib.Path]] = []
        for n, (dest, source) in enumerate(files):
            copy = staging / str(n) / source.name
            shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            _compile(rootfs, dest, "/" + copy.relative_to(rootfs).as_posix(), source)
            copies.append((dest, copy))
        yield copies
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _compile(rootfs: pathlib.Path, dest: str, inside: str, what: object) -> None:
    """Compiles the tree at ``inside`` (a path in ``rootfs``) with ``rootfs``'s python3 in a
    chroot, as unchecked-hash ``.pyc`` recording the tree as ``dest``."""
    cmd = [
        "chroot", str(rootfs), "/usr/bin/env", "-i", f"PATH={_IMAGE_PATH}",
        # The same bytes every time; and nothing else written in the cached base.
        "LANG=C.UTF-8", "PYTHONHASHSEED=0", "PYTHONDONTWRITEBYTECODE=1",
        "python3", "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
        "-d", "/" + dest.strip("/"), inside,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"compiling {what} in {rootfs} failed:\n{done.stdout}{done.stderr}")


def stdlib_bytecode(
    paths: config.Paths, image: RuntimeImage, base: oci.Image, rootfs: pathlib.Path
) -> oci.Layer:
    """A layer of the bytecode of ``base``'s standard library (unpacked at ``rootfs``), the
    ``__pycache__`` directories alone, compiled by its python3 as unchecked-hash; made once
    per base and cached.

    The bases are made without any (:func:`kfn.oci.BlobStore.layer_from_tree` leaves bytecode
    out, and timestamp-based ``.pyc`` would not survive the zeroed times anyway), so without
    this layer a pod, unable to write any, compiles every standard module it imports (asyncio,
    json, http ...) from source at each start: about 0.2 s of a cold start.
    """

    def make(store: oci.BlobStore) -> oci.Image:
        done = subprocess.run(
            ["chroot", str(rootfs), "/usr/bin/env", "-i", f"PATH={_IMAGE_PATH}",
             "PYTHONDONTWRITEBYTECODE=1", "python3", "-c",
             "import sysconfig; print(sysconfig.get_paths()['stdlib'])"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        stdlib = done.stdout.strip().strip("/")
        staging = pathlib.Path(tempfile.mkdtemp(prefix="kfn-stdlib-", dir=rootfs / "tmp"))
        try:
            copy = staging / "lib"
            shutil.copytree(
                rootfs / stdlib,
                copy,
                symlinks=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "site-packages"),
            )
            _compile(rootfs, stdlib, "/" + copy.relative_to(rootfs).as_posix(), stdlib)
            caches = sorted(copy.rglob("__pycache__"))
            layer = store.layer_from_tree(
                [(f"{stdlib}/{c.relative_to(copy).as_posix()}", c) for c in caches],
                compress=True,
                bytecode=True,
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return store.image(
            [layer],
            oci.ImageConfig(),
            history=[f"python3 -m compileall --invalidation-mode unchecked-hash /{stdlib}"],
        )

    key = hashlib.sha256(f"{base.digest}\0{BYTECODE}".encode()).hexdigest()[:16]
    return images.cached(paths, f"{image.cache_name}-stdlib-pyc", key, make).layers[0]


def push_runtime(runtime: str, paths: config.Paths | None = None) -> str:
    """Pushes the runtime image of ``runtime`` (and its base) unless the registry has it;
    returns ``repo@digest``."""
    paths = paths or config.Paths()
    image = IMAGES[runtime]
    base = image.make_base(paths)
    images.push(base, image.base, paths)
    registry = local_registry.client(paths)
    base_ref = oci.Reference.parse(image.base)
    found = registry.get_manifest(base_ref)
    if found is None:
        raise RuntimeError(f"the base image {image.base} is not in the registry")
    source = RUNTIMES / image.directory
    spec = json.loads((source / "image.json").read_text())
    # Node.js finds a layer's modules in /opt/nodejs/node<major>/node_modules, as in Lambda.
    env = {k: v.replace("{version}", image.version) for k, v in spec["env"].items()}
    files = [(dest, source / src) for src, dest in spec["copy"].items()]
    bytecode = image.directory == "python"
    if bytecode and (reason := why_no_bytecode()) is not None:
        print(f"{runtime}: its image has no bytecode: {reason}", flush=True)
        bytecode = False
    key = _content_key(source, found[0], BYTECODE if bytecode else "")
    target = oci.Reference(config.REGISTRY, repository(runtime), f"{image.version}-{key}")
    existing = registry.get_manifest(target)
    if existing is not None:
        digest = existing[0]
    else:
        with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
            store = oci.BlobStore(pathlib.Path(tmp))
            layers = []
            if bytecode:
                rootfs = images.unpacked(paths, image.cache_name, base)
                layers.append(stdlib_bytecode(paths, image, base, rootfs))
                files = stack.enter_context(compiled(rootfs, files))
            layers.append(store.layer_from_tree(files, bytecode=bytecode))
            digest = oci.extend(
                registry,
                base_ref,
                store=store,
                layers=layers,
                overrides=oci.ImageConfig(
                    entrypoint=spec["entrypoint"],
                    env=env,
                    workdir=spec["workdir"],
                    user=spec["user"],
                    labels={"dev.kfn.runtime": runtime},
                ),
                target=target,
                history=f"kfn {runtime} runtime",
            )
    return f"{config.REGISTRY}/{repository(runtime)}@{digest}"


def push_all(paths: config.Paths | None = None) -> dict[str, str]:
    """Every runtime image made here, by runtime name, as ``repo@digest``."""
    return {runtime: push_runtime(runtime, paths) for runtime in IMAGES}


def make_bases(paths: config.Paths | None = None) -> dict[str, oci.Image]:
    """Every runtime's base image, made (or found) in the cache without a registry: what the
    runtime contract tests run each runtime in. The first time takes about 12 minutes on 2
    cores (debootstraps, and CPython 3.12 compiled); later calls read the cache."""
    paths = paths or config.Paths()
    hostdeps.ensure(paths.logs / "apt.log", ("debootstrap", "npm"))
    made: dict[str, oci.Image] = {}
    for runtime, image in IMAGES.items():
        started = time.monotonic()
        print(f"runtime base for {runtime} ({image.cache_name}) ...", flush=True)
        made[runtime] = image.make_base(paths)
        print(
            f"runtime base for {runtime}: {made[runtime].digest[:19]} "
            f"({time.monotonic() - started:.1f}s)",
            flush=True,
        )
    return made


def bases_up() -> int:
    """``kfncluster runtime-bases``: :func:`make_bases`, for ``make test``."""
    make_bases()
    return 0
