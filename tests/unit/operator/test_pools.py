"""The operator keeps each opted-in namespace's warm pools, and retires claimed pool pods.

It runs against the loopback stand-in of the Kubernetes API (:mod:`tests.unit.operator.kubeapi`);
the decisions themselves are :mod:`kfn.resources.pools`' (``tests/unit/resources/test_pools.py``).
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Iterator
from typing import Any

import kopf
import pytest

from kfn.operator import handlers, pools, reconcile, settings
from kfn.resources import pools as rules
from tests.unit.operator import kubeapi

NS = "team"
FUNCTIONS = f"/apis/kfn.dev/v1alpha1/namespaces/{NS}/functions"
REPLICASETS = f"/apis/apps/v1/namespaces/{NS}/replicasets"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"
PODS = f"/api/v1/namespaces/{NS}/pods"
ACCOUNTS = f"/api/v1/namespaces/{NS}/serviceaccounts"
POLICIES = f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies"
IMAGE = "registry.local/fn/team/web@sha256:" + "a" * 64
ACTIVATOR = {"app.kubernetes.io/instance": "kfn", "app.kubernetes.io/component": "activator"}
NOW = datetime.datetime(2026, 12, 5, 8, 0, tzinfo=datetime.UTC)
OPTED_IN = {"kfn.dev/warm-pools": "enabled"}

pytestmark = pytest.mark.usefixtures("prebuilt_operator_env", "pool_state")


@pytest.fixture
def network_policy_setting() -> str:
    return json.dumps({"activatorNamespace": "kfn-system", "activatorPodLabels": ACTIVATOR})


@pytest.fixture
def pool_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The chart's default size, 2; what the operator remembers of namespaces is forgotten."""
    monkeypatch.setenv("KFN_WARM_POOL_DEFAULT_SIZE", "2")
    settings.warm_pool_default_size.cache_clear()
    yield
    settings.warm_pool_default_size.cache_clear()
    pools.forget_namespace(NS)
    # The looks again a test scheduled would come after it, against nothing.
    with handlers._recheck_lock:
        timers = list(handlers._rechecks.values())
        handlers._rechecks.clear()
    for timer in timers:
        timer.cancel()


def _namespace(labels: dict[str, str] | None = None, **annotations: str) -> None:
    pools.observe_namespace(
        {"metadata": {"name": NS, "labels": labels or {}, "annotations": annotations}}
    )


def _function(api: kubeapi.KubeApi, name: str, **spec: Any) -> dict[str, Any]:
    body = api.put(
        FUNCTIONS,
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": name, "namespace": NS, "generation": 1},
            "spec": {
                "runtime": "python3.11",
                "handler": "app.handler",
                "source": {"inline": {"files": [{"name": "app.py", "content": "x"}]}},
                **spec,
            },
        },
    )
    return json.loads(json.dumps(body))


def _pod(name: str, state: str, *, fn: str | None = None, pool: str = "abc") -> dict[str, Any]:
    labels = {**rules.labels(), rules.LABEL_POOL: pool, rules.LABEL_POOL_STATE: state}
    if fn is not None:
        labels["kfn.dev/function"] = fn
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "labels": labels},
    }


# --- the pools of a namespace ---------------------------------------------------------------


def test_an_opted_in_namespace_gets_one_pool_per_key_behind_the_activator(
    api: kubeapi.KubeApi,
) -> None:
    _namespace(OPTED_IN)
    _function(api, "a")
    _function(api, "b", env=[{"name": "X", "value": "y"}])
    _function(api, "c", runtime="nodejs22", handler="index.handler")
    _function(api, "d", source={"image": IMAGE})
    done = pools.reconcile_namespace(NS)
    names = api.names(REPLICASETS)
    assert len(names) == 2
    assert sorted(done) == sorted(f"ReplicaSet/{n}" for n in names)
    assert {n.rsplit("-", 1)[0] for n in names} == {"kfn-pool-python3-11", "kfn-pool-nodejs22"}
    for name in names:
        replicaset = api.get(REPLICASETS, name)
        assert replicaset is not None
        assert replicaset["spec"]["replicas"] == 2  # the chart's default
    account = api.get(ACCOUNTS, "kfn.pool")
    assert account is not None
    assert account["automountServiceAccountToken"] is False
    policy = api.get(POLICIES, "kfn.pool")
    assert policy is not None
    assert policy["spec"]["ingress"][0]["from"][0]["podSelector"] == {"matchLabels": ACTIVATOR}
    # The policy is applied before the pods it guards.
    applied = [path for method, path in api.requests if method == "PATCH"]
    assert applied.index(next(p for p in applied if "networkpolicies" in p)) < applied.index(
        next(p for p in applied if "replicasets" in p)
    )


