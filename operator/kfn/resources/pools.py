"""Warm pools: which pools a namespace wants, their objects, and when a claimed pod goes (pure).

A namespace whose admin opted it in (the label ``kfn.dev/warm-pools: enabled``) keeps, for each
distinct :class:`PoolKey` among its Functions, a ReplicaSet of pre-started runtime pods in pool
mode: listening, with no handler and no user code. On a Function's first request at zero the
activator claims one, specialises it into a pod of that Function, and the Function's own
Deployment takes over once it has a ready pod (the contract: ``docs/design/warm-pools.md``).

A pool pod is a function pod in everything that contains it: it is made by the same pieces of
:mod:`kfn.resources.deployment` (:func:`~kfn.resources.deployment.runtime_container` and
:func:`~kfn.resources.deployment.runtime_pod_spec`), so the two cannot drift apart. What a
started pod cannot take afterwards decides which Functions can use a pool
(:func:`poolability`):

* ``source.image``: its own image and runtime; a generic pod has no way to become it.
* ``spec.layers``: layers may write anywhere under /opt, and a started pod has only
  /opt/python or /opt/nodejs writable.
* a runtime without a pool image (the chart's ``builder.runtimeImages``).
* a ``spec.timeout`` longer than the default (30 s): a pod's grace period and liveness bound
  are fixed when it starts, and a pool pod's are a default function's; a longer invocation
  could be cut by them.

What differs between Functions but a pod can be given at its start is part of the key, so
Functions share a pool only when their pods would be the same: the namespace, the runtime,
``resources``, ``serviceAccountName`` (unset: the token-less ``kfn.pool`` account) and
``scheduling`` (a Function that sets it gets the pool of its own placement, with the same
chart defaults filled in as its Deployment; one that does not shares the namespace's).
Environment, handler, concurrency, memory size and logging reach the pod when it is
specialised, and are no part of the key.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Final, Literal, NotRequired, TypedDict

from kfn.api import function, meta
from kfn.resources import deployment, network, objects
from kfn.resources import platform as platform_

# --- names of the contract ---------------------------------------------------------------------

COMPONENT_POOL: Final = "function-pool"
"""The component of pool pods, idle or claimed, their ReplicaSets and their policy."""
LABEL_POOL: Final = "kfn.dev/pool"
"""On a pool's ReplicaSet and pods: the pool key's :attr:`PoolKey.hash`."""
LABEL_POOL_STATE: Final = "kfn.dev/pool-state"
STATE_IDLE: Final = "idle"
STATE_CLAIMED: Final = "claimed"
STATE_SPECIALISED: Final = "specialised"
ANNOTATION_POOL_RUNTIME: Final = "kfn.dev/pool-runtime"
ANNOTATION_POOL_TEMPLATE: Final = "kfn.dev/pool-template"
#: When the activator specialised a pool pod (RFC 3339), set with its function's labels.
ANNOTATION_SPECIALISED_AT: Final = "kfn.dev/specialised-at"
"""On pool pods: a digest of the pod template they were made from. A ReplicaSet does not
replace its pods when its template changes (a new runtime image, say), so the operator deletes
the idle pods of an older template and the ReplicaSet makes new ones."""

LABEL_WARM_POOLS: Final = "kfn.dev/warm-pools"
"""The Namespace label that opts a namespace in, with the value :data:`ENABLED`."""
ENABLED: Final = "enabled"
ANNOTATION_WARM_POOL_SIZE: Final = "kfn.dev/warm-pool-size"
"""The Namespace annotation: idle pods per pool (0 to :data:`MAX_POOL_SIZE`)."""
MAX_POOL_SIZE: Final = 20

POOL_SERVICE_ACCOUNT: Final = "kfn.pool"
"""The ServiceAccount of pool pods of Functions that name none: no token, no bindings. Its
name, like the policy's, has a dot, which no Function's name can have: a Function's own
ServiceAccount and NetworkPolicy are named after it, and a Function named ``kfn-pool`` would
otherwise share (and fight over) the pool's, leaving its own pods or the pool's unguarded."""
POOL_NETWORK_POLICY: Final = "kfn.pool"

POOL_TIMEOUT: Final[str] = function.FunctionSpec.model_fields["timeout"].default
"""The function timeout a pool pod is made for (the default), which sizes its grace period
and liveness bound."""
CLAIM_LIMIT_SECONDS: Final = 60.0
#: How long a specialised pod outlives its function's Deployment at zero replicas: longer than
#: the autoscaler takes to scale it up for the request that specialised the pod.
IDLE_GRACE_SECONDS: Final = 10.0
"""How long a pod may stay claimed without being specialised before it is deleted."""

DEPS_DIRS: Final = {"python": "/opt/python", "nodejs": "/opt/nodejs"}
"""Where a runtime's dependency layer lands, by runtime family."""
POOL_VOLUME_SIZE_LIMIT: Final = "1Gi"
"""Each of a pool pod's code and dependency volumes: Lambda's own limit, code and layers
unzipped, is 250 MB; the bound keeps one pod from filling its node's disk."""


