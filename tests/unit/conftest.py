"""Fixtures for unit tests: real local servers on loopback ports, never mocks."""

from __future__ import annotations

import json
import pathlib
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest
from kubernetes import client

from kfn import kube, oci
from tests.unit import registries
from tests.unit.operator import kubeapi


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[kubeapi.KubeApi]:
    """The loopback stand-in of the Kubernetes API, which ``kfn.kube`` talks to."""
    fake = kubeapi.KubeApi()
    served = fake.serve()
    url = next(served)
    monkeypatch.setattr(kube, "_api", client.ApiClient(client.Configuration(host=url)))
    yield fake
    next(served, None)


@pytest.fixture
def registry(tmp_path: pathlib.Path) -> Iterator[str]:
    """Debian's docker-registry serving on 127.0.0.1 (skipped where it is not installed)."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("docker-registry is installed by `make cluster`")
    port = _free_port()
    cfg = tmp_path / "registry.yaml"
    cfg.write_text(
        json.dumps(
            {
                "version": 0.1,
                "log": {"level": "error", "accesslog": {"disabled": True}},
                "storage": {"filesystem": {"rootdirectory": str(tmp_path / "registry-data")}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    proc = subprocess.Popen(
        [binary, "serve", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    host = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(f"http://{host}/v2/", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield host
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[registries.TokenRegistry]:
    """A TLS docker-registry with token auth and kfn's token service, shared by the session:
    tests use repositories of their own."""
    with registries.token_registry(tmp_path_factory.mktemp("token-registry")) as found:
        yield found


@pytest.fixture
def base_image(registry: str, tmp_path: pathlib.Path) -> str:
    """A one-layer "runtime" image with an entrypoint, pushed to the loopback ``registry`` as
    ``kfn/runtime-test:1``."""
    root = tmp_path / "base-root"
    (root / "opt" / "kfn").mkdir(parents=True)
    (root / "opt" / "kfn" / "runtime.txt").write_text("the runtime\n")
    store = oci.BlobStore(tmp_path / "base-blobs")
    layer = store.layer_from_tree([("", root)])
    image = store.image([layer], oci.ImageConfig(entrypoint=["runtime"], workdir="/var/task"))
    ref = oci.Reference(registry, "kfn/runtime-test", "1")
    digest = oci.Registry(registry, plain_http=True).push_image(image, ref)
    return f"{registry}/kfn/runtime-test@{digest}"
