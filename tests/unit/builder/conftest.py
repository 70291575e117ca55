"""A base image in the loopback registry (``registry``, from tests/unit/conftest.py)."""

from __future__ import annotations

import pathlib

import pytest

from kfn import oci


@pytest.fixture
def base_image(registry: str, tmp_path: pathlib.Path) -> str:
    """A one-layer "runtime" image with an entrypoint, pushed as ``kfn/runtime-test:1``."""
    root = tmp_path / "base-root"
    (root / "opt" / "kfn").mkdir(parents=True)
    (root / "opt" / "kfn" / "runtime.txt").write_text("the runtime\n")
    store = oci.BlobStore(tmp_path / "base-blobs")
    layer = store.layer_from_tree([("", root)])
    image = store.image([layer], oci.ImageConfig(entrypoint=["runtime"], workdir="/var/task"))
    ref = oci.Reference(registry, "kfn/runtime-test", "1")
    digest = oci.Registry(registry, plain_http=True).push_image(image, ref)
    return f"{registry}/kfn/runtime-test@{digest}"
