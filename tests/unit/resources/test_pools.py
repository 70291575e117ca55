"""Warm pools, decided without I/O: which Functions share a pool, what a namespace asks for, the
pool's objects (a pool pod is a function pod in all that contains it) and when claimed pods go."""

from __future__ import annotations

import datetime
import hashlib
import re
from typing import Any

import pytest

from kfn.api import function
from kfn.resources import deployment, network, platform, pools

IMAGES = {r: f"registry.local/kfn/runtime-{r}:test" for r in function.RUNTIMES}
IMAGE = "registry.local/fn@sha256:" + "0" * 64
PEERS = network.Peers("kfn-system", {"app.kubernetes.io/component": "activator"})
NOW = datetime.datetime(2026, 12, 5, 8, 0, tzinfo=datetime.UTC)


def _function(name: str = "hello", namespace: str = "team", **spec: Any) -> function.Function:
    return function.Function.model_validate(
        {
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
            "spec": {
                "runtime": "python3.11",
                "handler": "app.handler",
                "source": {"inline": {"files": [{"name": "app.py", "content": "x"}]}},
                **spec,
            },
        }
    )


def _key(fn: function.Function) -> pools.PoolKey:
    found = pools.poolability(fn, IMAGES)
    assert isinstance(found, pools.PoolKey), found
    return found


def _refusal(fn: function.Function, images: dict[str, str] = IMAGES) -> pools.Unpoolable:
    found = pools.poolability(fn, images)
    assert isinstance(found, pools.Unpoolable), found
    return found


# --- the key ---------------------------------------------------------------------------------


def test_functions_that_differ_only_in_what_specialising_gives_share_one_pool() -> None:
    one = _function(
        "one",
        env=[{"name": "A", "value": "1"}],
        concurrency=4,
        dependencies=["requests==2.32.3"],
        logging={"format": "JSON"},
    )
    other = _function("other", handler="main.handle", timeout="5s")
    assert _key(one) == _key(other)
    assert _key(one).hash == _key(other).hash


@pytest.mark.parametrize(
    "change",
    [
        {"runtime": "python3.12"},
        {"resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}},
        {"serviceAccountName": "reader"},
        {"scheduling": {"nodeSelector": {"disk": "ssd"}}},
    ],
)
def test_a_different_runtime_resources_account_or_placement_is_a_different_pool(
    change: dict[str, Any],
) -> None:
    assert _key(_function()).hash != _key(_function(**change)).hash


def test_the_same_function_in_another_namespace_is_another_pool() -> None:
    assert _key(_function(namespace="a")).hash != _key(_function(namespace="b")).hash


def test_a_pools_hash_is_ten_hex_characters_and_stable_across_processes() -> None:
    key = _key(_function())
    # Pinned to its content, not to the process: the activator finds a pool by this hash.
    content = (
        '{"namespace":"team","resources":[["limits",[["memory","128Mi"]]],'
        '["requests",[["cpu","100m"],["memory","128Mi"]]]],"runtime":"python3.11",'
        '"scheduling":"","service_account":null}'
    )
    assert key.hash == hashlib.sha256(content.encode()).hexdigest()[:10]
    assert re.fullmatch(r"[0-9a-f]{10}", key.hash)


def test_a_pools_name_carries_its_runtime_with_the_dot_as_a_dash_and_its_hash() -> None:
    key = _key(_function(runtime="python3.13"))
    assert key.name == f"kfn-pool-python3-13-{key.hash}"
    assert _key(_function(runtime="nodejs22", handler="index.handler")).name.startswith(
        "kfn-pool-nodejs22-"
    )


def test_a_key_gives_back_the_resources_a_function_pod_would_have() -> None:
    fn = _function(resources={"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2"}})
    assert _key(fn).resource_fields() == deployment.resource_fields(fn.spec.resources)


# --- what a started pod cannot become ---------------------------------------------------------


