"""A new Function's Deployment starts with ``initialScale`` pods, else ``minReplicas``; later
reconciles leave the replica count to the autoscaler.

It reconciles against a loopback stand-in of the Kubernetes API
(:mod:`tests.unit.operator.kubeapi`); the Function runs a prebuilt image, so nothing is built.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kfn.operator import reconcile
from tests.unit.operator import kubeapi

NS = "team"
FUNCTIONS = f"/apis/kfn.dev/v1alpha1/namespaces/{NS}/functions"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"
IMAGE = f"registry.local/fn/team/web@sha256:{1:064x}"

pytestmark = pytest.mark.usefixtures("prebuilt_operator_env")


def _deploy(api: kubeapi.KubeApi, scale: dict[str, Any]) -> int:
    """Stores the Function with ``spec.scale`` and reconciles it; the Deployment's replicas."""
    body = {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "web", "namespace": NS, "generation": 1, "uid": "u-web"},
        "spec": {
            "runtime": "python3.13",
            "handler": "app.handler",
            "source": {"image": IMAGE},
            "scale": scale,
        },
    }
    api.put(FUNCTIONS, body)
    reconcile.reconcile(json.loads(json.dumps(body)))
    deployment = api.get(DEPLOYMENTS, "web")
    assert deployment is not None
    replicas = deployment["spec"]["replicas"]
    assert isinstance(replicas, int)
    return replicas


def test_a_new_function_starts_with_min_replicas_when_it_names_no_initial_scale(
    api: kubeapi.KubeApi,
) -> None:
    assert _deploy(api, {"minReplicas": 2}) == 2


def test_a_new_function_starts_with_its_initial_scale(api: kubeapi.KubeApi) -> None:
    assert _deploy(api, {"initialScale": 3}) == 3


def test_an_initial_scale_of_zero_deploys_without_a_pod(api: kubeapi.KubeApi) -> None:
    assert _deploy(api, {"initialScale": 0}) == 0


def test_a_changed_initial_scale_leaves_a_running_deployment_to_the_autoscaler(
    api: kubeapi.KubeApi,
) -> None:
    assert _deploy(api, {"initialScale": 3}) == 3
    # The autoscaler scaled it since; the operator does not write replicas again.
    deployment = api.get(DEPLOYMENTS, "web")
    assert deployment is not None
    deployment["spec"]["replicas"] = 1
    assert _deploy(api, {"initialScale": 5}) == 1
