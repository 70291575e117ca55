"""The Deployment that runs a Function's pods."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Final, Literal, NotRequired, TypedDict

from kfn.api import function, meta
from kfn.resources import objects, service
from kfn.resources import platform as platform_

CONTAINER_NAME: Final = "function"
CONTAINER_PORT: Final = 8080
TASK_ROOT: Final = "/var/task"

TMP_SIZE_LIMIT: Final = "512Mi"
"""Lambda's default ephemeral /tmp size; the root filesystem itself is read-only."""

REVISION_HISTORY_LIMIT: Final = 2
SHUTDOWN_GRACE_SECONDS: Final = 10
"""Beyond the function timeout, for the runtime to finish an in-flight request and exit."""

LIVENESS_PERIOD_SECONDS: Final = 10
STARTUP_LIMIT_SECONDS: Final = 600
"""How long loading the handler may take before the kubelet restarts the container."""
DEFAULT_REGION: Final = "local"


class EnvVar(TypedDict):
    name: str
    value: NotRequired[str]
    valueFrom: NotRequired[dict[str, Any]]


class HttpGet(TypedDict):
    path: str
    port: str


class Probe(TypedDict):
    httpGet: HttpGet
    periodSeconds: int
    timeoutSeconds: int
    failureThreshold: int
    successThreshold: int


class Container(TypedDict):
    name: str
    image: str
    imagePullPolicy: Literal["IfNotPresent"]
    ports: list[dict[str, Any]]
    env: list[EnvVar]
    envFrom: NotRequired[list[dict[str, Any]]]
    resources: dict[str, dict[str, str]]
    readinessProbe: Probe
    livenessProbe: Probe
    startupProbe: Probe
    lifecycle: dict[str, Any]
    securityContext: dict[str, Any]
    volumeMounts: list[dict[str, str]]


class PodSpec(TypedDict):
    serviceAccountName: str
    imagePullSecrets: NotRequired[list[dict[str, str]]]
    nodeSelector: NotRequired[dict[str, str]]
    tolerations: NotRequired[list[dict[str, Any]]]
    affinity: NotRequired[dict[str, Any]]
    topologySpreadConstraints: NotRequired[list[dict[str, Any]]]
    priorityClassName: NotRequired[str]
    automountServiceAccountToken: bool
    enableServiceLinks: bool
    terminationGracePeriodSeconds: int
    securityContext: dict[str, Any]
    containers: list[Container]
    volumes: list[dict[str, Any]]


class PodTemplate(TypedDict):
    metadata: dict[str, dict[str, str]]
    spec: PodSpec


class DeploymentSpec(TypedDict):
    replicas: NotRequired[int]
    revisionHistoryLimit: int
    selector: dict[str, dict[str, str]]
    strategy: dict[str, Any]
    template: PodTemplate


class Deployment(TypedDict):
    apiVersion: Literal["apps/v1"]
    kind: Literal["Deployment"]
    metadata: objects.ObjectMeta
    spec: DeploymentSpec


@dataclasses.dataclass(frozen=True, slots=True)
class Version:
    """The published version a Deployment of its own runs (``<function>-v<N>``)."""

    number: int


def build_deployment(
    fn: function.Function,
    *,
    image: str,
    source_hash: str,
    initial_replicas: int | None,
    platform: platform_.Platform | None = None,
    version: Version | None = None,
) -> Deployment:
    """The Deployment of a function, pinned to ``image`` (a digest reference).

    ``initial_replicas`` has no default on purpose: pass a number only when creating the
    Deployment, and ``None`` on every later update. Without it the object has no
    ``spec.replicas`` at all, so a server-side apply by the operator leaves the replica count the
    autoscaler set alone. ``platform`` carries the cluster's pull Secrets and placement.

    With ``version`` this is that version's own Deployment, ``<function>-v<N>`` (``fn`` is then
    the Function with the version's template as its spec): its pods have their own component
    label, so the ``$LATEST`` Deployment's selector never takes them, and say their version.
    """
    annotations = {objects.ANNOTATION_SOURCE_HASH: source_hash}
    selector = objects.selector_for(fn)
    pod_labels = objects.pod_labels_for(fn)
    if version is not None:
        selector = objects.version_selector_for(fn, version.number)
        pod_labels = {**pod_labels, **selector}
    spec: DeploymentSpec = {
        "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
        "selector": {"matchLabels": selector},
        # A rollout adds a pod before it removes one, so capacity never drops mid-rollout.
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "template": {
            "metadata": {"labels": pod_labels, "annotations": dict(annotations)},
            "spec": _pod_spec(fn, image, platform or platform_.Platform(), version),
        },
    }
    if initial_replicas is not None:
        if initial_replicas < 0:
            raise ValueError(f"initial_replicas must not be negative, got {initial_replicas}")
        spec = {"replicas": initial_replicas, **spec}
    metadata = objects.object_meta(fn, annotations=annotations)
    if version is not None:
        metadata["name"] = objects.version_name(fn, version.number)
        metadata["labels"] = {**metadata["labels"], objects.LABEL_VERSION: str(version.number)}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}