# --- the key ---------------------------------------------------------------------------------

Amounts = tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
"""A pod's ``resources`` as nested sorted pairs, so a key can be hashed and compared."""


@dataclasses.dataclass(frozen=True)
class PoolKey:
    """What makes two Functions' pods the same pod until they are specialised."""

    namespace: str
    runtime: str
    resources: Amounts
    service_account: str | None = None
    """The Function's ``serviceAccountName``; None: the token-less :data:`POOL_SERVICE_ACCOUNT`."""
    scheduling: str = ""
    """The Function's ``spec.scheduling`` as canonical JSON; "" when it sets none."""

    @classmethod
    def of(cls, fn: function.Function) -> PoolKey:
        """The key of ``fn``'s pods (whether it can use a pool is :func:`poolability`'s)."""
        assert fn.spec.runtime is not None  # only source.image may leave it unset
        fields = deployment.resource_fields(fn.spec.resources)
        scheduling = fn.spec.scheduling
        return cls(
            namespace=fn.metadata.namespace,
            runtime=fn.spec.runtime,
            resources=tuple(sorted((k, tuple(sorted(v.items()))) for k, v in fields.items())),
            service_account=fn.spec.service_account_name,
            scheduling=(
                json.dumps(
                    scheduling.model_dump(mode="json", by_alias=True, exclude_none=True),
                    sort_keys=True,
                    separators=(",", ":"),
                )
                if scheduling is not None
                else ""
            ),
        )

    def resource_fields(self) -> dict[str, dict[str, str]]:
        """The pod's ``resources``, as :func:`kfn.resources.deployment.resource_fields` gives."""
        return {kind: dict(amounts) for kind, amounts in self.resources}

    def scheduling_spec(self) -> function.Scheduling | None:
        """The Function's ``spec.scheduling`` back, or None."""
        if not self.scheduling:
            return None
        return function.Scheduling.model_validate_json(self.scheduling)

    @property
    def hash(self) -> str:
        """10 hex characters of a SHA-256 of the whole key: stable across processes."""
        content = json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(content.encode()).hexdigest()[:10]

    @property
    def name(self) -> str:
        """``kfn-pool-<runtime, '.' as '-'>-<hash>``: the pool's ReplicaSet."""
        return f"kfn-pool-{self.runtime.replace('.', '-')}-{self.hash}"


@dataclasses.dataclass(frozen=True)
class Unpoolable:
    """Why a Function cannot use a warm pool: a CamelCase reason and what the user can do."""

    reason: str
    message: str


