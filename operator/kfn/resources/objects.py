"""Shapes and metadata shared by every child object of a Function."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NotRequired, TypedDict

from kfn.api import function, meta

LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_FUNCTION: Final = "kfn.dev/function"
MANAGER: Final = "kfn"
COMPONENT_FUNCTION: Final = "function"
COMPONENT_VERSION: Final = "function-version"
"""The component of the pods of a version's own Deployment (``<function>-v<N>``)."""
LABEL_VERSION: Final = "kfn.dev/version"
"""On a version's object, its Deployment and their pods: the version's number."""

ANNOTATION_SOURCE_HASH: Final = "kfn.dev/source-hash"


class OwnerReference(TypedDict):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool
    blockOwnerDeletion: bool


class ObjectMeta(TypedDict):
    name: str
    namespace: str
    labels: dict[str, str]
    annotations: NotRequired[dict[str, str]]
    ownerReferences: list[OwnerReference]


class LocalObjectReference(TypedDict):
    name: str


def labels_for(fn: function.Function) -> dict[str, str]:
    """Labels on every child object of a function."""
    return {
        LABEL_NAME: fn.metadata.name,
        LABEL_MANAGED_BY: MANAGER,
        LABEL_FUNCTION: fn.metadata.name,
    }


def pod_labels_for(fn: function.Function) -> dict[str, str]:
    """Labels of a function's pods: the common ones plus the component."""
    return {**labels_for(fn), LABEL_COMPONENT: COMPONENT_FUNCTION}


def selector_for(fn: function.Function) -> dict[str, str]:
    """Selects the function's serving pods.

    The component label keeps other pods labelled with the function (such as its build Job's)
    out of the Service and the Deployment.
    """
    return {LABEL_FUNCTION: fn.metadata.name, LABEL_COMPONENT: COMPONENT_FUNCTION}


def version_selector_for(fn: function.Function, number: int) -> dict[str, str]:
    """Selects the pods of version ``number``'s own Deployment."""
    return {
        LABEL_FUNCTION: fn.metadata.name,
        LABEL_COMPONENT: COMPONENT_VERSION,
        LABEL_VERSION: str(number),
    }


def version_name(fn: function.Function, number: int) -> str:
    """``<function>-v<N>``: a version's object and Deployment."""
    return f"{fn.metadata.name}-v{number}"


def owner_reference(fn: function.Function) -> OwnerReference:
    """Makes the Function the controller of a child, so deleting it deletes the child."""
    if not fn.metadata.uid:
        raise ValueError(f"Function {fn.metadata.name} has no uid; read it from the API first")
    return {
        "apiVersion": meta.API_VERSION,
        "kind": function.KIND,
        "name": fn.metadata.name,
        "uid": fn.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def object_meta(fn: function.Function, *, annotations: dict[str, str] | None = None) -> ObjectMeta:
    """Metadata of a child named after the function, in its namespace."""
    result: ObjectMeta = {
        "name": fn.metadata.name,
        "namespace": fn.metadata.namespace,
        "labels": labels_for(fn),
        "ownerReferences": [owner_reference(fn)],
    }
    if annotations:
        result["annotations"] = annotations
    return result


def contains(live: Any, desired: Any) -> bool:
    """Whether every field of ``desired`` is in ``live`` with the same value.

    Lists must have the same length, element by element (the server keeps the
    order kfn applied); the server's defaults beyond what kfn set are ignored.
    """
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            k in live and contains(live[k], v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    return bool(live == desired)