def test_a_pool_as_wanted_is_left_alone_and_one_changed_by_hand_is_put_back(
    api: kubeapi.KubeApi,
) -> None:
    _namespace(OPTED_IN)
    _function(api, "a")
    pools.reconcile_namespace(NS)
    (name,) = api.names(REPLICASETS)
    assert pools.reconcile_namespace(NS) == []
    replicaset = api.get(REPLICASETS, name)
    assert replicaset is not None
    replicaset["spec"]["replicas"] = 9
    assert pools.reconcile_namespace(NS) == [f"ReplicaSet/{name}"]
    assert replicaset["spec"]["replicas"] == 2


def test_the_size_annotation_sizes_every_pool_of_the_namespace(api: kubeapi.KubeApi) -> None:
    _namespace(OPTED_IN, **{"kfn.dev/warm-pool-size": "5"})
    _function(api, "a")
    pools.reconcile_namespace(NS)
    (name,) = api.names(REPLICASETS)
    replicaset = api.get(REPLICASETS, name)
    assert replicaset is not None
    assert replicaset["spec"]["replicas"] == 5


def test_a_namespace_not_opted_in_gets_no_pool(api: kubeapi.KubeApi) -> None:
    _namespace()
    _function(api, "a")
    assert pools.reconcile_namespace(NS) == []
    assert api.names(REPLICASETS) == []
    assert api.names(ACCOUNTS) == []
    assert api.names(POLICIES) == []


def test_nothing_is_done_in_a_namespace_the_operator_has_not_seen_yet(
    api: kubeapi.KubeApi,
) -> None:
    _function(api, "a")
    assert pools.reconcile_namespace(NS) == []
    assert api.requests == []


def test_opting_out_deletes_the_pools_but_keeps_the_policy_while_a_claimed_pod_runs(
    api: kubeapi.KubeApi,
) -> None:
    _namespace(OPTED_IN)
    _function(api, "a")
    pools.reconcile_namespace(NS)
    api.put(PODS, _pod("served", rules.STATE_SPECIALISED, fn="a"))
    _namespace()
    pools.reconcile_namespace(NS)
    assert api.names(REPLICASETS) == []
    assert api.names(POLICIES) == ["kfn.pool"]
    api.objects[PODS].clear()
    done = pools.reconcile_namespace(NS)
    assert "NetworkPolicy/kfn.pool deleted" in done
    assert "ServiceAccount/kfn.pool deleted" in done
    assert api.names(POLICIES) == []
    assert api.names(ACCOUNTS) == []


def test_a_pool_no_function_wants_any_more_is_deleted(api: kubeapi.KubeApi) -> None:
    _namespace(OPTED_IN)
    _function(api, "a")
    pools.reconcile_namespace(NS)
    (before,) = api.names(REPLICASETS)
    _function(api, "a", resources={"requests": {"cpu": "1", "memory": "1Gi"}})
    done = pools.reconcile_namespace(NS)
    (after,) = api.names(REPLICASETS)
    assert after != before
    assert f"ReplicaSet/{before} deleted" in done


def test_a_users_own_kfn_pool_account_is_never_deleted(api: kubeapi.KubeApi) -> None:
    api.put(ACCOUNTS, {"metadata": {"name": "kfn.pool", "namespace": NS, "labels": {}}})
    _namespace()
    pools.reconcile_namespace(NS)
    assert api.names(ACCOUNTS) == ["kfn.pool"]


def test_idle_pods_of_an_older_template_are_deleted_for_their_replicaset_to_replace(
    api: kubeapi.KubeApi,
) -> None:
    _namespace(OPTED_IN)
    _function(api, "a")
    pools.reconcile_namespace(NS)
    (name,) = api.names(REPLICASETS)
    replicaset = api.get(REPLICASETS, name)
    assert replicaset is not None
    pool = replicaset["metadata"]["labels"][rules.LABEL_POOL]
    current = replicaset["spec"]["template"]["metadata"]["annotations"]
    fresh, old = _pod("fresh", "idle", pool=pool), _pod("old", "idle", pool=pool)
    fresh["metadata"]["annotations"] = dict(current)
    old["metadata"]["annotations"] = {rules.ANNOTATION_POOL_TEMPLATE: "0000000000"}
    api.put(PODS, fresh)
    api.put(PODS, old)
    api.put(PODS, _pod("claimed", rules.STATE_CLAIMED, fn="a", pool=pool))
    assert "Pod/old deleted (older template)" in pools.reconcile_namespace(NS)
    assert api.names(PODS) == ["claimed", "fresh"]


