"""The operator publishes versions, runs the routed ones apart from $LATEST and keeps a bounded few.

It reconciles against a loopback stand-in of the Kubernetes API
(:mod:`tests.unit.operator.kubeapi`); the Function runs a prebuilt image, so nothing is built.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kfn.operator import reconcile
from kfn.operator import versions as operator_versions
from tests.unit.operator import kubeapi

NS = "team"
FUNCTIONS = f"/apis/kfn.dev/v1alpha1/namespaces/{NS}/functions"
VERSIONS = f"/apis/kfn.dev/v1alpha1/namespaces/{NS}/functionversions"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"

pytestmark = pytest.mark.usefixtures("prebuilt_operator_env")


def _image(n: int) -> str:
    return f"registry.local/fn/team/web@sha256:{n:064x}"


def _deploy(api: kubeapi.KubeApi, image: int, **spec: Any) -> dict[str, Any]:
    """Stores the Function with ``spec`` (its status kept) and reconciles it."""
    live = api.get(FUNCTIONS, "web") or {}
    body = {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "web", "namespace": NS, "generation": 1, **live.get("metadata", {})},
        "spec": {
            "runtime": "python3.13",
            "handler": "app.handler",
            "source": {"image": _image(image)},
            **spec,
        },
        "status": live.get("status", {}),
    }
    api.put(FUNCTIONS, body)
    reconcile.reconcile(json.loads(json.dumps(body)))
    return json.loads(json.dumps(api.get(FUNCTIONS, "web")))


def test_each_deployed_change_is_published_once_with_the_next_number(api: kubeapi.KubeApi) -> None:
    _deploy(api, 1)
    _deploy(api, 1)
    assert api.names(VERSIONS) == ["web-v1"]
    status = _deploy(api, 2)["status"]
    assert api.names(VERSIONS) == ["web-v1", "web-v2"]
    assert status["latestVersion"] == 2
    assert [v["version"] for v in status["versions"]] == [2, 1]
    assert status["versions"][0]["image"] == _image(2)
    v2 = api.get(VERSIONS, "web-v2")
    assert v2 is not None
    assert v2["spec"]["template"]["source"] == {"image": _image(2)}
    assert v2["metadata"]["ownerReferences"][0]["name"] == "web"


def test_an_alias_on_an_older_version_runs_it_in_its_own_deployment(api: kubeapi.KubeApi) -> None:
    _deploy(api, 1)
    _deploy(api, 2, aliases=[{"name": "live", "version": 1}])
    assert api.names(DEPLOYMENTS) == ["web", "web-v1"]
    v1 = api.get(DEPLOYMENTS, "web-v1")
    assert v1 is not None
    assert v1["spec"]["replicas"] == 0  # the autoscaler wakes it on demand
    container = v1["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == _image(1)
    latest = api.get(DEPLOYMENTS, "web")
    assert latest is not None
    assert latest["spec"]["template"]["spec"]["containers"][0]["image"] == _image(2)
    # As in Lambda, a version never shares pods with $LATEST, even when it runs the same code;
    # a version nothing routes to any more has no Deployment.
    _deploy(api, 2, aliases=[{"name": "live", "version": 2}])
    assert api.names(DEPLOYMENTS) == ["web", "web-v2"]
    _deploy(api, 2)
    assert api.names(DEPLOYMENTS) == ["web"]


def test_versions_beyond_the_retention_go_but_a_routed_one_stays(api: kubeapi.KubeApi) -> None:
    _deploy(api, 1, versionRetention=2)
    for image in range(2, 6):
        _deploy(api, image, versionRetention=2, aliases=[{"name": "live", "version": 1}])
    assert api.names(VERSIONS) == ["web-v1", "web-v4", "web-v5"]
    status = _deploy(api, 6, versionRetention=2, aliases=[{"name": "live", "version": 1}])["status"]
    assert api.names(VERSIONS) == ["web-v1", "web-v5", "web-v6"]
    assert status["latestVersion"] == 6


def test_on_request_publishes_when_the_annotation_changes(api: kubeapi.KubeApi) -> None:
    _deploy(api, 1, publish="OnRequest")
    assert api.names(VERSIONS) == []
    live = api.get(FUNCTIONS, "web")
    assert live is not None
    live["metadata"]["annotations"] = {"kfn.dev/publish": "release-1"}
    _deploy(api, 1, publish="OnRequest")
    _deploy(api, 1, publish="OnRequest")
    assert api.names(VERSIONS) == ["web-v1"]


def test_a_changed_publish_annotation_is_a_request_but_the_first_sight_is_not() -> None:
    def body(value: str | None) -> dict[str, Any]:
        annotations = {} if value is None else {"kfn.dev/publish": value}
        return {"metadata": {"namespace": "team-a", "name": "pub", "annotations": annotations}}

    assert not operator_versions.publish_requested(body("t1"))  # the operator just started
    assert not operator_versions.publish_requested(body("t1"))  # unchanged
    assert operator_versions.publish_requested(body("t2 hotfix"))
    assert not operator_versions.publish_requested(body(None))  # taken away: nothing to do
    operator_versions.forget(body(None))
    assert not operator_versions.publish_requested(body("t3"))  # a new Function of that name