def test_a_prebuilt_image_cannot_use_a_pool_and_is_told_to_build_from_source() -> None:
    refusal = _refusal(
        function.Function.model_validate(
            {
                "metadata": {"name": "img", "namespace": "team"},
                "spec": {"source": {"image": IMAGE}},
            }
        )
    )
    assert refusal.reason == "PrebuiltImage"
    assert "source.image" in refusal.message
    assert "inline, configMapRef or archive" in refusal.message


def test_layers_cannot_use_a_pool_and_the_message_says_what_to_do_instead() -> None:
    fn = _function(
        layers=[{"name": "tools", "archive": {"url": "https://x/l.zip", "sha256": "a" * 64}}]
    )
    refusal = _refusal(fn)
    assert refusal.reason == "LayersUsed"
    assert "spec.dependencies" in refusal.message


def test_a_runtime_without_a_pool_image_cannot_use_a_pool() -> None:
    refusal = _refusal(_function(), {"python3.12": "x"})
    assert refusal.reason == "NoPoolImage"
    assert "python3.11" in refusal.message


def test_a_timeout_longer_than_a_pool_pods_cannot_use_a_pool_but_the_default_can() -> None:
    refusal = _refusal(_function(timeout="31s"))
    assert refusal.reason == "TimeoutTooLongForPool"
    assert "30s" in refusal.message
    assert isinstance(pools.poolability(_function(timeout="30s"), IMAGES), pools.PoolKey)


# --- the namespace's choice ------------------------------------------------------------------


@pytest.mark.parametrize(("value", "size"), [(None, 3), ("0", 0), ("1", 1), ("20", 20), (" 7 ", 7)])
def test_the_size_annotation_is_a_whole_number_from_0_to_20_else_the_default(
    value: str | None, size: int
) -> None:
    assert pools.parse_pool_size(value, 3) == size


@pytest.mark.parametrize("value", ["21", "-1", "1.5", "two", "", "٣"])
def test_a_bad_size_annotation_is_an_error_naming_the_annotation_and_the_range(
    value: str,
) -> None:
    found = pools.parse_pool_size(value, 3)
    assert isinstance(found, str)
    assert "kfn.dev/warm-pool-size" in found
    assert "0 to 20" in found


def test_only_the_label_with_the_value_enabled_opts_a_namespace_in() -> None:
    enabled = pools.namespace_pools({"kfn.dev/warm-pools": "enabled"}, None, 1)
    assert enabled == pools.NamespacePools(opted_in=True, size=1)
    assert not pools.namespace_pools({"kfn.dev/warm-pools": "true"}, None, 1).opted_in
    assert not pools.namespace_pools(None, {"kfn.dev/warm-pool-size": "3"}, 1).opted_in


def test_a_namespace_with_a_bad_size_keeps_the_default_and_says_why() -> None:
    found = pools.namespace_pools(
        {"kfn.dev/warm-pools": "enabled"}, {"kfn.dev/warm-pool-size": "50"}, 2
    )
    assert found.opted_in
    assert found.size == 2
    assert found.problem is not None
    assert "'50'" in found.problem


def test_a_namespace_wants_one_pool_per_distinct_key_of_its_poolable_functions() -> None:
    functions = [
        _function("a"),
        _function("b", env=[{"name": "X", "value": "y"}]),
        _function("c", runtime="nodejs20", handler="index.handler"),
        _function("d", source={"image": IMAGE}),
        _function("e", timeout="5m"),
    ]
    wanted = pools.pools_wanted(True, 2, functions, IMAGES)
    assert wanted == {_key(functions[0]), _key(functions[2])}


@pytest.mark.parametrize(("opted_in", "size"), [(False, 2), (True, 0)])
def test_a_namespace_not_opted_in_or_of_size_zero_wants_no_pool(opted_in: bool, size: int) -> None:
    assert pools.pools_wanted(opted_in, size, [_function()], IMAGES) == set()


