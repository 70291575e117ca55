"""The NetworkPolicy that lets only kfn's activator reach a Function's pods.

Every request to a function passes the activator, which counts it for the autoscaler, holds it
while pods start, bounds it and (on the invoke door) checks the caller's right to invoke. A pod
that any other pod could call on its IP would skip all of that: a caller could stretch its
deadline, flood it past its concurrency or invoke it without the right. The policy admits
ingress to the runtime's port only from the activator's pods; the kubelet's probes come from
the node, which NetworkPolicy implementations admit by design. Egress is left to the cluster
admin (functions call databases, brokers and APIs of their owners' choosing).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Final, Literal, NotRequired, TypedDict

from kfn.api import function
from kfn.resources import objects
from kfn.resources.deployment import CONTAINER_PORT

#: The label the API server sets on every namespace to its own name (Kubernetes 1.21+).
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"


@dataclasses.dataclass(frozen=True)
class Peers:
    """Where the activator's pods run: its namespace and the labels that select its pods
    (the chart passes its release's; two releases in one cluster admit only their own)."""

    namespace: str
    pod_labels: Mapping[str, str]


class LabelSelector(TypedDict):
    matchLabels: dict[str, str]
    matchExpressions: NotRequired[list[dict[str, Any]]]


class PolicyPeer(TypedDict):
    namespaceSelector: LabelSelector
    podSelector: LabelSelector


class PolicyPort(TypedDict):
    protocol: Literal["TCP"]
    port: int


class NetworkPolicySpec(TypedDict):
    podSelector: LabelSelector
    policyTypes: list[Literal["Ingress"]]
    # Each rule holds ``from``, a Python keyword, so rules are plain mappings.
    ingress: list[dict[str, Any]]


class NetworkPolicy(TypedDict):
    apiVersion: Literal["networking.k8s.io/v1"]
    kind: Literal["NetworkPolicy"]
    metadata: objects.ObjectMeta
    spec: NetworkPolicySpec


def build_network_policy(fn: function.Function, peers: Peers) -> NetworkPolicy:
    """Ingress to the function's serving pods, those of ``$LATEST`` and of every version's own
    Deployment: the runtime's port, from the activator only."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": objects.object_meta(fn),
        "spec": {
            "podSelector": {
                "matchLabels": {objects.LABEL_FUNCTION: fn.metadata.name},
                "matchExpressions": [
                    {
                        "key": objects.LABEL_COMPONENT,
                        "operator": "In",
                        "values": [objects.COMPONENT_FUNCTION, objects.COMPONENT_VERSION],
                    }
                ],
            },
            "policyTypes": ["Ingress"],
            "ingress": activator_ingress(peers),
        },
    }


def activator_ingress(peers: Peers) -> list[dict[str, Any]]:
    """The one ingress rule of every policy kfn keeps in front of runtime pods (a function's,
    a warm pool's): the runtime's port, from the activator's pods only."""
    peer: PolicyPeer = {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: peers.namespace}},
        "podSelector": {"matchLabels": dict(peers.pod_labels)},
    }
    port: PolicyPort = {"protocol": "TCP", "port": CONTAINER_PORT}
    return [{"from": [peer], "ports": [port]}]


def peers_from_json(text: str) -> Peers | None:
    """The chart's ``networkPolicy`` setting as the operator receives it (``KFN_NETWORK_POLICY``):
    ``{"activatorNamespace": ..., "activatorPodLabels": {...}}``, or empty when turned off.

    Raises ValueError naming what is wrong, so a bad chart value stops the operator at start
    rather than leaving functions open or unreachable.
    """
    if not text.strip():
        return None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"KFN_NETWORK_POLICY is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError("KFN_NETWORK_POLICY must be a JSON object")
    namespace = raw.get("activatorNamespace")
    labels = raw.get("activatorPodLabels")
    if not isinstance(namespace, str) or not namespace:
        raise ValueError("KFN_NETWORK_POLICY needs activatorNamespace, a namespace name")
    if (
        not isinstance(labels, dict)
        or not labels
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
    ):
        raise ValueError("KFN_NETWORK_POLICY needs activatorPodLabels, a non-empty label map")
    return Peers(namespace=namespace, pod_labels=dict(labels))
