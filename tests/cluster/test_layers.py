"""Layers in the cluster: a Function with an archive layer and an image layer, built by kfn.

The archive is served from the node (as ``test_builds`` serves archives: pods reach the node,
nothing off the machine does); the image is pushed to kfn's registry under the namespace's own
repositories, which its build credential may pull. The handler imports from both layers and
shows the precedence: the later layer over the earlier, the function's own dependency (six from
the package proxy) over both layers' copies, ``/opt/bin`` on ``PATH``. A code change rebuilds
without fetching the layers again.
"""

from __future__ import annotations

import hashlib
import pathlib
import tempfile
from collections.abc import Iterator

import pytest

from kfn import oci
from kfncluster import config
from kfncluster import registry as local_registry
from tests.cluster import archives
from tests.cluster.kubeutil import kubectl, scratch_namespace
from tests.cluster.test_builds import answer, apply, build_jobs, python_function, wait_deployed

pytestmark = pytest.mark.cluster

HANDLER = """\
import shutil

import from_archive
import from_image
import greeting
import six


def handler(event, context):
    return {
        "archive": from_archive.WHO,
        "image": from_image.WHO,
        "greeting": greeting.WHO,
        "six": six.__version__,
        "tool": shutil.which("kfn-layer-tool"),
        "version": VERSION,
    }
"""
SITE = "python/lib/python3.11/site-packages"


@pytest.fixture
def namespace(kfn: str) -> Iterator[str]:
    with scratch_namespace("layers") as name:
        yield name


@pytest.fixture
def served() -> Iterator[tuple[str, dict[str, bytes], dict[str, int]]]:
    """An HTTP server on the node IP, its files, and how often each path was fetched."""
    with archives.serving() as server:
        yield server.url, server.files, server.hits


def _push_layer_image(repository: str, files: dict[str, tuple[str, int]]) -> str:
    """An image holding only /opt (``files``: path below /opt → content, mode), pushed to kfn's
    registry; its reference by digest."""
    with tempfile.TemporaryDirectory() as tmp:
        opt = pathlib.Path(tmp) / "opt"
        for name, (content, mode) in files.items():
            path = opt / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            path.chmod(mode)
        store = oci.BlobStore(pathlib.Path(tmp) / "blobs")
        image = store.image([store.layer_from_tree([("opt", opt)])], oci.ImageConfig())
        ref = oci.Reference(config.REGISTRY, repository, "1")
        digest = local_registry.client().push_image(image, ref)
    return f"{config.REGISTRY}/{repository}@{digest}"


def test_a_function_imports_from_two_layers_and_its_own_dependency_wins(
    namespace: str, served: tuple[str, dict[str, bytes], dict[str, int]]
) -> None:
    base, files, hits = served
    archive = archives.zipped({
        "python/from_archive.py": "WHO = 'archive layer'\n",
        "python/greeting.py": "WHO = 'archive layer'\n",
        "python/six.py": "__version__ = 'archive layer'\n",
    })  # fmt: skip
    files["/shared.zip"] = archive
    image = _push_layer_image(
        f"fn/{namespace}/layer-tools",
        {
            f"{SITE}/from_image.py": ("WHO = 'image layer'\n", 0o644),
            f"{SITE}/six.py": ("__version__ = 'image layer'\n", 0o644),
            "python/greeting.py": ("WHO = 'image layer'\n", 0o644),
            "bin/kfn-layer-tool": ("#!/bin/sh\necho tool\n", 0o755),
        },
    )
    layers = [
        {
            "name": "shared",
            "archive": {
                "url": f"{base}/shared.zip",
                "sha256": hashlib.sha256(archive).hexdigest(),
            },
        },
        {"name": "tools", "image": image},
    ]
    fn = python_function(
        "layered", HANDLER + "VERSION = 1\n", dependencies=["six==1.16.0"], layers=layers
    )
    apply(namespace, fn)
    first = wait_deployed(namespace, "layered")
    answer(
        namespace,
        "layered",
        {},
        {
            "archive": "archive layer",
            "image": "image layer",
            "greeting": "image layer",  # the later layer's file over the earlier one's
            "six": "1.16.0",  # the function's own dependency over both layers' copies
            "tool": "/opt/bin/kfn-layer-tool",
            "version": 1,
        },
    )
    recorded = first["status"]["layers"]
    assert len(recorded) == 2
    assert hits == {"/shared.zip": 1}

    # New code, the same layers: rebuilt without fetching or making them again.
    apply(
        namespace,
        python_function(
            "layered", HANDLER + "VERSION = 2\n", dependencies=["six==1.16.0"], layers=layers
        ),
    )
    second = wait_deployed(namespace, "layered", not_image=first["status"]["image"])
    assert hits == {"/shared.zip": 1}
    assert {la["digest"] for la in second["status"]["layers"]} == {la["digest"] for la in recorded}
    reused = [
        kubectl("-n", namespace, "logs", f"job/{job}", "-c", "build").count(
            "unchanged, reusing layer"
        )
        for job in build_jobs(namespace, "layered")
    ]
    assert sorted(reused) == [0, 2]