def poolability(fn: function.Function, pool_images: Mapping[str, str]) -> PoolKey | Unpoolable:
    """The pool ``fn``'s cold starts can come from, or why none can serve it.

    ``pool_images`` are the runtime images by runtime (the chart's ``builder.runtimeImages``).
    Whether the namespace is opted in is no property of the Function; see :func:`condition`.
    """
    spec = fn.spec
    if spec.source.image is not None or spec.runtime is None:
        return Unpoolable(
            function.Reason.POOL_PREBUILT_IMAGE,
            "source.image brings its own image and runtime, which a pre-started pod cannot "
            "become; build the function from inline, configMapRef or archive source to use "
            "the namespace's warm pool",
        )
    if spec.layers:
        return Unpoolable(
            function.Reason.POOL_LAYERS,
            "spec.layers may write anywhere under /opt, which a pre-started pod cannot take; "
            "move the layers' packages into spec.dependencies to use the namespace's warm pool",
        )
    if not pool_images.get(spec.runtime):
        return Unpoolable(
            function.Reason.POOL_NO_IMAGE,
            f"this kfn installation has no pool image for {spec.runtime} (the chart's "
            "builder.runtimeImages); ask the cluster admin",
        )
    if meta.parse_duration(spec.timeout) > meta.parse_duration(POOL_TIMEOUT):
        return Unpoolable(
            function.Reason.POOL_TIMEOUT_TOO_LONG,
            f"spec.timeout {spec.timeout} is longer than the {POOL_TIMEOUT} a pre-started pod "
            "is made for (its grace period and liveness bound are fixed when it starts); "
            f"lower the timeout to {POOL_TIMEOUT} or less to use the namespace's warm pool",
        )
    return PoolKey.of(fn)


# --- the namespace's choice ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NamespacePools:
    """What a Namespace's label and annotation ask for."""

    opted_in: bool
    size: int
    """Idle pods per pool (the same for every key of the namespace)."""
    problem: str | None = None
    """What is wrong with the size annotation (then ``size`` is the default)."""
    disabled: bool = False
    """The installation keeps no pools (the chart's ``warmPools.enabled: false``)."""


def parse_pool_size(value: str | None, default: int) -> int | str:
    """The size the annotation asks for, ``default`` without one; a message when it is bad."""
    if value is None:
        return default
    text = value.strip()
    if not text.isascii() or not text.isdigit() or not 0 <= int(text) <= MAX_POOL_SIZE:
        return (
            f"the annotation {ANNOTATION_WARM_POOL_SIZE} is {value!r}: it must be a whole number "
            f"from 0 to {MAX_POOL_SIZE} (idle pods per runtime pool); using {default}"
        )
    return int(text)


def namespace_pools(
    labels: Mapping[str, str] | None,
    annotations: Mapping[str, str] | None,
    default: int,
    *,
    enabled: bool = True,
) -> NamespacePools:
    """What a Namespace asks for; a bad size annotation falls back to ``default`` and says so.
    With pools turned off for the installation (``enabled`` False) no namespace has any."""
    if not enabled:
        return NamespacePools(opted_in=False, size=0, disabled=True)
    opted_in = (labels or {}).get(LABEL_WARM_POOLS) == ENABLED
    size = parse_pool_size((annotations or {}).get(ANNOTATION_WARM_POOL_SIZE), default)
    if isinstance(size, str):
        return NamespacePools(opted_in, default, size)
    return NamespacePools(opted_in, size)


def pools_wanted(
    opted_in: bool,
    size: int,
    functions: Iterable[function.Function],
    pool_images: Mapping[str, str],
) -> set[PoolKey]:
    """One pool per distinct key among the namespace's Functions that can use one; none when
    the namespace is not opted in or asks for 0 pods."""
    if not opted_in or size <= 0:
        return set()
    found = (poolability(fn, pool_images) for fn in functions)
    return {key for key in found if isinstance(key, PoolKey)}


NOT_OPTED_IN_MESSAGE: Final = (
    f"the namespace is not opted in to warm pools: a cluster admin labels it "
    f"{LABEL_WARM_POOLS}={ENABLED} and creates the Role and RoleBinding that let kfn's "
    "activator read the Secrets and ConfigMaps its Functions name and patch and delete its "
    "pods (docs/warm-pools.md)"
)