def test_a_namespace_is_resynced_at_most_once_in_five_minutes() -> None:
    assert pools.resync_due(NS, NOW)
    assert not pools.resync_due(NS, NOW + datetime.timedelta(seconds=299))
    assert pools.resync_due(NS, NOW + datetime.timedelta(seconds=300))


# --- the WarmPool condition ---------------------------------------------------------------------


def _warm_pool(api: kubeapi.KubeApi, name: str) -> dict[str, Any]:
    body = api.get(FUNCTIONS, name)
    assert body is not None
    return next(c for c in body["status"]["conditions"] if c["type"] == "WarmPool")


def test_a_reconciled_function_says_why_its_cold_starts_come_from_no_pool(
    api: kubeapi.KubeApi,
) -> None:
    _namespace()
    reconcile.reconcile(_function(api, "web", source={"image": IMAGE}))
    condition = _warm_pool(api, "web")
    assert (condition["status"], condition["reason"]) == ("False", "NamespaceNotOptedIn")
    _namespace(OPTED_IN)
    reconcile.reconcile(_function(api, "web", source={"image": IMAGE}))
    condition = _warm_pool(api, "web")
    assert (condition["status"], condition["reason"]) == ("False", "PrebuiltImage")


def test_a_function_whose_condition_lags_its_namespace_is_found_without_a_request(
    api: kubeapi.KubeApi,
) -> None:
    _namespace()
    body = _function(api, "web", source={"image": IMAGE})
    reconcile.reconcile(body)
    written = api.get(FUNCTIONS, "web")
    assert written is not None
    assert not pools.warm_pool_changed(written)
    _namespace(OPTED_IN)
    count = len(api.requests)
    assert pools.warm_pool_changed(written)
    assert len(api.requests) == count


# --- claimed pods -------------------------------------------------------------------------------


def test_a_specialised_pod_is_deleted_once_its_functions_deployment_has_a_ready_pod(
    api: kubeapi.KubeApi,
) -> None:
    pod = api.put(PODS, _pod("p", rules.STATE_SPECIALISED, fn="web"))
    api.put(DEPLOYMENTS, {"metadata": {"name": "web", "namespace": NS}, "status": {}})
    assert pools.retire([pod], NOW) == ([], None)
    assert api.names(PODS) == ["p"]
    api.put(
        DEPLOYMENTS, {"metadata": {"name": "web", "namespace": NS}, "status": {"readyReplicas": 1}}
    )
    gone, again = pools.retire([pod], NOW)
    assert [r.pod for r in gone] == ["p"]
    assert again is None
    assert api.names(PODS) == []


def test_a_claim_not_specialised_is_looked_at_again_when_its_minute_is_up(
    api: kubeapi.KubeApi,
) -> None:
    pod = api.put(PODS, _pod("p", rules.STATE_CLAIMED, fn="web"))
    try:
        pools.note_claim(pod, NOW)
        gone, again = pools.retire([pod], NOW + datetime.timedelta(seconds=20))
        assert gone == []
        assert again == 41.0  # the 40 s left, and a second
        gone, again = pools.retire([pod], NOW + datetime.timedelta(seconds=61))
        assert [r.pod for r in gone] == ["p"]
        assert api.names(PODS) == []
    finally:
        pools.forget_pod(pod)


# --- when: the handlers ------------------------------------------------------------------------