def timeout_seconds(fn: function.Function) -> float:
    """The function timeout in seconds."""
    return meta.parse_duration(fn.spec.timeout).total_seconds()


def init_timeout_ms(fn: function.Function) -> int:
    """The budget of loading the handler, in milliseconds (the runtime contract, section 5b)."""
    return round(meta.parse_duration(fn.spec.init_timeout).total_seconds() * 1000)


#: How long a deleted pod keeps serving before its runtime is told to drain.
PRE_STOP_SECONDS: Final = 2


def _pod_spec(
    fn: function.Function, image: str, platform: platform_.Platform, version: Version | None
) -> PodSpec:
    """The function's pod: :func:`runtime_pod_spec` around :func:`runtime_container`, with the
    function's code in the image and its configuration in the environment."""
    container = runtime_container(
        image=image,
        env=[*_contract_env(fn, version), *(_user_env(var) for var in fn.spec.env)],
        resources=resource_fields(fn.spec.resources),
        # Ready only once the handler imported; fails fast (1s, 1 failure) so a draining pod
        # leaves the endpoints at once and a new one joins as soon as it can serve.
        readiness_path="/_kfn/ready",
        timeout=timeout_seconds(fn),
        env_from=[_user_env_from(source) for source in fn.spec.env_from],
    )
    return runtime_pod_spec(
        container,
        service_account=service.service_account_name(fn),
        timeout=timeout_seconds(fn),
        pull_secrets=platform.pull_secrets_for(fn),
        placement=platform.functions.overridden_by(fn.spec.scheduling),
    )


def runtime_container(
    *,
    image: str,
    env: list[EnvVar],
    resources: dict[str, dict[str, str]],
    readiness_path: str,
    timeout: float,
    volume_mounts: list[dict[str, str]] | None = None,
    env_from: list[dict[str, Any]] | None = None,
) -> Container:
    """The one container of a runtime's pod, a function's or a warm pool's
    (:mod:`kfn.resources.pools`): everything that keeps it contained is decided here once, so
    the two can never differ in it. ``timeout`` is the function timeout the pod must bear
    (its liveness probe waits longer than one invocation may take)."""
    container: Container = {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "env": env,
        "envFrom": env_from or [],
        "resources": resources,
        "readinessProbe": _probe(readiness_path, period=1, timeout=1, failures=1),
        "livenessProbe": liveness_probe(timeout),
        # Passes once loading the handler ended, loaded or not: the container's `started` then
        # tells the operator that a pod which is not ready may have failed to load its handler
        # (the runtime contract, section 5a). It bounds how long an import may take.
        "startupProbe": _probe(
            "/_kfn/started", period=1, timeout=1, failures=STARTUP_LIMIT_SECONDS
        ),
        # A deleted pod keeps serving while the endpoint controllers and kube-proxy take it out
        # of every Service; only then does the runtime get SIGTERM and drain. Without the pause a
        # client calling the Service directly could still be sent to a pod that already refuses.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *(volume_mounts or [])],
    }
    if not container["envFrom"]:
        del container["envFrom"]
    return container


def runtime_pod_spec(
    container: Container,
    *,
    service_account: str,
    timeout: float,
    pull_secrets: list[str],
    placement: platform_.Placement,
    volumes: list[dict[str, Any]] | None = None,
) -> PodSpec:
    """The pod around :func:`runtime_container`: Pod Security "restricted", nothing from the
    API (no token, no service links), ``/tmp`` the only writable place besides ``volumes``.

    No user or group is set: the runtime images run as a numeric non-root user, and a cluster
    that assigns each namespace its own range of user ids (OpenShift's ``restricted-v2``) may
    run the pod under any of them; ``runAsNonRoot`` is the guarantee.
    """
    spec: PodSpec = {
        "serviceAccountName": service_account,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": termination_grace_seconds(timeout),
        "securityContext": {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}},
            *(volumes or []),
        ],
    }
    if pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in pull_secrets]
    spec.update(placement.pod_fields())  # type: ignore[typeddict-item]
    return spec