def condition(
    fn: function.Function, namespace: NamespacePools, pool_images: Mapping[str, str]
) -> tuple[meta.ConditionStatus, str, str]:
    """The Function's ``WarmPool`` condition (status, reason, message); outside Ready."""
    if namespace.disabled:
        return (
            "False",
            function.Reason.POOLS_DISABLED,
            "warm pools are turned off in this kfn installation (the chart's warmPools.enabled)",
        )
    if not namespace.opted_in:
        return "False", function.Reason.NAMESPACE_NOT_OPTED_IN, NOT_OPTED_IN_MESSAGE
    found = poolability(fn, pool_images)
    if isinstance(found, Unpoolable):
        return "False", found.reason, found.message
    if namespace.size <= 0:
        return (
            "False",
            function.Reason.POOL_SIZE_ZERO,
            f"the namespace's annotation {ANNOTATION_WARM_POOL_SIZE} asks for no idle pods",
        )
    return "True", function.Reason.POOL_AVAILABLE, f"cold starts are served from pool {found.name}"


# --- the objects -----------------------------------------------------------------------------


class PoolMeta(TypedDict):
    name: str
    namespace: str
    labels: dict[str, str]
    annotations: NotRequired[dict[str, str]]


class ReplicaSetSpec(TypedDict):
    replicas: int
    selector: dict[str, dict[str, str]]
    template: deployment.PodTemplate


class ReplicaSet(TypedDict):
    apiVersion: Literal["apps/v1"]
    kind: Literal["ReplicaSet"]
    metadata: PoolMeta
    spec: ReplicaSetSpec


class PoolServiceAccount(TypedDict):
    apiVersion: Literal["v1"]
    kind: Literal["ServiceAccount"]
    metadata: PoolMeta
    automountServiceAccountToken: bool


class PoolNetworkPolicy(TypedDict):
    apiVersion: Literal["networking.k8s.io/v1"]
    kind: Literal["NetworkPolicy"]
    metadata: PoolMeta
    spec: network.NetworkPolicySpec


def labels() -> dict[str, str]:
    """On every object of a namespace's pools, and every pool pod."""
    return {objects.LABEL_MANAGED_BY: objects.MANAGER, objects.LABEL_COMPONENT: COMPONENT_POOL}


def selector(key: PoolKey) -> dict[str, str]:
    """What a pool's ReplicaSet selects: its idle pods (a claimed pod leaves it)."""
    return {LABEL_POOL: key.hash, LABEL_POOL_STATE: STATE_IDLE}


def _family(runtime: str) -> str:
    return "python" if runtime in function.PYTHON_RUNTIMES else "nodejs"


def pool_pod_spec(
    key: PoolKey, runtime_image: str, platform: platform_.Platform
) -> deployment.PodSpec:
    """A pool pod: the function pod's container and pod, with nothing of any function in them
    (three variables, empty code and dependency directories), ready once it listens."""
    timeout = meta.parse_duration(POOL_TIMEOUT).total_seconds()
    deps = DEPS_DIRS[_family(key.runtime)]
    container = deployment.runtime_container(
        image=runtime_image,
        env=[
            {"name": "KFN_POOL", "value": "1"},
            {"name": "KFN_PORT", "value": str(deployment.CONTAINER_PORT)},
            {"name": "LAMBDA_TASK_ROOT", "value": deployment.TASK_ROOT},
        ],
        resources=key.resource_fields(),
        # Ready (to be claimed) once the runtime listens: it loads no handler until specialised.
        readiness_path="/_kfn/live",
        timeout=timeout,
        volume_mounts=[
            {"name": "task", "mountPath": deployment.TASK_ROOT},
            {"name": "deps", "mountPath": deps},
        ],
    )
    return deployment.runtime_pod_spec(
        container,
        service_account=key.service_account or POOL_SERVICE_ACCOUNT,
        timeout=timeout,
        pull_secrets=platform.default_pull_secrets(),
        placement=platform.functions.overridden_by(key.scheduling_spec()),
        volumes=[
            {"name": "task", "emptyDir": {"sizeLimit": POOL_VOLUME_SIZE_LIMIT}},
            {"name": "deps", "emptyDir": {"sizeLimit": POOL_VOLUME_SIZE_LIMIT}},
        ],
    )


