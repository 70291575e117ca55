"""Each Function's pods admit only the activator: the operator keeps a NetworkPolicy beside them.

The operator reconciles against a loopback stand-in of the Kubernetes API
(:mod:`tests.unit.operator.kubeapi`); the Function runs a prebuilt image, so nothing is built.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kfn.operator import reconcile, settings
from kfn.resources import network
from tests.unit.operator import kubeapi

NS = "team"
FUNCTIONS = f"/apis/kfn.dev/v1alpha1/namespaces/{NS}/functions"
POLICIES = f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies"
IMAGE = "registry.local/fn/team/web@sha256:" + "a" * 64
ACTIVATOR = {"app.kubernetes.io/instance": "kfn", "app.kubernetes.io/component": "activator"}
CHART_SETTING = json.dumps({"activatorNamespace": "kfn-system", "activatorPodLabels": ACTIVATOR})


pytestmark = pytest.mark.usefixtures("prebuilt_operator_env")


@pytest.fixture
def network_policy_setting() -> str:
    """The chart's setting: this release's activators are the pods' only peers."""
    return CHART_SETTING


def _function(api: kubeapi.KubeApi) -> dict[str, Any]:
    found = api.get(FUNCTIONS, "web") or api.put(
        FUNCTIONS,
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": "web", "namespace": NS, "generation": 1},
            "spec": {"runtime": "python3.11", "handler": "app.handler", "source": {"image": IMAGE}},
        },
    )
    return json.loads(json.dumps(found))


# --- the policy -------------------------------------------------------------------------------


def test_a_functions_pods_admit_only_this_releases_activators_on_the_runtimes_port(
    api: kubeapi.KubeApi,
) -> None:
    reconcile.reconcile(_function(api))
    policy = api.get(POLICIES, "web")
    assert policy is not None
    assert policy["metadata"]["ownerReferences"][0]["kind"] == "Function"
    spec = policy["spec"]
    # The pods of $LATEST and of every version's own Deployment.
    assert spec["podSelector"] == {
        "matchLabels": {"kfn.dev/function": "web"},
        "matchExpressions": [
            {
                "key": "app.kubernetes.io/component",
                "operator": "In",
                "values": ["function", "function-version"],
            }
        ],
    }
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    assert rule["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kfn-system"}},
            "podSelector": {"matchLabels": ACTIVATOR},
        }
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]


def test_a_policy_widened_by_hand_counts_as_drift_and_is_put_back(api: kubeapi.KubeApi) -> None:
    body = _function(api)
    reconcile.reconcile(body)
    widened = json.loads(json.dumps(api.get(POLICIES, "web")))
    widened["spec"]["ingress"] = [{}]
    assert reconcile.drifted(body, widened)
    assert not reconcile.drifted(body, api.get(POLICIES, "web") or {})


def test_turning_the_policies_off_deletes_the_ones_kfn_made_and_no_other(
    api: kubeapi.KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    reconcile.reconcile(_function(api))
    api.put(POLICIES, {"metadata": {"name": "teams-own", "namespace": NS}, "spec": {}})
    monkeypatch.setenv("KFN_NETWORK_POLICY", "")
    settings.network_peers.cache_clear()
    reconcile.reconcile(_function(api))
    assert api.names(POLICIES) == ["teams-own"]


def test_deleting_a_function_deletes_its_policy_after_its_pods(api: kubeapi.KubeApi) -> None:
    body = _function(api)
    reconcile.reconcile(body)
    gone = reconcile.delete_children(body)
    assert gone[-1] == "NetworkPolicy/web"
    assert "Deployment/web" in gone
    assert api.names(POLICIES) == []


# --- the chart's setting ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("{", "is not JSON"),
        ("[]", "must be a JSON object"),
        ('{"activatorPodLabels": {"a": "b"}}', "needs activatorNamespace"),
        ('{"activatorNamespace": "kfn-system", "activatorPodLabels": {}}', "needs activatorPod"),
        ('{"activatorNamespace": "kfn-system", "activatorPodLabels": {"a": 1}}', "label map"),
    ],
)
def test_a_malformed_setting_is_refused_naming_what_is_wrong(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        network.peers_from_json(text)


def test_an_empty_setting_turns_the_policies_off() -> None:
    assert network.peers_from_json("") is None
    assert network.peers_from_json("  ") is None