# --- the WarmPool condition ---------------------------------------------------------------------


def test_a_poolable_function_of_an_opted_in_namespace_names_its_pool() -> None:
    fn = _function()
    status, reason, message = pools.condition(fn, pools.NamespacePools(True, 1), IMAGES)
    assert (status, reason) == ("True", "PoolAvailable")
    assert message == f"cold starts are served from pool {_key(fn).name}"


def test_a_function_of_a_namespace_not_opted_in_is_told_the_label_and_the_role() -> None:
    status, reason, message = pools.condition(_function(), pools.NamespacePools(False, 1), IMAGES)
    assert (status, reason) == ("False", "NamespaceNotOptedIn")
    assert "kfn.dev/warm-pools=enabled" in message
    assert "Role and RoleBinding" in message


def test_an_unpoolable_function_is_told_its_own_reason_before_the_size() -> None:
    fn = _function(timeout="5m")
    assert pools.condition(fn, pools.NamespacePools(True, 0), IMAGES)[1] == "TimeoutTooLongForPool"
    assert pools.condition(_function(), pools.NamespacePools(True, 0), IMAGES)[:2] == (
        "False",
        "PoolSizeZero",
    )


# --- the ReplicaSet and its pods --------------------------------------------------------------


def _replicaset(fn: function.Function, size: int = 2, **kwargs: Any) -> pools.ReplicaSet:
    plat = kwargs.pop("platform", platform.Platform())
    return pools.build_pool_replicaset(_key(fn), size, IMAGES[fn.spec.runtime or ""], plat)


def test_a_pools_replicaset_keeps_its_size_of_idle_pods_selected_by_hash_and_state() -> None:
    fn = _function()
    key = _key(fn)
    rs = _replicaset(fn, 3)
    assert rs["metadata"]["name"] == key.name
    assert rs["metadata"]["namespace"] == "team"
    assert rs["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "kfn",
        "app.kubernetes.io/component": "function-pool",
        "kfn.dev/pool": key.hash,
    }
    assert "ownerReferences" not in rs["metadata"]
    assert rs["spec"]["replicas"] == 3
    assert rs["spec"]["selector"] == {
        "matchLabels": {"kfn.dev/pool": key.hash, "kfn.dev/pool-state": "idle"}
    }
    template = rs["spec"]["template"]["metadata"]
    assert template["labels"] == {
        "app.kubernetes.io/managed-by": "kfn",
        "app.kubernetes.io/component": "function-pool",
        "kfn.dev/pool": key.hash,
        "kfn.dev/pool-state": "idle",
    }
    assert template["annotations"]["kfn.dev/pool-runtime"] == "python3.11"


def test_a_pool_of_more_than_twenty_pods_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="0 to 20"):
        _replicaset(_function(), 21)


def test_a_pool_pod_carries_nothing_of_any_function() -> None:
    pod = _replicaset(_function(env=[{"name": "SECRET", "value": "x"}]))["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == IMAGES["python3.11"]
    assert container["env"] == [
        {"name": "KFN_POOL", "value": "1"},
        {"name": "KFN_PORT", "value": "8080"},
        {"name": "LAMBDA_TASK_ROOT", "value": "/var/task"},
    ]
    assert "envFrom" not in container
    assert pod["spec"]["serviceAccountName"] == "kfn.pool"
    assert "imagePullSecrets" not in pod["spec"]


def test_a_pool_pod_is_ready_to_be_claimed_once_it_listens_and_started_as_a_function_pod() -> None:
    container = _replicaset(_function())["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/_kfn/live", "port": "http"}
    assert container["readinessProbe"]["periodSeconds"] == 1
    assert container["startupProbe"]["httpGet"]["path"] == "/_kfn/started"


@pytest.mark.parametrize(
    ("runtime", "deps"), [("python3.12", "/opt/python"), ("nodejs22", "/opt/nodejs")]
)
def test_a_pool_pod_has_writable_code_and_dependency_directories_for_its_runtime(
    runtime: str, deps: str
) -> None:
    fn = _function(runtime=runtime, handler="index.handler")
    spec = _replicaset(fn)["spec"]["template"]["spec"]
    assert spec["containers"][0]["volumeMounts"] == [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "task", "mountPath": "/var/task"},
        {"name": "deps", "mountPath": deps},
    ]
    assert [v["name"] for v in spec["volumes"]] == ["tmp", "task", "deps"]
    assert all("sizeLimit" in v["emptyDir"] for v in spec["volumes"])


