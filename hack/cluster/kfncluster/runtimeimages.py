"""The runtime images functions are built on: a Debian base plus a kfn runtime.

``kfn/runtime-python`` is the Python base (``python3``) plus ``runtime-images/python``;
``kfn/runtime-nodejs`` is the Node.js base (``nodejs`` and ``npm``: builds run npm in it) plus
``runtime-images/nodejs``. Each is assembled as OCI data per the runtime's ``image.json`` (the
same description its Dockerfile follows elsewhere): one layer holding the runtime directory,
pushed on top of the base with :func:`kfn.oci.extend`, so the base's layers are mounted
inside the registry and only the runtime layer travels.

They are made by ``make up`` and the test fixture that installs kfn, not at cluster bring-up:
the runtime code lives in the working tree and changes with it, while bring-up does nothing
to a healthy cluster. Making them takes well under a second once the bases exist. The tag is
``<language version>-<content key>`` so each version of the runtime code has its own name, and
the chart gets them pinned by digest: a new runtime is a new build hash, so functions rebuild.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import tempfile

from kfn import oci
from kfncluster import config
from kfncluster import registry as local_registry

REPO = pathlib.Path(__file__).resolve().parents[3]
RUNTIMES = REPO / "runtime-images"

#: runtime name in a Function → (directory, repository, language version, base image)
IMAGES = {
    "python3.11": ("python", "kfn/runtime-python", "3.11", config.BASE_PYTHON_IMAGE),
    "nodejs18": ("nodejs", "kfn/runtime-nodejs", "18", config.BASE_NODEJS_IMAGE),
}


def _content_key(directory: pathlib.Path, base_digest: str) -> str:
    sha = hashlib.sha256(base_digest.encode())
    for path in sorted(directory.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            sha.update(path.relative_to(directory).as_posix().encode() + b"\0")
            sha.update(hashlib.sha256(path.read_bytes()).digest())
    return sha.hexdigest()[:12]


def push_runtime(runtime: str) -> str:
    """Pushes the runtime image of ``runtime`` unless it exists; returns ``repo@digest``."""
    directory, repository, version, base = IMAGES[runtime]
    registry = local_registry.client()
    base_ref = oci.Reference.parse(base)
    found = registry.get_manifest(base_ref)
    if found is None:
        raise RuntimeError(f"the base image {base} is not in the registry; run `make cluster`")
    source = RUNTIMES / directory
    spec = json.loads((source / "image.json").read_text())
    tag = f"{version}-{_content_key(source, found[0])}"
    target = oci.Reference(config.REGISTRY, repository, tag)
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
                    env=spec["env"],
                    workdir=spec["workdir"],
                    user=spec["user"],
                    labels={"dev.kfn.runtime": runtime},
                ),
                target=target,
                history=f"kfn {directory} runtime",
            )
    return f"{config.REGISTRY}/{repository}@{digest}"


def push_all() -> dict[str, str]:
    """Every runtime image, by runtime name, as ``repo@digest``."""
    return {runtime: push_runtime(runtime) for runtime in IMAGES}
