"""The Service and ServiceAccount of a Function."""

from __future__ import annotations

from typing import Final, Literal, TypedDict

from kfn.api import function
from kfn.resources import objects

SERVICE_PORT: Final = 80


class ServicePort(TypedDict):
    name: str
    port: int
    targetPort: str
    protocol: Literal["TCP"]


class ServiceSpec(TypedDict):
    type: Literal["ClusterIP"]
    selector: dict[str, str]
    ports: list[ServicePort]


class Service(TypedDict):
    apiVersion: Literal["v1"]
    kind: Literal["Service"]
    metadata: objects.ObjectMeta
    spec: ServiceSpec


class ServiceAccount(TypedDict):
    apiVersion: Literal["v1"]
    kind: Literal["ServiceAccount"]
    metadata: objects.ObjectMeta
    automountServiceAccountToken: bool


def build_service(fn: function.Function) -> Service:
    """A ClusterIP Service on port 80 in front of the function's pods.

    The activator finds ready pods through this Service's EndpointSlices; clients inside the
    cluster may also call it directly when the function is known to be running.
    """
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": objects.object_meta(fn),
        "spec": {
            "type": "ClusterIP",
            "selector": objects.selector_for(fn),
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def service_account_name(fn: function.Function) -> str:
    """The ServiceAccount the pods run as: the user's, or one named after the function."""
    return fn.spec.service_account_name or fn.metadata.name


def build_service_account(fn: function.Function) -> ServiceAccount | None:
    """A ServiceAccount without API access, or ``None`` when the user names their own.

    No Role is bound to it and its token is not mounted: a function's code should reach the
    Kubernetes API only when its owner grants that on purpose with their own ServiceAccount.
    """
    if fn.spec.service_account_name is not None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": objects.object_meta(fn),
        "automountServiceAccountToken": False,
    }