LOG = logging.getLogger("test")


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The Events the handlers post (kopf posts them only inside its own loop)."""
    posted: list[dict[str, Any]] = []
    monkeypatch.setattr(kopf, "event", lambda body, **kw: posted.append(kw))
    return posted


def _index(*bodies: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {NS: list(bodies)}


def _namespace_event(labels: dict[str, str], **kwargs: Any) -> None:
    body = {"metadata": {"name": NS, "labels": labels, "annotations": {}}}
    handlers.namespace_event(event={"type": "MODIFIED", "object": body}, logger=LOG, **kwargs)


@pytest.mark.usefixtures("events")
def test_opting_a_namespace_in_makes_its_pools_and_tells_its_functions(
    api: kubeapi.KubeApi,
) -> None:
    _namespace_event({}, functions_by_namespace={})
    web = _function(api, "web", source={"image": IMAGE})
    reconcile.reconcile(web)
    written = api.get(FUNCTIONS, "web")
    assert written is not None
    assert _warm_pool(api, "web")["reason"] == "NamespaceNotOptedIn"
    _function(api, "a")
    _namespace_event(OPTED_IN, functions_by_namespace=_index(json.loads(json.dumps(written))))
    assert len(api.names(REPLICASETS)) == 1
    assert _warm_pool(api, "web")["reason"] == "PrebuiltImage"


def test_an_unchanged_namespace_event_does_nothing(api: kubeapi.KubeApi) -> None:
    _namespace_event(OPTED_IN, functions_by_namespace={})
    count = len(api.requests)
    _namespace_event(OPTED_IN, functions_by_namespace={})
    assert len(api.requests) == count


def test_a_deployment_getting_a_ready_pod_retires_the_pool_pods_it_takes_over_from(
    api: kubeapi.KubeApi,
) -> None:
    pod = api.put(PODS, _pod("p", rules.STATE_SPECIALISED, fn="web"))
    deployment = api.put(
        DEPLOYMENTS,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": NS, "labels": {}},
            "status": {"readyReplicas": 1},
        },
    )
    handlers.deployment_event(
        event={"type": "MODIFIED", "object": deployment},
        logger=LOG,
        functions_by_name={},
        claimed_pool_pods={(NS, "web"): [pod]},
    )
    assert api.names(PODS) == []


def test_a_deployment_scaled_to_zero_retires_a_pool_pod_specialised_before_the_grace(
    api: kubeapi.KubeApi,
) -> None:
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(
        seconds=rules.IDLE_GRACE_SECONDS + 5
    )
    just_now = datetime.datetime.now(datetime.UTC)
    old = _pod("p", rules.STATE_SPECIALISED, fn="web")
    old["metadata"]["annotations"] = {rules.ANNOTATION_SPECIALISED_AT: long_ago.isoformat()}
    new = _pod("q", rules.STATE_SPECIALISED, fn="web")
    new["metadata"]["annotations"] = {rules.ANNOTATION_SPECIALISED_AT: just_now.isoformat()}
    pods = [api.put(PODS, old), api.put(PODS, new)]
    deployment = api.put(
        DEPLOYMENTS,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": NS, "labels": {}},
            "spec": {"replicas": 0},
            "status": {},
        },
    )
    handlers.deployment_event(
        event={"type": "MODIFIED", "object": deployment},
        logger=LOG,
        functions_by_name={},
        claimed_pool_pods={(NS, "web"): pods},
    )
    # The one specialised just now may be the request's that woke the Deployment: it stays.
    assert api.names(PODS) == ["q"]


def test_a_pool_pod_specialised_after_its_functions_pods_are_ready_goes_at_once(
    api: kubeapi.KubeApi,
) -> None:
    api.put(
        DEPLOYMENTS, {"metadata": {"name": "web", "namespace": NS}, "status": {"readyReplicas": 2}}
    )
    pod = api.put(PODS, _pod("p", rules.STATE_SPECIALISED, fn="web"))
    handlers.pool_pod_event(event={"type": "MODIFIED", "object": pod}, logger=LOG)
    assert api.names(PODS) == []


def test_a_pool_policy_deleted_by_hand_is_put_back(api: kubeapi.KubeApi) -> None:
    _namespace(OPTED_IN)
    _function(api, "a")
    pools.reconcile_namespace(NS)
    policy = api.objects[POLICIES].pop("kfn.pool")
    handlers.networkpolicy_event(
        event={"type": "DELETED", "object": policy}, logger=LOG, functions_by_name={}
    )
    assert api.names(POLICIES) == ["kfn.pool"]


def test_a_pool_policy_widened_by_hand_is_put_back(api: kubeapi.KubeApi) -> None:
    _namespace(OPTED_IN)
    _function(api, "a")
    pools.reconcile_namespace(NS)
    policy = api.get(POLICIES, "kfn.pool")
    assert policy is not None
    policy["spec"]["ingress"] = [{}]
    handlers.networkpolicy_event(
        event={"type": "MODIFIED", "object": json.loads(json.dumps(policy))},
        logger=LOG,
        functions_by_name={},
    )
    restored = api.get(POLICIES, "kfn.pool")
    assert restored is not None
    assert restored["spec"]["ingress"][0]["from"][0]["podSelector"] == {"matchLabels": ACTIVATOR}


def test_a_function_changed_in_an_opted_in_namespace_gets_its_pool_at_once(
    api: kubeapi.KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handlers, "_run", lambda *_: None)  # its own reconcile is not the point
    _namespace(OPTED_IN)
    body = _function(api, "a")
    handlers.function_changed(body=body, retry=1, logger=LOG)
    assert len(api.names(REPLICASETS)) == 1


def test_a_function_changed_in_a_namespace_not_opted_in_costs_no_request(
    api: kubeapi.KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handlers, "_run", lambda *_: None)
    _namespace()
    handlers.function_changed(body=_function(api, "a"), retry=1, logger=LOG)
    assert api.requests == []