def termination_grace_seconds(timeout: float) -> int:
    """How long a deleted pod may take: an invocation of ``timeout`` seconds, and the drain."""
    return math.ceil(timeout) + SHUTDOWN_GRACE_SECONDS


def _probe(path: str, *, period: int, timeout: int, failures: int) -> Probe:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
        "successThreshold": 1,
    }


def liveness_probe(timeout: float) -> Probe:
    """Lenient: a synchronous handler may keep the runtime from answering for a whole timeout.

    The pod is restarted only after failing for longer than the function timeout (``timeout``
    seconds) plus a period, so a slow but legitimate invocation is never killed by its own
    liveness check.
    """
    failures = max(3, math.ceil(timeout / LIVENESS_PERIOD_SECONDS) + 1)
    return _probe("/_kfn/live", period=LIVENESS_PERIOD_SECONDS, timeout=5, failures=failures)


def _contract_env(fn: function.Function, version: Version | None) -> list[EnvVar]:
    """The variables of the runtime contract; AWS_REGION only when the user sets none. The
    pods of a version's own Deployment name it in ``AWS_LAMBDA_FUNCTION_VERSION``."""
    name = fn.metadata.name
    memory_mb = str(fn.spec.memory_bytes // 2**20)
    timeout_ms = str(round(timeout_seconds(fn) * 1000))
    values: list[tuple[str, str | None]] = [
        ("KFN_FUNCTION_NAME", name),
        ("KFN_HANDLER", fn.spec.handler),
        ("_HANDLER", fn.spec.handler),
        ("KFN_TIMEOUT_MS", timeout_ms),
        ("KFN_INIT_TIMEOUT_MS", str(init_timeout_ms(fn))),
        ("KFN_CONCURRENCY", str(fn.spec.concurrency)),
        ("KFN_MEMORY_MB", memory_mb),
        ("KFN_PORT", str(CONTAINER_PORT)),
        ("AWS_LAMBDA_FUNCTION_NAME", name),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST" if version is None else str(version.number)),
        ("LAMBDA_TASK_ROOT", TASK_ROOT),
    ]
    if not any(var.name == "AWS_REGION" for var in fn.spec.env):
        values.append(("AWS_REGION", DEFAULT_REGION))
    values += _logging_env(fn.spec.logging)
    return [{"name": key, "value": value} for key, value in values if value is not None]


def _logging_env(logging: function.Logging | None) -> list[tuple[str, str | None]]:
    """Lambda's variables of its JSON log format, and the platform's level for the runtime;
    none for Text, the runtimes' default (so a Function that does not ask is unchanged)."""
    if logging is None or logging.format != "JSON":
        return []
    return [
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ("AWS_LAMBDA_LOG_LEVEL", logging.application_log_level or "INFO"),
        ("KFN_SYSTEM_LOG_LEVEL", logging.system_log_level or "INFO"),
    ]


def _user_env(var: function.EnvVar) -> EnvVar:
    """One user variable; ``$`` is doubled so the kubelet passes values through literally.

    Kubernetes expands ``$(NAME)`` in env values and turns ``$$`` into ``$``; Lambda does no
    expansion, so a value copied from a Lambda configuration must arrive unchanged.
    """
    if var.value_from is None:
        return {"name": var.name, "value": (var.value or "").replace("$", "$$")}
    source = var.value_from
    if source.secret_key_ref is not None:
        return {
            "name": var.name,
            "valueFrom": {"secretKeyRef": _key_selector(source.secret_key_ref)},
        }
    assert source.config_map_key_ref is not None  # validation: exactly one is set
    return {
        "name": var.name,
        "valueFrom": {"configMapKeyRef": _key_selector(source.config_map_key_ref)},
    }


def _key_selector(selector: function.KeySelector) -> dict[str, Any]:
    result: dict[str, Any] = {"name": selector.name, "key": selector.key}
    if selector.optional is not None:
        result["optional"] = selector.optional
    return result


def _user_env_from(source: function.EnvFromSource) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if source.prefix is not None:
        result["prefix"] = source.prefix
    if source.secret_ref is not None:
        result["secretRef"] = {"name": source.secret_ref.name}
    if source.config_map_ref is not None:
        result["configMapRef"] = {"name": source.config_map_ref.name}
    return result


def resource_fields(resources: function.Resources) -> dict[str, dict[str, str]]:
    result: dict[str, dict[str, str]] = {}
    for key, amounts in (("requests", resources.requests), ("limits", resources.limits)):
        if amounts is None:
            continue
        values = amounts.model_dump(exclude_none=True)
        if values:
            result[key] = values
    return result