def test_a_pool_pod_runs_as_the_functions_own_account_when_it_names_one() -> None:
    spec = _replicaset(_function(serviceAccountName="reader"))["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "reader"
    assert spec["automountServiceAccountToken"] is False


def test_a_pool_pod_pulls_with_the_namespaces_credential_and_the_charts_secrets_only() -> None:
    plat = platform.Platform(credentials_secret="kfn-registry", pull_secrets=("cluster-pull",))
    fn = _function(imagePullSecrets=[{"name": "mine"}])
    spec = _replicaset(fn, platform=plat)["spec"]["template"]["spec"]
    assert spec["imagePullSecrets"] == [{"name": "kfn-registry"}, {"name": "cluster-pull"}]


SECURITY_FIELDS = (
    "automountServiceAccountToken",
    "enableServiceLinks",
    "terminationGracePeriodSeconds",
    "securityContext",
    "nodeSelector",
    "tolerations",
    "affinity",
    "topologySpreadConstraints",
    "priorityClassName",
)
CONTAINER_SECURITY_FIELDS = (
    "name",
    "imagePullPolicy",
    "ports",
    "resources",
    "livenessProbe",
    "startupProbe",
    "lifecycle",
    "securityContext",
)


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {
            "resources": {"requests": {"cpu": "1", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
            "serviceAccountName": "reader",
            "scheduling": {
                "nodeSelector": {"disk": "ssd"},
                "tolerations": [{"key": "k", "operator": "Exists"}],
                "priorityClassName": "high",
            },
        },
    ],
)
def test_a_pool_pod_is_contained_exactly_as_a_function_pod_of_the_same_key(
    spec: dict[str, Any],
) -> None:
    plat = platform.Platform(
        functions=platform.Placement(
            node_selector={"pool": "functions"},
            topology_spread_constraints=({"maxSkew": 1, "topologyKey": "zone"},),
        )
    )
    fn = _function(**spec)
    function_pod = deployment.build_deployment(
        fn, image=IMAGE, source_hash="h", initial_replicas=None, platform=plat
    )["spec"]["template"]["spec"]
    pool_pod = _replicaset(fn, platform=plat)["spec"]["template"]["spec"]
    for field in SECURITY_FIELDS:
        assert pool_pod.get(field) == function_pod.get(field), field
    if fn.spec.service_account_name is not None:
        assert pool_pod["serviceAccountName"] == function_pod["serviceAccountName"]
    pool_container, function_container = pool_pod["containers"][0], function_pod["containers"][0]
    for field in CONTAINER_SECURITY_FIELDS:
        assert pool_container.get(field) == function_container.get(field), field
    tmp = {"name": "tmp", "mountPath": "/tmp"}
    assert pool_container["volumeMounts"][0] == function_container["volumeMounts"][0] == tmp
    assert pool_pod["volumes"][0] == function_pod["volumes"][0]
    # And the fields compared are there: the comparison cannot pass on two empty pods.
    assert function_pod["securityContext"]["runAsNonRoot"] is True
    assert function_container["securityContext"]["readOnlyRootFilesystem"] is True
    assert function_pod["nodeSelector"]


def test_a_changed_runtime_image_changes_the_template_its_idle_pods_are_checked_against() -> None:
    key = _key(_function())
    old = pools.build_pool_replicaset(key, 1, "runtime:1", platform.Platform())
    new = pools.build_pool_replicaset(key, 1, "runtime:2", platform.Platform())
    made_from = old["spec"]["template"]["metadata"]["annotations"]["kfn.dev/pool-template"]
    pods = [_pod("p-old", key.hash, "idle", template=made_from)]
    assert pools.stale_idle_pods(pods, [old]) == []
    assert pools.stale_idle_pods(pods, [new]) == ["p-old"]


def test_idle_pods_of_a_pool_no_longer_wanted_are_stale_but_claimed_ones_are_not() -> None:
    pods = [_pod("idle", "abc", "idle"), _pod("claimed", "abc", "claimed", fn="web")]
    assert pools.stale_idle_pods(pods, []) == ["idle"]


# --- the ServiceAccount and the policy --------------------------------------------------------


def test_no_function_can_be_named_as_the_pools_account_and_policy() -> None:
    # A Function's own account and policy are named after it: the pool's must not be one.
    for name in (pools.POOL_SERVICE_ACCOUNT, pools.POOL_NETWORK_POLICY):
        assert re.fullmatch(function.FUNCTION_NAME_RULE.pattern, name) is None


def test_the_pool_account_mounts_no_token() -> None:
    account = pools.build_pool_service_account("team")
    assert account["metadata"]["name"] == "kfn.pool"
    assert account["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kfn"
    assert account["automountServiceAccountToken"] is False


def test_pool_pods_admit_only_the_activator_on_the_runtimes_port_as_function_pods_do() -> None:
    policy = pools.build_pool_network_policy("team", PEERS)
    assert policy["metadata"]["name"] == "kfn.pool"
    assert policy["metadata"]["namespace"] == "team"
    assert policy["spec"]["podSelector"] == {
        "matchLabels": {
            "app.kubernetes.io/managed-by": "kfn",
            "app.kubernetes.io/component": "function-pool",
        }
    }
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    function_policy = network.build_network_policy(_function(), PEERS)
    assert policy["spec"]["ingress"] == function_policy["spec"]["ingress"]
    assert policy["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8080}]


# --- claimed pods ---------------------------------------------------------------------------------


def _pod(
    name: str,
    pool: str,
    state: str,
    *,
    fn: str | None = None,
    version: int | None = None,
    template: str | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    labels = {
        "app.kubernetes.io/managed-by": "kfn",
        "app.kubernetes.io/component": "function-pool",
        "kfn.dev/pool": pool,
        "kfn.dev/pool-state": state,
    }
    if fn is not None:
        labels["kfn.dev/function"] = fn
    if version is not None:
        labels["kfn.dev/version"] = str(version)
    meta: dict[str, Any] = {"name": name, "uid": f"uid-{name}", "labels": labels}
    if template is not None:
        meta["annotations"] = {"kfn.dev/pool-template": template}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-05T08:00:00Z"
    return {"metadata": meta}


def test_a_specialised_pod_goes_once_its_functions_deployment_has_a_ready_pod() -> None:
    pods = [_pod("p", "abc", "specialised", fn="web")]
    assert pools.retire(pods, {"web": 0}, {}, NOW) == []
    assert pools.retire(pods, {}, {}, NOW) == []
    assert [r.pod for r in pools.retire(pods, {"web": 1}, {}, NOW)] == ["p"]


def test_a_pod_claimed_for_a_version_waits_for_that_versions_deployment() -> None:
    pods = [_pod("p", "abc", "specialised", fn="web", version=3)]
    assert pools.serving_deployment(pods[0]) == "web-v3"
    assert pools.retire(pods, {"web": 2}, {}, NOW) == []
    assert [r.pod for r in pools.retire(pods, {"web-v3": 1}, {}, NOW)] == ["p"]


def test_a_pod_claimed_but_not_specialised_goes_after_sixty_seconds() -> None:
    pods = [_pod("p", "abc", "claimed", fn="web")]
    since = {"uid-p": NOW - datetime.timedelta(seconds=60)}
    assert pools.retire(pods, {}, since, NOW) == []
    later = NOW + datetime.timedelta(seconds=1)
    (retired,) = pools.retire(pods, {}, since, later)
    assert retired.pod == "p"
    assert "not specialised" in retired.reason


@pytest.mark.parametrize("state", ["claimed", "specialised"])
def test_a_claimed_pod_whose_runtime_restarted_goes_at_once(state: str) -> None:
    pod = _pod("p", "abc", state, fn="web")
    pod["status"] = {"containerStatuses": [{"name": "function", "restartCount": 0}]}
    assert pools.retire([pod], {}, {}, NOW) == []
    pod["status"]["containerStatuses"][0]["restartCount"] = 1
    (retired,) = pools.retire([pod], {}, {}, NOW)
    assert "restarted" in retired.reason


def test_a_specialised_pod_is_never_retired_for_its_age() -> None:
    pods = [_pod("p", "abc", "specialised", fn="web")]
    since = {"uid-p": NOW - datetime.timedelta(hours=1)}
    assert pools.retire(pods, {}, since, NOW) == []


def test_idle_pods_and_pods_already_going_are_never_retired() -> None:
    pods = [
        _pod("idle", "abc", "idle"),
        _pod("going", "abc", "specialised", fn="web", deleting=True),
    ]
    assert pools.retire(pods, {"web": 1}, {}, NOW) == []


def test_a_claim_is_timed_from_its_first_sight_until_it_is_no_longer_claimed() -> None:
    claimed = _pod("p", "abc", "claimed", fn="web")
    first = pools.claim_seen(None, claimed, NOW)
    assert first == NOW
    assert pools.claim_seen(first, claimed, NOW + datetime.timedelta(seconds=30)) == NOW
    assert pools.claim_seen(first, _pod("p", "abc", "specialised", fn="web"), NOW) is None


def test_an_installation_with_pools_turned_off_keeps_none_and_says_so() -> None:
    ns = pools.namespace_pools(
        {pools.LABEL_WARM_POOLS: pools.ENABLED},
        {pools.ANNOTATION_WARM_POOL_SIZE: "3"},
        1,
        enabled=False,
    )
    assert not ns.opted_in
    assert ns.size == 0
    status, reason, message = pools.condition(_function(), ns, IMAGES)
    assert (status, reason) == ("False", "PoolsDisabled")
    assert "warmPools.enabled" in message


def test_a_specialised_pod_goes_when_its_function_went_idle_after_the_grace() -> None:
    pod = _pod("p", "abc", "specialised", fn="web")
    pod["metadata"]["annotations"] = {"kfn.dev/specialised-at": NOW.isoformat()}
    soon = NOW + datetime.timedelta(seconds=pools.IDLE_GRACE_SECONDS - 1)
    later = NOW + datetime.timedelta(seconds=pools.IDLE_GRACE_SECONDS + 1)
    # Its Deployment is not scaled up yet for the request that specialised it: it stays.
    assert pools.retire([pod], {}, {}, soon, scaled_to_zero={"web"}) == []
    # Still scaled up (its own pod starting): it stays too.
    assert pools.retire([pod], {}, {}, later) == []
    (retired,) = pools.retire([pod], {}, {}, later, scaled_to_zero={"web"})
    assert retired.pod == "p"
    assert "went idle" in retired.reason


def test_a_specialised_pod_without_its_time_is_left_to_its_deployments_ready_pod() -> None:
    pod = _pod("p", "abc", "specialised", fn="web")
    pod["metadata"]["annotations"] = {"kfn.dev/specialised-at": "yesterday"}
    later = NOW + datetime.timedelta(hours=1)
    assert pools.retire([pod], {}, {}, later, scaled_to_zero={"web"}) == []
