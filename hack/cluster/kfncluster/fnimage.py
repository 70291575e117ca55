"""Prebuilt function images for tests and benchmarks: base + kfn runtime + code.

A Function with ``source.image`` runs an image like these. The layers are the
same as the in-cluster builder's (the runtime directory and ``/var/task``),
assembled here with :mod:`kfn.oci` and pushed to the local registry: the python3.11
runtime image (:mod:`kfncluster.runtimeimages`, with its bytecode) plus the code.
"""

from __future__ import annotations

import json
import pathlib
import tempfile
from collections.abc import Mapping

from kfn import oci
from kfncluster import config, runtimeimages
from kfncluster import registry as local_registry

REPO = pathlib.Path(__file__).resolve().parents[3]
RUNTIMES = REPO / "runtime-images"


def push_python_function(repository: str, tag: str, files: Mapping[str, str]) -> str:
    """Pushes the Python runtime with ``files`` in /var/task; returns ``repo@digest``."""
    spec = json.loads((RUNTIMES / "python" / "image.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        code = pathlib.Path(tmp) / "task"
        code.mkdir()
        for name, content in files.items():
            target = code / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        store = oci.BlobStore(pathlib.Path(tmp) / "blobs")
        task = store.layer_from_tree([("var/task", code)])
        digest = oci.extend(
            local_registry.client(),
            oci.Reference.parse(runtimeimages.push_runtime("python3.11")),
            store=store,
            layers=[task],
            overrides=oci.ImageConfig(
                entrypoint=spec["entrypoint"],
                env=spec["env"],
                workdir=spec["workdir"],
                user=spec["user"],
            ),
            target=oci.Reference(config.REGISTRY, repository, tag),
            history="function code",
        )
    return f"{config.REGISTRY}/{repository}@{digest}"
