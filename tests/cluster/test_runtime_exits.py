"""A function process that dies mid-request: the caller hears why at once, in Lambda's words.

The kernel's OOM killer ends a handler that goes past the Function's memory; the kubelet
reports the container ``OOMKilled`` and the activator answers ``Runtime.OutOfMemory``. A
handler that exits is answered ``Runtime.ExitError`` with its exit status.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Iterator

import pytest

from kfncluster import fnimage
from tests.cluster.invoking import deploy, invoke, invoke_address, known_to_every_activator
from tests.cluster.kubeutil import scratch_namespace

pytestmark = pytest.mark.cluster

HANDLER = """\
import os


def handler(event, context):
    if event.get("eat_mib"):
        # Written, not only reserved: every page counts against the memory limit.
        hoard = "x" * (event["eat_mib"] << 20)
        return len(hoard)
    if "exit" in event:
        os._exit(event["exit"])
    return {"ok": True}
"""


@pytest.fixture(scope="module")
def image(cluster: pathlib.Path) -> str:
    return fnimage.push_python_function("tests/exits", "v1", {"app.py": HANDLER})


@pytest.fixture(scope="module")
def namespace(kfn: str) -> Iterator[str]:
    with scratch_namespace("exits") as name:
        yield name


@pytest.fixture(scope="module")
def activator(kfn: str) -> tuple[str, int]:
    return invoke_address(kfn)


@pytest.fixture(scope="module")
def function(activator: tuple[str, int], namespace: str, image: str) -> str:
    # 128Mi, Lambda's default memory size, as the limit; one warm pod.
    deploy(namespace, "fragile", image, timeout="20s", scale={"minReplicas": 1})
    known_to_every_activator(activator, namespace, "fragile")
    return "fragile"


def test_a_handler_killed_for_its_memory_is_answered_runtime_out_of_memory(
    activator: tuple[str, int], namespace: str, function: str
) -> None:
    response = asyncio.run(invoke(activator, namespace, function, {"eat_mib": 512}))
    print(f"\nOOM-killed handler answered {response.status} after {response.seconds:.2f} s")
    assert response.status == 502, response.body
    assert response.headers["kfn-function-error"] == "Unhandled"
    assert response.json() == {
        "errorType": "Runtime.OutOfMemory",
        "errorMessage": f"RequestId: {response.headers['kfn-request-id']} Error: "
        "Runtime exited with error: signal: killed",
    }
    # The kubelet's report comes within a couple of seconds, far inside the 20 s timeout.
    assert response.seconds < 5.0


def test_a_handler_that_exits_is_answered_runtime_exit_error_with_its_status(
    activator: tuple[str, int], namespace: str, function: str
) -> None:
    known_to_every_activator(activator, namespace, function)
    response = asyncio.run(invoke(activator, namespace, function, {"exit": 3}))
    print(f"\nexiting handler answered {response.status} after {response.seconds:.2f} s")
    assert response.status == 502, response.body
    assert response.json()["errorType"] == "Runtime.ExitError"
    assert response.json()["errorMessage"].endswith("Runtime exited with error: exit status 3")
    assert response.seconds < 5.0
