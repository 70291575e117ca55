"""Small helpers for cluster tests: kubectl, waiting, and test images."""

from __future__ import annotations

import contextlib
import json
import pathlib
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from kfn import oci
from kfncluster import config
from kfncluster import registry as local_registry

REPO = pathlib.Path(__file__).resolve().parents[2]
KUBECONFIG = REPO / ".kfn" / "kubeconfig"
KUBECTL = config.Paths().bin / "kubectl"

T = TypeVar("T")


def kubectl(*args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> str:
    result = subprocess.run(
        [str(KUBECTL), f"--kubeconfig={KUBECONFIG}", *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def kubectl_json(*args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json"))


def apply(obj: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(obj))


def python_function(namespace: str, name: str, image: str, **spec: Any) -> None:
    """Applies a Function running ``app.handler`` of a python3.11 image; ``spec`` adds to
    or replaces fields of its spec."""
    base = {"runtime": "python3.11", "handler": "app.handler", "source": {"image": image}}
    apply(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": name, "namespace": namespace},
            "spec": base | spec,
        }
    )


def function_pods(namespace: str, name: str) -> list[dict[str, Any]]:
    """The pods serving the Function (its build Jobs' pods carry its name too, not this)."""
    selector = f"kfn.dev/function={name},app.kubernetes.io/component=function"
    return list(kubectl_json("-n", namespace, "get", "pods", "-l", selector)["items"])


def wait_at_zero(namespace: str, name: str, timeout: float = 60) -> None:
    """Waits until the Function's Deployment is scaled to zero and its pods are gone."""

    def at_zero() -> bool:
        deployment = kubectl_json("-n", namespace, "get", "deployment", name)
        return deployment["spec"].get("replicas", 0) == 0 and not function_pods(namespace, name)

    wait_for(f"{name} at zero with no pods left", at_zero, timeout=timeout, every=0.3)


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 60, every: float = 0.2
) -> T:
    """Polls ``probe`` until it returns something truthy; fails naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except (AssertionError, OSError, ValueError) as exc:
            last = exc
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last error: {last}")


@contextlib.contextmanager
def scratch_namespace(prefix: str) -> Iterator[str]:
    """A namespace of its own for a test, deleted (without waiting) afterwards."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false")


def apply_crds() -> None:
    crds = sorted((REPO / "crds").glob("*.yaml"))
    if crds:
        for crd in crds:
            kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
        kubectl("wait", "--for=condition=Established", "--timeout=60s", *(
            f"-f={c}" for c in crds
        ))  # fmt: skip


def push_python_app(repository: str, tag: str, files: dict[str, str], cmd: list[str]) -> str:
    """Pushes the Debian Python base plus ``files`` under /app; returns ``repo@digest``."""
    import tempfile  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp) / "app"
        root.mkdir()
        for name, content in files.items():
            (root / name).write_text(content)
        store = oci.BlobStore(pathlib.Path(tmp) / "blobs")
        layer = store.layer_from_tree([("app", root)])
        registry = local_registry.client()
        target = oci.Reference(config.REGISTRY, repository, tag)
        digest = oci.extend(
            registry,
            oci.Reference.parse(config.BASE_PYTHON_IMAGE),
            store=store,
            layers=[layer],
            overrides=oci.ImageConfig(cmd=cmd, workdir="/app", user="65532"),
            target=target,
            history="test application",
        )
    return f"{config.REGISTRY}/{repository}@{digest}"


#: The node's address on the pod bridge, where the brokers listen and test sinks bind.
NODE = "10.244.0.1"


def require_listening(port: int, component: str) -> None:
    """Fails (never skips) when a broker the cluster starts does not answer on the node."""
    try:
        with socket.create_connection((NODE, port), timeout=2):
            return
    except OSError as exc:
        log = f"/var/lib/kfn-cluster/logs/{component}.log"
        message = f"{component} does not answer on {NODE}:{port} ({exc}): read {log}"
        raise AssertionError(message) from None
