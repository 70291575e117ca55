"""Init errors answer at once: a syntax error ends the build, a handler that cannot be loaded is
answered with Lambda's error instead of a time-out, and the Function says why.

Invocations go from the test process to the activator Service's ClusterIP, as in
test_scale_from_zero. Timings are printed. Written for the lead to run (``-m cluster``).
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kfncluster import fnimage
from tests.cluster.invoking import invoke, invoke_address, known_to_every_activator
from tests.cluster.kubeutil import (
    apply,
    function_pods,
    kubectl_json,
    python_function,
    scratch_namespace,
    wait_at_zero,
    wait_for,
)

pytestmark = pytest.mark.cluster

GOOD = "def handler(event, context):\n    return {'ok': True}\n"
MISSING_IMPORT = "import kfn_no_such_dependency\n\n\ndef handler(event, context):\n    return 1\n"
#: The Function's timeout: an init error must be answered long before it.
TIMEOUT_S = 30
BUILD_TIMEOUT = 240


@pytest.fixture(scope="module")
def image(cluster: pathlib.Path) -> str:
    return fnimage.push_python_function(
        "tests/init-errors", "v1", {"app.py": GOOD, "broken.py": MISSING_IMPORT}
    )


@pytest.fixture(scope="module")
def namespace(kfn: str) -> Iterator[str]:
    with scratch_namespace("init-errors") as name:
        yield name


@pytest.fixture(scope="module")
def activator(kfn: str) -> tuple[str, int]:
    return invoke_address(kfn)


def function(namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = kubectl_json("-n", namespace, "get", "function", name)
    return result


def condition(fn: dict[str, Any], type_: str) -> dict[str, Any]:
    found = [c for c in fn.get("status", {}).get("conditions", []) if c["type"] == type_]
    return found[0] if found else {}


def wait_condition(
    namespace: str, name: str, type_: str, status: str, reason: str, *, timeout: float = 90
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        fn = function(namespace, name)
        found = condition(fn, type_)
        current = fn.get("status", {}).get("observedGeneration") == fn["metadata"]["generation"]
        if current and (found.get("status"), found.get("reason")) == (status, reason):
            return found
        return None

    return wait_for(f"{name}: {type_}={status} {reason}", probe, timeout=timeout, every=0.3)


# --- at build time ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("runtime", "handler", "files", "where"),
    [
        (
            "python3.11",
            "app.handler",
            {"app.py": "def handler(event, context)\n    return event\n"},
            "app.py, line 1: SyntaxError: expected ':'",
        ),
        (
            "nodejs18",
            "index.handler",
            {
                "index.js": "exports.handler = async () => 1;\n",
                "lib/util.js": "module.exports = {\n  a: 1 +,\n};\n",
            },
            "lib/util.js, line 2: SyntaxError: ",
        ),
    ],
)
def test_a_syntax_error_fails_the_build_naming_file_and_line(
    namespace: str, runtime: str, handler: str, files: dict[str, str], where: str
) -> None:
    name = f"syntax-{runtime[:4]}"
    apply(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "runtime": runtime,
                "handler": handler,
                "source": {
                    "inline": {"files": [{"name": k, "content": v} for k, v in files.items()]}
                },
            },
        }
    )
    built = wait_condition(
        namespace, name, "BuildSucceeded", "False", "CodeCheckFailed", timeout=BUILD_TIMEOUT
    )
    print(f"\n{name}: {built['message']}")
    assert where in built["message"]
    ready = condition(function(namespace, name), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "CodeCheckFailed")


# --- at run time ------------------------------------------------------------------------------


def test_a_handler_that_cannot_be_imported_is_answered_at_once_and_shown(
    namespace: str, image: str, activator: tuple[str, int]
) -> None:
    name = "import-error"
    python_function(
        namespace,
        name,
        image,
        handler="broken.handler",
        timeout=f"{TIMEOUT_S}s",
        scale={"minReplicas": 0, "idleTimeout": "5s"},
    )
    wait_for(f"{name} deployed", lambda: condition(function(namespace, name), "Ready"), 90)
    known_to_every_activator(activator, namespace, name)

    # From zero: the caller waits for the pod, then gets Lambda's error, not a time-out.
    first = asyncio.run(invoke(activator, namespace, name))
    print(f"\nfrom zero: {first.status} in {first.seconds:.2f} s: {first.body[:200]!r}")
    assert first.status == 502, first.body
    assert first.headers.get("kfn-function-error") == "Unhandled"
    error = first.json()
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert error["errorMessage"] == (
        "Unable to import module 'broken': No module named 'kfn_no_such_dependency'"
    )
    assert first.seconds < TIMEOUT_S / 2

    # With the pod up: at once.
    warm = [asyncio.run(invoke(activator, namespace, name)) for _ in range(5)]
    print("warm: " + ", ".join(f"{r.seconds * 1000:.0f} ms" for r in warm))
    assert all(r.status == 502 for r in warm)
    assert max(r.seconds for r in warm) < 2.0

    # The Function says why, and the pod is not counted ready by the kubelet.
    shown = wait_condition(namespace, name, "Ready", "False", "InitError", timeout=60)
    print(f"Ready: {shown['message']}")
    assert "Runtime.ImportModuleError" in shown["message"]
    assert "No module named 'kfn_no_such_dependency'" in shown["message"]
    # (The autoscaler may have started a second pod for the demand no pod could serve.)
    statuses = [
        status
        for pod in function_pods(namespace, name)
        for status in pod["status"].get("containerStatuses") or []
        if status.get("started")
    ]
    assert statuses
    assert {(s["ready"], s["restartCount"]) for s in statuses} == {(False, 0)}

    # At zero it stays shown, until a pod of a changed spec loads.
    wait_at_zero(namespace, name, timeout=90)
    after = condition(function(namespace, name), "Ready")
    assert (after["status"], after["reason"]) == ("False", "InitError")
    python_function(
        namespace,
        name,
        image,
        handler="app.handler",
        timeout=f"{TIMEOUT_S}s",
        scale={"minReplicas": 0, "idleTimeout": "5s"},
    )

    # Invoked once the operator rolled the change out: a request sent before that may
    # wake a pod of the broken version, which answers its init error.
    def rolled_out() -> bool:
        fn = function(namespace, name)
        return fn.get("status", {}).get("observedGeneration") == fn["metadata"]["generation"]

    wait_for(f"{name}'s change rolled out", rolled_out, timeout=60)
    fixed = asyncio.run(invoke(activator, namespace, name))
    assert fixed.status == 200, fixed.body
    assert fixed.json() == {"ok": True}
    wait_condition(namespace, name, "Ready", "True", "Ready", timeout=60)


def test_a_missing_handler_is_answered_at_once_as_handler_not_found(
    namespace: str, image: str, activator: tuple[str, int]
) -> None:
    name = "no-handler"
    python_function(
        namespace,
        name,
        image,
        handler="app.nope",
        timeout=f"{TIMEOUT_S}s",
        scale={"minReplicas": 1},
    )
    shown = wait_condition(namespace, name, "Ready", "False", "InitError", timeout=90)
    assert "Runtime.HandlerNotFound: Handler 'nope' missing on module 'app'" in shown["message"]
    known_to_every_activator(activator, namespace, name)
    started = time.monotonic()
    answer = asyncio.run(invoke(activator, namespace, name))
    print(f"\nHandlerNotFound answered in {time.monotonic() - started:.3f} s")
    assert answer.status == 502
    assert json.loads(answer.body) == {
        "errorType": "Runtime.HandlerNotFound",
        "errorMessage": "Handler 'nope' missing on module 'app'",
        "stackTrace": [],
    }
    assert answer.seconds < 2.0
