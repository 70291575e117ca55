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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import tempfile
import time
from collections.abc import Callable

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


def _content_key(directory: pathlib.Path, base_digest: str) -> str:
    sha = hashlib.sha256(base_digest.encode())
    for path in sorted(directory.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            sha.update(path.relative_to(directory).as_posix().encode() + b"\0")
            sha.update(hashlib.sha256(path.read_bytes()).digest())
    return sha.hexdigest()[:12]


def push_runtime(runtime: str, paths: config.Paths | None = None) -> str:
    """Pushes the runtime image of ``runtime`` (and its base) unless the registry has it;
    returns ``repo@digest``."""
    paths = paths or config.Paths()
    image = IMAGES[runtime]
    images.push(image.make_base(paths), image.base, paths)
    registry = local_registry.client(paths)
    base_ref = oci.Reference.parse(image.base)
    found = registry.get_manifest(base_ref)
    if found is None:
        raise RuntimeError(f"the base image {image.base} is not in the registry")
    source = RUNTIMES / image.directory
    spec = json.loads((source / "image.json").read_text())
    # Node.js finds a layer's modules in /opt/nodejs/node<major>/node_modules, as in Lambda.
    env = {k: v.replace("{version}", image.version) for k, v in spec["env"].items()}
    tag = f"{image.version}-{_content_key(source, found[0])}"
    target = oci.Reference(config.REGISTRY, repository(runtime), tag)
    existing = registry.get_manifest(target)
    if existing is not None:
        digest = existing[0]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            store = oci.BlobStore(pathlib.Path(tmp))
            layer = store.layer_from_tree(
                [(dest, source / src) for src, dest in spec["copy"].items()]
            )
            digest = oci.extend(
                registry,
                base_ref,
                store=store,
                layers=[layer],
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