def template_hash(spec: deployment.PodSpec) -> str:
    """10 hex characters of a SHA-256 of a pool pod's spec (:data:`ANNOTATION_POOL_TEMPLATE`)."""
    content = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(content.encode()).hexdigest()[:10]


def build_pool_replicaset(
    key: PoolKey, size: int, runtime_image: str, platform: platform_.Platform
) -> ReplicaSet:
    """The ReplicaSet keeping ``size`` idle pods of ``key``'s pool (the operator owns its
    replicas: nothing else scales a pool)."""
    if not 0 <= size <= MAX_POOL_SIZE:
        raise ValueError(f"a pool's size is 0 to {MAX_POOL_SIZE}, got {size}")
    spec = pool_pod_spec(key, runtime_image, platform)
    pod_labels = {**labels(), **selector(key)}
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": key.name,
            "namespace": key.namespace,
            "labels": {**labels(), LABEL_POOL: key.hash},
            "annotations": {ANNOTATION_POOL_RUNTIME: key.runtime},
        },
        "spec": {
            "replicas": size,
            "selector": {"matchLabels": selector(key)},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        ANNOTATION_POOL_RUNTIME: key.runtime,
                        ANNOTATION_POOL_TEMPLATE: template_hash(spec),
                    },
                },
                "spec": spec,
            },
        },
    }


def build_pool_service_account(namespace: str) -> PoolServiceAccount:
    """``kfn.pool``: the account of pool pods whose Function names none. No token is mounted
    and kfn binds no Role to it."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": POOL_SERVICE_ACCOUNT, "namespace": namespace, "labels": labels()},
        "automountServiceAccountToken": False,
    }


def build_pool_network_policy(namespace: str, peers: network.Peers) -> PoolNetworkPolicy:
    """Ingress to every pool pod of the namespace, idle or claimed: the runtime's port, from
    the activator only, as each Function's own policy admits (:mod:`kfn.resources.network`)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": POOL_NETWORK_POLICY, "namespace": namespace, "labels": labels()},
        "spec": {
            "podSelector": {"matchLabels": labels()},
            "policyTypes": ["Ingress"],
            "ingress": network.activator_ingress(peers),
        },
    }


# --- idle pods of an older template, and claimed pods that are done --------------------------


