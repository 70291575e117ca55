"""Invoking functions through the activator Service from the test process, shared by the
cluster tests of the activator: its two doors' addresses, a Function deployed and Ready, the
invoke API (synchronous and ``Event``, with a token RBAC allows), and the activators' own
memory and metrics."""

from __future__ import annotations

import asyncio
import functools
import json
import urllib.request
from typing import Any

from kfncluster import install
from tests.cluster import httpload
from tests.cluster.kubeutil import kubectl, kubectl_json, python_function, wait_for

#: The ServiceAccount the tests invoke as, bound to kfn-invoker in every namespace.
TESTS_ACCOUNT = "kfn-tests"


def activator_address(kfn: str) -> tuple[str, int]:
    """The activator's public door (HTTP Trigger routes): its Service's ClusterIP and port,
    once the activators and the autoscaler have rolled out."""
    return _service_address(kfn, "kfn-activator")


def invoke_address(kfn: str) -> tuple[str, int]:
    """The activator's invoke door (the invoke API, behind RBAC): its Service's address."""
    return _service_address(kfn, "kfn-invoke")


def _service_address(kfn: str, service: str) -> tuple[str, int]:
    kubectl("-n", kfn, "rollout", "status", "deployment/kfn-activator", "--timeout=120s")
    kubectl("-n", kfn, "rollout", "status", "deployment/kfn-autoscaler", "--timeout=120s")
    found = kubectl_json("-n", kfn, "get", "service", service)
    return found["spec"]["clusterIP"], 80


@functools.cache
def invoke_token() -> str:
    """A token of the ServiceAccount the tests invoke as (audience kfn, valid 12 h), which a
    ClusterRoleBinding to kfn-invoker lets invoke any function."""
    namespace = install.NAMESPACE
    kubectl(
        "apply", "-f", "-",
        input=json.dumps({
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": TESTS_ACCOUNT, "namespace": namespace},
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": f"{TESTS_ACCOUNT}-invoker"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "kfn-invoker",
                    },
                    "subjects": [
                        {"kind": "ServiceAccount", "name": TESTS_ACCOUNT, "namespace": namespace}
                    ],
                },
            ],
        }),
    )  # fmt: skip
    return kubectl(
        "-n", namespace, "create", "token", TESTS_ACCOUNT, "--audience=kfn", "--duration=12h"
    ).strip()  # fmt: skip


def bearer() -> dict[str, str]:
    """The ``Authorization`` header of :func:`invoke_token`."""
    return {"Authorization": f"Bearer {invoke_token()}"}


def deploy(namespace: str, name: str, image: str, **spec: Any) -> None:
    """A Python Function of ``image`` with ``spec``, waited for until Ready for this spec."""
    python_function(namespace, name, image, **spec)

    def ready() -> bool:
        body = kubectl_json("-n", namespace, "get", "function", name)
        status = body.get("status", {})
        conds = {c["type"]: c["status"] for c in status.get("conditions", [])}
        return (
            conds.get("Ready") == "True"
            and status.get("observedGeneration") == body["metadata"]["generation"]
        )

    wait_for(f"Function {name} Ready", ready, timeout=90)


def invoke_path(namespace: str, name: str) -> str:
    return f"/_kfn/functions/{namespace}/{name}/invoke"


async def invoke(
    activator: tuple[str, int], namespace: str, name: str, event: Any = None
) -> httpload.Response:
    """One synchronous invocation with ``event`` (``{}`` when None) as its JSON body, on the
    invoke door ``activator`` (:func:`invoke_address`)."""
    body = json.dumps({} if event is None else event).encode()
    return await httpload.request(
        *activator, "POST", invoke_path(namespace, name), body, headers=bearer()
    )


def known_to_every_activator(activator: tuple[str, int], namespace: str, name: str) -> None:
    """Waits until the activators route the function (GET on the invoke door, with the
    tests' token: 405, not 404).

    A GET never wakes the function; ten 405s in a row make it very likely that every
    activator behind the Service knows it.
    """
    headers = bearer()

    async def probe() -> bool:
        for _ in range(10):
            response = await httpload.request(
                *activator, "GET", invoke_path(namespace, name), headers=headers
            )
            if response.status != 405:
                return False
        return True

    wait_for(f"the activators to know {name}", lambda: asyncio.run(probe()), timeout=30)


def activator_memory_mib(field: str) -> list[float]:
    """``field`` (VmRSS, VmHWM) of each activator pod's process, in MiB, in pod-name order."""
    pods = kubectl(
        "-n", install.NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/component=activator",
        "--field-selector=status.phase=Running", "-o", "jsonpath={.items[*].metadata.name}",
    ).split()  # fmt: skip
    values = []
    for pod in sorted(pods):
        status = kubectl("-n", install.NAMESPACE, "exec", pod, "--", "cat", "/proc/1/status")
        line = next(ln for ln in status.splitlines() if ln.startswith(f"{field}:"))
        values.append(int(line.split()[1]) / 1024)
    return values


async def invoke_event(
    activator: tuple[str, int], namespace: str, name: str, event: Any = None
) -> httpload.Response:
    """One asynchronous (``Event``) invocation with ``event`` as its JSON body: 202 and its
    request id once the activator has stored it."""
    body = json.dumps({} if event is None else event).encode()
    return await httpload.request(
        *activator,
        "POST",
        invoke_path(namespace, name),
        body,
        headers={"Kfn-Invocation-Type": "Event", **bearer()},
    )


def activator_pods() -> list[dict[str, Any]]:
    """The running activator pods."""
    return list(
        kubectl_json(
            "-n", install.NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/component=activator",
            "--field-selector=status.phase=Running",
        )["items"]
    )  # fmt: skip


def activator_metric(name: str, **labels: str) -> float:
    """The sum over the running activators of a metric's samples that carry ``labels``
    (scraped from each pod's metrics port, which the test machine reaches)."""
    total = 0.0
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    for pod in activator_pods():
        ip = pod["status"].get("podIP")
        if not ip:
            continue
        try:
            with urllib.request.urlopen(f"http://{ip}:9090/metrics", timeout=5) as response:
                page = response.read().decode()
        except OSError:
            continue
        for line in page.splitlines():
            if line.startswith(name) and all(label in line for label in wanted):
                total += float(line.rsplit(" ", 1)[1])
    return total