def _meta(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return pod.get("metadata") or {}


def _labels(pod: Mapping[str, Any]) -> Mapping[str, str]:
    return _meta(pod).get("labels") or {}


def stale_idle_pods(pods: Sequence[Mapping[str, Any]], wanted: Iterable[ReplicaSet]) -> list[str]:
    """Idle pods made from another template than their pool's ReplicaSet now has (or of no
    pool wanted): deleted, their ReplicaSet makes new ones."""
    templates = {
        rs["metadata"]["labels"][LABEL_POOL]: rs["spec"]["template"]["metadata"]["annotations"][
            ANNOTATION_POOL_TEMPLATE
        ]
        for rs in wanted
    }
    stale = []
    for pod in pods:
        labels_ = _labels(pod)
        if labels_.get(LABEL_POOL_STATE) != STATE_IDLE or _meta(pod).get("deletionTimestamp"):
            continue
        made_from = (_meta(pod).get("annotations") or {}).get(ANNOTATION_POOL_TEMPLATE)
        pool = labels_.get(LABEL_POOL, "")
        if pool not in templates or templates[pool] != made_from:
            stale.append(str(_meta(pod).get("name", "")))
    return stale


def serving_deployment(pod: Mapping[str, Any]) -> str | None:
    """The Deployment that takes over from a claimed pod: its Function's, or its version's
    own (``<function>-v<N>``); None when the pod names no Function."""
    labels_ = _labels(pod)
    fn = labels_.get(objects.LABEL_FUNCTION)
    if not fn:
        return None
    version = labels_.get(objects.LABEL_VERSION)
    return f"{fn}-v{version}" if version else fn


def claim_seen(
    seen: datetime.datetime | None, pod: Mapping[str, Any], now: datetime.datetime
) -> datetime.datetime | None:
    """When ``pod`` was first seen claimed and not yet specialised: ``seen`` if it was, ``now``
    for a newly claimed one, None once it is not claimed. (The contract stamps no claim time
    on the pod, so the operator counts from its own first sight; after a restart, again.)"""
    if _labels(pod).get(LABEL_POOL_STATE) != STATE_CLAIMED:
        return None
    return seen or now


def _restarted(pod: Mapping[str, Any]) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return any(
        cs.get("name") == deployment.CONTAINER_NAME and (cs.get("restartCount") or 0) > 0
        for cs in statuses
    )


@dataclasses.dataclass(frozen=True)
class Retirement:
    """A claimed pool pod to delete, and why."""

    pod: str
    reason: str


def specialised_at(pod: Mapping[str, Any]) -> datetime.datetime | None:
    """When the activator specialised ``pod`` (its annotation), or None."""
    value = (_meta(pod).get("annotations") or {}).get(ANNOTATION_SPECIALISED_AT)
    try:
        at = datetime.datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None
    return at if at is None or at.tzinfo else at.replace(tzinfo=datetime.UTC)


def retire(
    pods: Sequence[Mapping[str, Any]],
    ready_replicas: Mapping[str, int],
    claimed_since: Mapping[str, datetime.datetime],
    now: datetime.datetime,
    *,
    scaled_to_zero: Collection[str] = (),
) -> list[Retirement]:
    """The claimed and specialised pool pods to delete.

    A pod goes once the Deployment that serves its Function (``ready_replicas``, by Deployment
    name; :func:`serving_deployment`) has a ready pod, or when it stayed claimed without being
    specialised for more than :data:`CLAIM_LIMIT_SECONDS` since ``claimed_since`` (by uid;
    :func:`claim_seen`). A pod whose Function is gone is the garbage collector's: the claim
    made the Function its owner. Idle pods and pods already going are never retired here.
    A claimed pod whose runtime restarted goes at once: the new process starts in pool mode,
    knowing nothing of the function it was given. A specialised pod also goes when its
    function went idle: the Deployment is in ``scaled_to_zero`` (its ``spec.replicas`` is 0)
    more than :data:`IDLE_GRACE_SECONDS` after the pod was specialised (its Deployment may be
    scaled down before its own pod was ever ready, with an idle timeout shorter than a pod
    start).
    """
    limit = datetime.timedelta(seconds=CLAIM_LIMIT_SECONDS)
    found = []
    for pod in pods:
        meta_, state = _meta(pod), _labels(pod).get(LABEL_POOL_STATE)
        if state not in (STATE_CLAIMED, STATE_SPECIALISED) or meta_.get("deletionTimestamp"):
            continue
        name = str(meta_.get("name", ""))
        serving = serving_deployment(pod)
        if serving is not None and ready_replicas.get(serving, 0) >= 1:
            found.append(Retirement(name, f"Deployment {serving} has a ready pod"))
            continue
        if _restarted(pod):
            found.append(
                Retirement(
                    name, "its runtime restarted, in pool mode: it serves its function no more"
                )
            )
            continue
        at = specialised_at(pod)
        idle_for = (
            (now - at).total_seconds()
            if state == STATE_SPECIALISED and serving in scaled_to_zero and at is not None
            else None
        )
        if idle_for is not None and idle_for > IDLE_GRACE_SECONDS:
            found.append(Retirement(name, f"Deployment {serving} scaled to zero: it went idle"))
            continue
        since = claimed_since.get(str(meta_.get("uid", "")))
        if state == STATE_CLAIMED and since is not None and now - since > limit:
            found.append(
                Retirement(name, f"claimed {CLAIM_LIMIT_SECONDS:g}s ago and not specialised")
            )
    return found
