"""The ``Function`` kind: code, how to run it, and how far it may scale.

Defaults follow AWS Lambda where Lambda has an answer (128 MiB of memory, one request per
instance, a 30-second timeout here instead of Lambda's 3 s because HTTP functions behind an
activator routinely need more), so that an unchanged Lambda handler behaves the same.
"""

from __future__ import annotations

import datetime
import enum
import re
from typing import Annotated, Any, ClassVar, Final, Literal

import pydantic

from kfn.api import meta, toplevel, versioning, web
from kfn.api.meta import Cel, DurationRange, Rule

KIND: Final = "Function"
PLURAL: Final = "functions"

RUNTIMES: Final = ("python3.11", "python3.12", "python3.13", "nodejs18", "nodejs20", "nodejs22")
Runtime = Literal["python3.11", "python3.12", "python3.13", "nodejs18", "nodejs20", "nodejs22"]
PYTHON_RUNTIMES: Final = ("python3.11", "python3.12", "python3.13")
NODEJS_RUNTIMES: Final = ("nodejs18", "nodejs20", "nodejs22")

LAMBDA_DEPRECATION: Final = {
    "python3.11": datetime.date(2027, 6, 30),
    "python3.12": datetime.date(2028, 10, 31),
    "python3.13": datetime.date(2029, 6, 30),
    "nodejs18": datetime.date(2025, 9, 1),
    "nodejs20": datetime.date(2026, 4, 30),
    "nodejs22": datetime.date(2027, 4, 30),
}
"""The day AWS Lambda deprecates each runtime (its ``.x`` counterpart), as Lambda's runtime
page publishes it: from then on Lambda applies no security patches to it and refuses new
functions on it. kfn keeps running a deprecated runtime but warns about it."""

DEPRECATION_CHECKED_ON: Final = datetime.date(2026, 12, 4)
"""When the dates above were last checked against Lambda's: ``kubectl explain`` names the
runtimes deprecated by then (the CRD is generated, so it cannot know today)."""


def deprecation(runtime: str, today: datetime.date) -> str | None:
    """What to tell the users of ``runtime`` on ``today`` (a Warning Event on each Function
    using it), or None while Lambda still supports it."""
    deprecated_on = LAMBDA_DEPRECATION.get(runtime)
    if deprecated_on is None or today < deprecated_on:
        return None
    family = PYTHON_RUNTIMES if runtime in PYTHON_RUNTIMES else NODEJS_RUNTIMES
    newer = [r for r in family if today < LAMBDA_DEPRECATION[r]]
    move = f"move the function to {' or '.join(newer)}" if newer else "move the function on"
    return (
        f"AWS Lambda deprecated {runtime}.x on {deprecated_on.isoformat()} and no longer "
        f"patches it nor takes new functions on it; kfn keeps running it, but {move}"
    )


def _runtimes_description() -> str:
    """The runtimes and their deprecation dates, for ``kubectl explain``."""
    dates = ", ".join(f"{r} {LAMBDA_DEPRECATION[r].isoformat()}" for r in RUNTIMES)
    deprecated = [r for r in RUNTIMES if deprecation(r, DEPRECATION_CHECKED_ON) is not None]
    return (
        f"Language runtime: {', '.join(RUNTIMES)}. Deprecated (as of "
        f"{DEPRECATION_CHECKED_ON.isoformat()}): {', '.join(deprecated)}. Lambda deprecates "
        f"each runtime on a published date ({dates}); a Function on a runtime past its date "
        "gets a Warning Event DeprecatedRuntime when it is created or changed and whenever "
        "the operator starts, and kfn keeps running it. Required unless source.image is set."
    )


PYTHON_HANDLER_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"
"""``module.function``; the module may be dotted (``app.main.handler``)."""

NODE_HANDLER_PATTERN: Final = (
    r"^[A-Za-z0-9_][A-Za-z0-9_-]*(/[A-Za-z0-9_][A-Za-z0-9_-]*)*"
    r"(\.[A-Za-z_$][A-Za-z0-9_$]*)+$"
)
"""``file.export``; the file may sit in a folder (``src/app.handler``), without extension."""

INLINE_SOURCE_LIMIT: Final = 262_144
"""Characters of inline source in total (256 Ki).

A Function is stored in etcd, whose objects are limited to 1.5 MiB, and is sent whole to every
watcher on each change; 256 Ki keeps the object far below that limit with room for env and status.
Code beyond that belongs in a ConfigMap (up to 1 MiB) or, better, an archive.
"""

MAX_FUNCTION_NAME: Final = 63
HEX_SHA256_PATTERN: Final = r"^[a-f0-9]{64}$"
DIGEST_PATTERN: Final = r"^sha256:[a-f0-9]{64}$"


def _hex_sha256(description: str) -> Any:
    """A lower-case hex SHA-256 field."""
    return pydantic.Field(max_length=64, pattern=HEX_SHA256_PATTERN, description=description)


def _digest(description: str) -> Any:
    """A content digest field (``sha256:<hex>``)."""
    return pydantic.Field(max_length=71, pattern=DIGEST_PATTERN, description=description)


class ConditionType(enum.StrEnum):
    """Condition types of a Function. ``Active`` is deliberately not part of ``Ready``."""

    READY = "Ready"
    SOURCE_READY = "SourceReady"
    BUILD_SUCCEEDED = "BuildSucceeded"
    DEPLOYED = "Deployed"
    ACTIVE = "Active"
    EXPOSED = "Exposed"
    ROLLED_OUT = "RolledOut"
    """Whether the aliases' rollouts reached their new versions (present only while an alias
    has a rollout); outside Ready: a rollback leaves the function serving."""
    WARM_POOL = "WarmPool"
    """Whether the function's cold starts are served from its namespace's warm pool, and if
    not why; outside Ready: a function without a pool serves all the same."""


READY_DEPENDS_ON: Final = (
    ConditionType.SOURCE_READY,
    ConditionType.BUILD_SUCCEEDED,
    ConditionType.DEPLOYED,
)
"""The conditions that make up ``Ready``; a function scaled to zero is still Ready."""


class Reason(enum.StrEnum):
    """Reasons the operator writes into a Function's conditions."""

    READY = "Ready"
    RECONCILING = "Reconciling"
    SOURCE_RESOLVED = "SourceResolved"
    SOURCE_NOT_FOUND = "SourceNotFound"
    SOURCE_FETCH_FAILED = "SourceFetchFailed"
    SOURCE_CHECKSUM_MISMATCH = "SourceChecksumMismatch"
    IMAGE_PROVIDED = "ImageProvided"
    BUILDING = "Building"
    BUILD_NOT_AVAILABLE = "BuildNotAvailable"
    BUILD_FAILED = "BuildFailed"
    CODE_CHECK_FAILED = "CodeCheckFailed"
    BUILT = "Built"
    DEPLOYING = "Deploying"
    DEPLOYED = "Deployed"
    DEPLOYMENT_FAILED = "DeploymentFailed"
    DEPLOYMENT_REJECTED = "DeploymentRejected"
    INVALID_SPEC = "InvalidSpec"
    TIMEOUT_ABOVE_MAXIMUM = "TimeoutAboveMaximum"
    PODS_FAILING = "PodsFailing"
    INIT_ERROR = "InitError"
    IMAGE_PULL_SECRET_NOT_FOUND = "ImagePullSecretNotFound"  # noqa: S105 - a reason
    REGISTRY_CREDENTIALS_NOT_FOUND = "RegistryCredentialsNotFound"
    REGISTRY_REFUSED = "RegistryRefused"
    ACTIVE = "Active"
    ACTIVATING = "Activating"
    SCALED_TO_ZERO = "ScaledToZero"
    EXPOSED = "Exposed"
    EXPOSING = "Exposing"
    NOT_EXPOSED = "NotExposed"
    ROLLOUT_PROGRESSING = "Progressing"
    ROLLOUT_PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    POOL_AVAILABLE = "PoolAvailable"
    NAMESPACE_NOT_OPTED_IN = "NamespaceNotOptedIn"
    POOL_SIZE_ZERO = "PoolSizeZero"
    POOLS_DISABLED = "PoolsDisabled"
    POOL_PREBUILT_IMAGE = "PrebuiltImage"
    POOL_LAYERS = "LayersUsed"
    POOL_NO_IMAGE = "NoPoolImage"
    POOL_TIMEOUT_TOO_LONG = "TimeoutTooLongForPool"


# --- source ----------------------------------------------------------------------------------

FILE_NAME_PATTERN: Final = r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"


def _is_plain_relative_path(name: str) -> bool:
    return not any(part in {".", ".."} for part in name.split("/"))


FileName = Annotated[
    str,
    pydantic.Field(min_length=1, max_length=253, pattern=FILE_NAME_PATTERN),
    Cel(
        Rule(
            cel="!('/' + self + '/').contains('/../') && !('/' + self + '/').contains('/./')",
            message="file names must be relative paths without '.' or '..' segments",
            check=_is_plain_relative_path,
        ),
        Rule(
            cel="!self.startsWith('..')",
            message="file names cannot start with '..': the build mounts the files as a "
            "ConfigMap volume, whose own entries (..data) start so",
            check=lambda name: not name.startswith(".."),
        ),
    ),
]
"""A file's path below the code root.

Inline files reach the build as items of a ConfigMap volume (``kfn.resources.build``), and the
API server refuses an item path that starts with ``..`` (the kubelet keeps ``..data`` and its
timestamped directories beside the files), so such a name is refused here rather than failing
the build.
"""


class InlineFile(meta.Model):
    """One file of inline source."""

    name: FileName = pydantic.Field(
        description="Path of the file below the code root (/var/task), e.g. handler.py or "
        "lib/util.js. Relative, '/'-separated, without '.' or '..' segments."
    )
    content: str = pydantic.Field(
        max_length=INLINE_SOURCE_LIMIT, description="Content of the file as UTF-8 text."
    )


def _inline_size(source: Any) -> int:
    return sum(len(file.content) for file in source.files)


def _no_file_is_a_directory(source: Any) -> bool:
    names = {file.name for file in source.files}
    return not any(
        "/".join(parts[:depth]) in names
        for parts in (name.split("/") for name in names)
        for depth in range(1, len(parts))
    )


class InlineSource(meta.Model):
    """Source code written into the Function itself, for small functions and examples."""

    files: list[InlineFile] = pydantic.Field(
        min_length=1,
        max_length=100,
        description="The files of the function. Together at most 262144 characters (256 Ki): "
        "the Function is stored in etcd (1.5 MiB per object) and sent to every watcher, so larger "
        "code belongs in a ConfigMap or an archive.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )

    __rules__ = (
        Rule(
            cel=f"self.files.map(f, size(f.content)).sum() <= {INLINE_SOURCE_LIMIT}",
            message="inline source is limited to 262144 characters in total; use an archive "
            "or a configMapRef for larger code",
            check=lambda source: _inline_size(source) <= INLINE_SOURCE_LIMIT,
        ),
        Rule(
            cel="self.files.all(f, !self.files.exists(g, g.name.startsWith(f.name + '/')))",
            message="a file name cannot also be the directory of another file (as with a and "
            "a/b.py): the build could not write both",
            check=_no_file_is_a_directory,
        ),
    )


class ArchiveSource(meta.Model):
    """A zip or tar.gz archive of the code, fetched over HTTP(S) and checked by its digest."""

    url: str = pydantic.Field(
        max_length=2048,
        pattern=r"^https?://[^\s/?#]+[^\s]*$",
        description="http:// or https:// URL of a .zip or .tar.gz archive of the code.",
    )
    sha256: str = _hex_sha256(
        "Lower-case hex SHA-256 of the archive. The download is refused if it differs, and the "
        "build is keyed by it, so a new archive needs a new digest."
    )


IMAGE_PATTERN: Final = r"^[a-zA-Z0-9][a-zA-Z0-9._/:@-]*$"


def _count_set(*values: object) -> int:
    return sum(value is not None for value in values)


class FunctionSource(meta.Model):
    """Where the code comes from: exactly one of inline, configMapRef, archive or image."""

    inline: InlineSource | None = pydantic.Field(
        default=None, description="Files written into the Function (small functions only)."
    )
    config_map_ref: meta.LocalObjectReference | None = pydantic.Field(
        default=None,
        description="A ConfigMap in the same namespace whose keys become files of the code root. "
        "A change to the ConfigMap rebuilds the function.",
    )
    archive: ArchiveSource | None = pydantic.Field(
        default=None, description="An archive of the code fetched over HTTP(S)."
    )
    image: str | None = pydantic.Field(
        default=None,
        max_length=512,
        pattern=IMAGE_PATTERN,
        description="A prebuilt image that already contains a kfn runtime and the code; "
        "nothing is built. Pin it by digest for reproducible rollouts.",
    )

    __rules__ = (
        Rule(
            cel="(has(self.inline) ? 1 : 0) + (has(self.configMapRef) ? 1 : 0)"
            " + (has(self.archive) ? 1 : 0) + (has(self.image) ? 1 : 0) == 1",
            message="source must set exactly one of inline, configMapRef, archive or image",
            check=lambda s: _count_set(s.inline, s.config_map_ref, s.archive, s.image) == 1,
        ),
    )


# --- layers ----------------------------------------------------------------------------------

MAX_LAYERS: Final = 5
"""Layers one Function may use, as in Lambda."""
LAYER_IMAGE_PATTERN: Final = (
    r"^(localhost|[a-zA-Z0-9-]+[.:][a-zA-Z0-9.:-]*)(/[a-z0-9._-]+)+@sha256:[a-f0-9]{64}$"
)
"""An image reference with its registry host, pinned by digest: the layer is keyed by that
digest, so a moved tag can never change what a built Function runs."""


class LayerArchive(meta.Model):
    """A zip or tar.gz archive of a layer, fetched over HTTP(S) and checked by its digest."""

    url: str = pydantic.Field(
        max_length=2048,
        pattern=r"^https?://[^\s/?#]+[^\s]*$",
        description="http:// or https:// URL of a .zip or .tar.gz archive whose top-level "
        "folders (python/, nodejs/node_modules/, bin/, lib/...) land in /opt, as a Lambda "
        "layer's .zip does. Fetched from the same addresses as source.archive.",
    )
    sha256: str = _hex_sha256(
        "Lower-case hex SHA-256 of the archive (required). The download is refused if it "
        "differs, and the layer is built once per digest and reused, so new content needs a "
        "new digest."
    )


class FunctionLayer(meta.Model):
    """One layer: content added under /opt, from an archive or from an image's /opt."""

    name: str = pydantic.Field(
        min_length=1,
        max_length=63,
        pattern=meta.DNS1123_LABEL_PATTERN,
        description="Name of the layer within the Function, shown in build logs and errors.",
    )
    archive: LayerArchive | None = pydantic.Field(
        default=None, description="The layer as a .zip or .tar.gz archive, unpacked into /opt."
    )
    image: str | None = pydantic.Field(
        default=None,
        max_length=512,
        pattern=LAYER_IMAGE_PATTERN,
        description="An OCI image, with its registry host and pinned by digest "
        "(registry.example.com/layers/tools@sha256:...), whose /opt "
        "directory is the layer: build it FROM scratch with COPY python /opt/python, as "
        "Lambda's container-image functions copy a layer in. Nothing outside its /opt is used.",
    )

    __rules__ = (
        Rule(
            cel="has(self.archive) != has(self.image)",
            message="a layer must set exactly one of archive or image",
            check=lambda layer: _count_set(layer.archive, layer.image) == 1,
        ),
    )


# --- environment -----------------------------------------------------------------------------

ENV_NAME_PATTERN: Final = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
RESERVED_ENV_PREFIXES: Final = ("KFN_", "AWS_LAMBDA_")
RESERVED_ENV_NAMES: Final = ("_HANDLER", "LAMBDA_TASK_ROOT")


def _not_reserved(name: str) -> bool:
    return not name.startswith(RESERVED_ENV_PREFIXES) and name not in RESERVED_ENV_NAMES


EnvName = Annotated[
    str,
    pydantic.Field(min_length=1, max_length=253, pattern=ENV_NAME_PATTERN),
    Cel(
        Rule(
            cel="!self.startsWith('KFN_') && !self.startsWith('AWS_LAMBDA_')"
            " && !(self in ['_HANDLER', 'LAMBDA_TASK_ROOT'])",
            message="names starting with KFN_ or AWS_LAMBDA_, _HANDLER and LAMBDA_TASK_ROOT "
            "are set by kfn and cannot be overridden",
            check=_not_reserved,
        )
    ),
]


class KeySelector(meta.Model):
    """One key of a Secret or ConfigMap in the same namespace."""

    name: meta.ObjectName = pydantic.Field(description="Name of the Secret or ConfigMap.")
    key: str = pydantic.Field(
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="The key whose value is used.",
    )
    optional: bool | None = pydantic.Field(
        default=None,
        description="Start the function even if the object or key is missing (default false).",
    )


class EnvVarSource(meta.Model):
    """Where the value of an environment variable comes from: a Secret or a ConfigMap key."""

    secret_key_ref: KeySelector | None = pydantic.Field(
        default=None, description="A key of a Secret."
    )
    config_map_key_ref: KeySelector | None = pydantic.Field(
        default=None, description="A key of a ConfigMap."
    )

    __rules__ = (
        Rule(
            cel="has(self.secretKeyRef) != has(self.configMapKeyRef)",
            message="valueFrom must set exactly one of secretKeyRef or configMapKeyRef",
            check=lambda s: _count_set(s.secret_key_ref, s.config_map_key_ref) == 1,
        ),
    )


class EnvVar(meta.Model):
    """An environment variable of the function. Values are literal: ``$(VAR)`` is not expanded."""

    name: EnvName = pydantic.Field(description="Name of the variable.")
    value: str | None = pydantic.Field(
        default=None, max_length=32768, description="Literal value of the variable."
    )
    value_from: EnvVarSource | None = pydantic.Field(
        default=None, description="Take the value from a Secret or ConfigMap key instead."
    )

    __rules__ = (
        Rule(
            cel="!(has(self.value) && has(self.valueFrom))",
            message="set either value or valueFrom, not both",
            check=lambda s: s.value is None or s.value_from is None,
        ),
    )


class EnvFromSource(meta.Model):
    """All keys of a Secret or ConfigMap as environment variables."""

    prefix: (
        Annotated[
            str,
            pydantic.Field(max_length=253, pattern=ENV_NAME_PATTERN),
            Cel(
                Rule(
                    cel="!self.startsWith('KFN_') && !self.startsWith('AWS_LAMBDA_')",
                    message="prefixes starting with KFN_ or AWS_LAMBDA_ would name variables "
                    "that kfn sets; choose another prefix",
                    check=lambda prefix: not prefix.startswith(RESERVED_ENV_PREFIXES),
                )
            ),
        ]
        | None
    ) = pydantic.Field(
        default=None,
        description="Prefix added to every variable name taken from the object. Cannot start "
        "with KFN_ or AWS_LAMBDA_, which kfn reserves.",
    )
    secret_ref: meta.LocalObjectReference | None = pydantic.Field(
        default=None, description="A Secret whose keys become variables."
    )
    config_map_ref: meta.LocalObjectReference | None = pydantic.Field(
        default=None, description="A ConfigMap whose keys become variables."
    )

    __rules__ = (
        Rule(
            cel="has(self.secretRef) != has(self.configMapRef)",
            message="envFrom entries must set exactly one of secretRef or configMapRef",
            check=lambda s: _count_set(s.secret_ref, s.config_map_ref) == 1,
        ),
    )


# --- resources -------------------------------------------------------------------------------


class ResourceList(meta.Model):
    """CPU and memory amounts."""

    cpu: str | None = pydantic.Field(
        default=None,
        max_length=32,
        pattern=meta.CPU_PATTERN,
        description="CPU in cores (1, 0.5) or millicores (250m).",
    )
    memory: str | None = pydantic.Field(
        default=None,
        max_length=32,
        pattern=meta.MEMORY_PATTERN,
        description="Memory in bytes with an optional suffix (128Mi, 1Gi, 512M).",
    )


def _limit_not_below_request(resource: str) -> Rule:
    def check(resources: Any) -> bool:
        request = getattr(resources.requests, resource, None) if resources.requests else None
        limit = getattr(resources.limits, resource, None) if resources.limits else None
        if request is None or limit is None:
            return True
        parse = meta.parse_cpu_millis if resource == "cpu" else meta.parse_memory_bytes
        return bool(parse(limit) >= parse(request))

    return Rule(
        cel=f"!has(self.requests) || !has(self.limits) || !has(self.requests.{resource})"
        f" || !has(self.limits.{resource})"
        f" || !quantity(self.limits.{resource}).isLessThan(quantity(self.requests.{resource}))",
        message=f"limits.{resource} must not be less than requests.{resource}",
        check=check,
    )


class Resources(meta.Model):
    """Compute resources of each function pod.

    The default, used when ``resources`` is not given at all, is 128Mi of memory requested and
    as the limit (Lambda's default memory size, reported to the code as KFN_MEMORY_MB) and 100m
    of CPU requested without a CPU limit: a CPU limit throttles a busy handler and lengthens cold
    starts, while a memory limit keeps one function from starving its node.
    """

    requests: ResourceList | None = pydantic.Field(
        default=None, description="Amounts reserved for each pod by the scheduler."
    )
    limits: ResourceList | None = pydantic.Field(
        default=None,
        description="Upper bounds for each pod. The memory limit is the function's memory size.",
    )

    __rules__ = (_limit_not_below_request("cpu"), _limit_not_below_request("memory"))


DEFAULT_MEMORY: Final = "128Mi"
DEFAULT_CPU_REQUEST: Final = "100m"


def default_resources() -> Resources:
    """The resources of a Function that does not say (see :class:`Resources`)."""
    return Resources(
        requests=ResourceList(cpu=DEFAULT_CPU_REQUEST, memory=DEFAULT_MEMORY),
        limits=ResourceList(memory=DEFAULT_MEMORY),
    )


# --- scaling ---------------------------------------------------------------------------------


class Scale(meta.Model):
    """How many pods the autoscaler may run."""

    min_replicas: int = pydantic.Field(
        default=0,
        ge=0,
        le=1000,
        description="Pods kept even without traffic. 0 scales to zero after idleTimeout; "
        "the first request then waits for a cold start.",
    )
    max_replicas: int = pydantic.Field(
        default=10,
        ge=1,
        le=1000,
        description="Upper bound of pods, protecting the cluster and the services the "
        "function calls. Requests beyond maxReplicas x concurrency wait in the activator's "
        "bounded queue for at most queueTimeout; past it, or when the queue is full, they are "
        "refused with 429 and Retry-After (errorType TooManyRequestsException), as Lambda "
        "answers a synchronous call beyond a function's concurrency. A request refused so "
        "never ran, and is never reported as a timeout.",
    )
    target_concurrency: int | None = pydantic.Field(
        default=None,
        ge=1,
        le=1000,
        description="In-flight requests per pod the autoscaler aims for; defaults to "
        "concurrency. Lower it to keep headroom for bursts. At most concurrency.",
    )
    idle_timeout: Annotated[meta.Duration, DurationRange("1s", "24h")] = pydantic.Field(
        default="60s",
        description="Time without requests after which the function scales to minReplicas "
        "(a duration such as 60s or 5m; 1s to 24h). A wake (POST "
        "/_kfn/functions/{namespace}/{name}/wake) counts as a request.",
    )
    initial_scale: int | None = pydantic.Field(
        default=None,
        ge=0,
        le=1000,
        description="Pods the function's Deployment is created with when the Function is "
        "first deployed (Knative's initial-scale); defaults to minReplicas. Pods beyond "
        "minReplicas then follow the autoscaler: without requests they go after idleTimeout. "
        "0 deploys without starting a pod. At least minReplicas, at most maxReplicas.",
    )
    activation_scale: int = pydantic.Field(
        default=1,
        ge=1,
        le=1000,
        description="Pods started at once when the function scales from zero, and kept "
        "while it is above zero (Knative's activation-scale): a burst that will need several "
        "pods does not wait for them one scale-up at a time. At most maxReplicas.",
    )

    __rules__ = (
        Rule(
            cel="self.minReplicas <= self.maxReplicas",
            message="minReplicas must not be greater than maxReplicas",
            check=lambda s: s.min_replicas <= s.max_replicas,
        ),
        Rule(
            cel="!has(self.initialScale)"
            " || (self.minReplicas <= self.initialScale && self.initialScale <= self.maxReplicas)",
            message="initialScale must be between minReplicas and maxReplicas",
            check=lambda s: (
                s.initial_scale is None or s.min_replicas <= s.initial_scale <= s.max_replicas
            ),
        ),
        Rule(
            cel="self.activationScale <= self.maxReplicas",
            message="activationScale must not be greater than maxReplicas",
            check=lambda s: s.activation_scale <= s.max_replicas,
        ),
    )

    @property
    def replicas_at_creation(self) -> int:
        """The replicas a new Deployment of the function starts with: ``initialScale``,
        else ``minReplicas``."""
        return self.min_replicas if self.initial_scale is None else self.initial_scale


# --- where pods run --------------------------------------------------------------------------

#: Kubernetes objects kfn passes to the pod unchanged; the API server checks them when the
#: Deployment is applied (a mistake ends in Ready=False, DeploymentRejected, with its message).
_PASSED_THROUGH: Final[dict[str, pydantic.JsonValue]] = {
    "x-kubernetes-preserve-unknown-fields": True
}


class Toleration(meta.Model):
    """A toleration of the pods (as in a Pod's ``tolerations``)."""

    key: str | None = pydantic.Field(default=None, max_length=316, description="Taint key.")
    operator: Literal["Exists", "Equal"] | None = pydantic.Field(
        default=None, description="Exists matches any value; Equal (the default) one value."
    )
    value: str | None = pydantic.Field(default=None, max_length=63, description="Taint value.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = pydantic.Field(
        default=None, description="Taint effect to tolerate; all effects when unset."
    )
    toleration_seconds: int | None = pydantic.Field(
        default=None, ge=0, description="For NoExecute: how long the pod stays once tainted."
    )


class Scheduling(meta.Model):
    """Where the function's pods may run. Each field that is set replaces the cluster default
    the admin set in the chart (``functions.scheduling``); unset fields keep it."""

    node_selector: dict[str, Annotated[str, pydantic.Field(max_length=63)]] | None = pydantic.Field(
        default=None, max_length=32, description="Node labels the pods must match."
    )
    tolerations: list[Toleration] | None = pydantic.Field(
        default=None, max_length=32, description="Taints the pods tolerate."
    )
    affinity: dict[str, Any] | None = pydantic.Field(
        default=None,
        description="A Pod affinity object (nodeAffinity, podAffinity, podAntiAffinity).",
        json_schema_extra=_PASSED_THROUGH,
    )
    topology_spread_constraints: list[dict[str, Any]] | None = pydantic.Field(
        default=None,
        max_length=8,
        description="Pod topologySpreadConstraints, e.g. to spread a function over zones.",
        json_schema_extra={"items": {"type": "object", **_PASSED_THROUGH}},
    )
    priority_class_name: str | None = pydantic.Field(
        default=None,
        max_length=253,
        pattern=meta.DNS1123_SUBDOMAIN_PATTERN,
        description="PriorityClass of the pods.",
    )


# --- logs ------------------------------------------------------------------------------------

LogFormat = Literal["Text", "JSON"]
ApplicationLogLevel = Literal["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
SystemLogLevel = Literal["DEBUG", "INFO", "WARN"]


class Logging(meta.Model):
    """How the function's pods write their logs, as Lambda's ``LoggingConfig``
    (``docs/logging.md``)."""

    format: LogFormat = pydantic.Field(
        default="Text",
        description="Text (the default): Lambda's plain lines (START/END/REPORT, "
        "'[INFO]<tab>time<tab>request id<tab>message'). JSON: every line is one JSON object "
        "(timestamp, level, requestId, message; the platform's lines as platform.start and "
        "platform.report records), as Lambda's JSON log format. The pods get "
        "AWS_LAMBDA_LOG_FORMAT=JSON.",
    )
    application_log_level: ApplicationLogLevel | None = pydantic.Field(
        default=None,
        description="With format JSON only, as in Lambda: the least severe level of the "
        "function's own logs that is written (Python logging, print, console.*); less "
        "severe ones are dropped. Default INFO. Given to the function as AWS_LAMBDA_LOG_LEVEL.",
    )
    system_log_level: SystemLogLevel | None = pydantic.Field(
        default=None,
        description="With format JSON only, as in Lambda: the least severe level of the "
        "platform's own records that is written. platform.start and platform.report are INFO, "
        "so WARN drops them. Default INFO.",
    )

    __rules__ = (
        Rule(
            cel="(has(self.format) && self.format == 'JSON')"
            " || (!has(self.applicationLogLevel) && !has(self.systemLogLevel))",
            message="applicationLogLevel and systemLogLevel need format: JSON, as in Lambda",
            check=lambda s: (
                s.format == "JSON"
                or (s.application_log_level is None and s.system_log_level is None)
            ),
        ),
    )


# --- the spec --------------------------------------------------------------------------------


class FunctionSpec(meta.Model):
    """The desired state of a Function."""

    runtime: Runtime | None = pydantic.Field(
        default=None,
        description=_runtimes_description(),
    )
    handler: str | None = pydantic.Field(
        default=None,
        min_length=3,
        max_length=128,
        pattern=r"^[A-Za-z0-9_$./-]+$",
        description="Entry point, as in Lambda. Python: module.function (the module may be "
        "dotted: app.main.handler). Node.js: file.export (src/app.handler). Required unless "
        "source.image is set.",
    )
    source: FunctionSource = pydantic.Field(description="Where the code comes from.")
    dependencies: list[
        Annotated[
            str,
            pydantic.Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9@][^\r\n]*$"),
        ]
    ] = pydantic.Field(
        default_factory=list,
        max_length=200,
        description="Packages installed into the image by the build: pip requirement lines "
        "(requests==2.32.3) for Python, name@range (lodash@^4.17.0) for Node.js. "
        "Options such as --index-url are not accepted. Not allowed with source.image.",
    )
    layers: list[FunctionLayer] = pydantic.Field(
        default_factory=list,
        max_length=MAX_LAYERS,
        description="Up to 5 layers, as Lambda's: each one's files are added under /opt in the "
        "order given, a later layer overwriting an earlier one's files. /opt/python and "
        "/opt/python/lib/python3.X/site-packages are on Python's sys.path, "
        "/opt/nodejs/node_modules and /opt/nodejs/node<major>/node_modules on Node's NODE_PATH, "
        "/opt/bin on PATH and /opt/lib on LD_LIBRARY_PATH. The function's own code (/var/task) "
        "and dependencies (installed into /opt/python or /opt/nodejs/node_modules) take "
        "precedence over every layer: a package the function installs replaces a layer's copy "
        "of it whole. /opt/kfn belongs to the runtime. Not allowed with source.image.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )
    env: list[EnvVar] = pydantic.Field(
        default_factory=list,
        max_length=100,
        description="Environment variables of the function.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )
    env_from: list[EnvFromSource] = pydantic.Field(
        default_factory=list,
        max_length=20,
        description="Secrets and ConfigMaps whose keys all become environment variables.",
    )
    resources: Resources = pydantic.Field(
        default_factory=default_resources,
        description="CPU and memory of each pod. Default: 128Mi memory (request and limit, like "
        "Lambda's default memory size) and a 100m CPU request without a CPU limit, which would "
        "throttle handlers and slow cold starts.",
    )
    timeout: Annotated[meta.Duration, DurationRange("1s", "15m")] = pydantic.Field(
        default="30s",
        description="Longest time one invocation may run before it fails with a timeout "
        "(a duration such as 30s or 5m; 1s to 15m, Lambda's maximum). It counts from the "
        "moment the handler starts: time waiting for a pod (queueTimeout) or for the handler "
        "to load (initTimeout) is not part of it.",
    )
    queue_timeout: Annotated[meta.Duration, DurationRange("0s", "15m")] | None = pydantic.Field(
        default=None,
        description="Longest time a synchronous request may wait in the activator for a pod "
        "(one starting from zero, or one of maxReplicas becoming free) before it is refused "
        "with 429 TooManyRequestsException and Retry-After; it never counts against timeout. "
        "A duration such as 15s; 0s refuses at once when no pod is free, as Lambda does. "
        "Unset: the activator's default (chart value activator.queueTimeoutSeconds, 15 s), "
        "raised to initTimeout + 5s so a slow but allowed init is waited for.",
    )
    init_timeout: Annotated[meta.Duration, DurationRange("1s", "5m")] = pydantic.Field(
        default="10s",
        description="Longest time loading the handler (importing it and running module-level "
        "code) may take, as Lambda's 10-second init phase. Past it the pod reports "
        "Runtime.InitTimeout as its init error, answered to every invocation at once. Not "
        "counted in timeout, which starts when the handler does. 1s to 5m (the pod's startup "
        "probe allows 10 minutes).",
    )
    concurrency: int = pydantic.Field(
        default=1,
        ge=1,
        le=1000,
        description="Requests one pod handles at the same time. 1, as in Lambda, is safe for "
        "handlers written for Lambda that keep state in globals; raise it for I/O-bound code.",
    )
    scale: Scale = pydantic.Field(default_factory=Scale, description="Autoscaling bounds.")
    service_account_name: str | None = pydantic.Field(
        default=None,
        max_length=253,
        pattern=meta.DNS1123_SUBDOMAIN_PATTERN,
        description="ServiceAccount the pods run as. When unset, kfn creates one named after "
        "the function with no API access and no mounted token.",
    )

    image_pull_secrets: list[meta.LocalObjectReference] = pydantic.Field(
        default_factory=list,
        max_length=16,
        description="Secrets (kubernetes.io/dockerconfigjson) to pull the function's image "
        "with, in addition to the namespace's registry credentials and the cluster's default "
        "pull Secrets. A Secret named here that does not exist makes the Function "
        "Ready=False (ImagePullSecretNotFound).",
    )
    scheduling: Scheduling | None = pydantic.Field(
        default=None,
        description="Node selection, tolerations, affinity, spreading and priority of the pods.",
    )
    url: web.FunctionUrl | None = pydantic.Field(
        default=None,
        description="A Function URL: the function's own HTTPS address on the cluster's "
        "function domain (status.functionUrl), through the Gateway or Ingress the cluster "
        "admin set up, with an auth type and CORS settings as Lambda's. '{}' asks for one "
        "with the defaults (auth None, no CORS).",
    )
    logging: Logging | None = pydantic.Field(
        default=None,
        description="The log format and levels, as Lambda's logging configuration: Text "
        "(the default) or JSON lines, and with JSON the application's and the platform's "
        "log levels.",
    )
    publish: versioning.Publish = pydantic.Field(
        default=versioning.Publish.ALWAYS,
        description="When a version is published: Always (every change of code or "
        "configuration that is deployed becomes a new numbered version, so every change has a "
        "way back) or OnRequest (only when the annotation kfn.dev/publish changes, as Lambda's "
        "PublishVersion).",
    )
    version_retention: int = pydantic.Field(
        default=versioning.DEFAULT_VERSION_RETENTION,
        ge=1,
        le=versioning.MAX_VERSION_RETENTION,
        description="Versions kept; older ones are deleted, never one an alias routes to or a "
        "rollout moves from or to.",
    )
    aliases: list[versioning.Alias] = pydantic.Field(
        default_factory=list,
        max_length=versioning.MAX_ALIASES,
        description="Names callers use (function:name) for a version, or for two versions "
        "with weights, or for a version reached in steps (rollout).",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )

    __rules__ = (
        Rule(
            cel="has(self.runtime) || has(self.source.image)",
            message="runtime is required unless source.image is set",
            check=lambda s: s.runtime is not None or s.source.image is not None,
        ),
        Rule(
            cel="has(self.handler) || has(self.source.image)",
            message="handler is required unless source.image is set",
            check=lambda s: s.handler is not None or s.source.image is not None,
        ),
        Rule(
            cel="!has(self.handler) || !has(self.runtime) || !self.runtime.startsWith('python')"
            f" || self.handler.matches(r'{PYTHON_HANDLER_PATTERN}')",
            message="a Python handler must look like module.function "
            "(e.g. handler.main or app.api.handler)",
            check=lambda s: _handler_matches(s, PYTHON_RUNTIMES, PYTHON_HANDLER_PATTERN),
        ),
        Rule(
            cel="!has(self.handler) || !has(self.runtime) || !self.runtime.startsWith('nodejs')"
            f" || self.handler.matches(r'{NODE_HANDLER_PATTERN}')",
            message="a Node.js handler must look like file.export "
            "(e.g. index.handler or src/app.handler)",
            check=lambda s: _handler_matches(s, NODEJS_RUNTIMES, NODE_HANDLER_PATTERN),
        ),
        Rule(
            cel="!has(self.source.image) || !has(self.dependencies)"
            " || size(self.dependencies) == 0",
            message="dependencies cannot be used with source.image: a prebuilt image is not built",
            check=lambda s: s.source.image is None or not s.dependencies,
        ),
        Rule(
            cel="!has(self.source.image) || !has(self.layers) || size(self.layers) == 0",
            message="layers cannot be used with source.image: a prebuilt image is not built",
            check=lambda s: s.source.image is None or not s.layers,
        ),
        Rule(
            cel="!has(self.scale) || !has(self.scale.targetConcurrency)"
            " || self.scale.targetConcurrency <= (has(self.concurrency) ? self.concurrency : 1)",
            message="scale.targetConcurrency must not be greater than concurrency",
            check=lambda s: (
                s.scale.target_concurrency is None or s.scale.target_concurrency <= s.concurrency
            ),
        ),
    )

    @property
    def target_concurrency(self) -> int:
        """In-flight requests per pod the autoscaler aims for."""
        return self.scale.target_concurrency or self.concurrency

    @property
    def memory_bytes(self) -> int:
        """The function's memory size: its memory limit, else its request, else the default."""
        for amounts in (self.resources.limits, self.resources.requests):
            if amounts is not None and amounts.memory is not None:
                return meta.parse_memory_bytes(amounts.memory)
        return meta.parse_memory_bytes(DEFAULT_MEMORY)


def _handler_matches(spec: FunctionSpec, runtimes: tuple[str, ...], pattern: str) -> bool:
    if spec.handler is None or spec.runtime not in runtimes:
        return True
    return re.fullmatch(pattern, spec.handler) is not None


BUILD_RECORDS: Final = 3
"""Builds a Function's status remembers: the current one and a few before, so that going back
to a recent version deploys its image without building it again."""
DEPENDENCY_LAYER_RECORDS: Final = 3
"""Dependency layers a Function's status remembers, the most recently used first."""


# Only the operator writes these records (the status subresource), from the result of a build
# Job it created: an image is taken as built only from here, never from a tag in the registry,
# which anyone who can push to the repository could have set (kfn.resources.provenance).


class BuildRecord(meta.StatusModel):
    """A build kfn ran, and the image its build Job reported pushing."""

    hash: str = _hex_sha256("The build hash: source, runtime image and the Function's name.")
    image: str = pydantic.Field(
        max_length=512,
        pattern=r"^[^\s@]+@sha256:[a-f0-9]{64}$",
        description="The image the build pushed, by digest.",
    )


class DependencyLayerRecord(meta.StatusModel):
    """A dependency layer a build pushed, reused by its digest for the same dependency set."""

    key: str = _hex_sha256(
        "SHA-256 of what decides the layer: runtime image, manifests, dependencies."
    )
    digest: str = _digest("The layer blob's digest.")
    size: int = pydantic.Field(ge=0, description="The layer blob's size in bytes.")
    media_type: str = pydantic.Field(max_length=128, description="The layer's media type.")
    diff_id: str = _digest("The digest of the uncompressed layer (the image config's diff_id).")


LAYER_RECORDS: Final = 10
"""Layers a Function's status remembers, the most recently used first: the five of the current
spec and a few before, so going back to a recent spec reuses its layers too."""


class LayerRecord(DependencyLayerRecord):
    """A layer (``spec.layers``) a build pushed, reused by its digest for the same content."""

    key: str = _hex_sha256(
        "SHA-256 of what decides the layer: the archive's SHA-256 or the image's digest."
    )


class FunctionStatus(toplevel.Status):
    """The observed state of a Function, written by the operator."""

    conditions: list[meta.Condition] = toplevel.conditions_field(
        "Ready (summary of SourceReady, BuildSucceeded and Deployed), SourceReady, "
        "BuildSucceeded, Deployed, Active (pods running; not part of Ready, so a function "
        "scaled to zero stays Ready), Exposed (the Function URL is served at the cluster's "
        "edge; not part of Ready either), and WarmPool (cold starts are served from the "
        "namespace's warm pool, or why not; not part of Ready either)."
    )
    image: str | None = pydantic.Field(
        default=None, max_length=512, description="The image running, referenced by digest."
    )
    url: str | None = pydantic.Field(
        default=None, max_length=2048, description="In-cluster URL that invokes the function."
    )
    function_url: str | None = pydantic.Field(
        default=None,
        max_length=2048,
        description="The Function URL (spec.url), once the cluster's Gateway or Ingress serves it.",
    )
    replicas: int | None = pydantic.Field(
        default=None, ge=0, description="Pods that exist for the function."
    )
    ready_replicas: int | None = pydantic.Field(
        default=None, ge=0, description="Pods ready to take requests."
    )
    source_hash: str | None = pydantic.Field(
        default=None,
        max_length=64,
        description="SHA-256 of the build inputs (runtime, files, dependencies); names the image.",
    )
    builds: list[BuildRecord] | None = pydantic.Field(
        default=None,
        max_length=BUILD_RECORDS,
        description="The latest builds kfn ran and the image each pushed, newest first: the "
        "only proof that an image was built by kfn.",
    )
    dependency_layers: list[DependencyLayerRecord] | None = pydantic.Field(
        default=None,
        max_length=DEPENDENCY_LAYER_RECORDS,
        description="Dependency layers kfn built for this Function, most recently used first.",
    )
    layers: list[LayerRecord] | None = pydantic.Field(
        default=None,
        max_length=LAYER_RECORDS,
        description="Layers (spec.layers) kfn built for this Function, most recently used first.",
    )
    versions: list[versioning.VersionRecord] | None = pydantic.Field(
        default=None,
        max_length=versioning.MAX_VERSION_RETENTION,
        description="The published versions kept (spec.versionRetention), newest first; each "
        "is also a FunctionVersion object.",
    )
    latest_version: int | None = pydantic.Field(
        default=None,
        ge=1,
        description="The newest version's number; numbers are never reused.",
    )
    aliases: list[versioning.AliasStatus] | None = pydantic.Field(
        default=None,
        max_length=versioning.MAX_ALIASES,
        description="How each alias routes now, and where its rollout stands.",
    )


FUNCTION_NAME_RULE: Final = toplevel.NameRule(
    max_length=MAX_FUNCTION_NAME,
    pattern=meta.DNS1035_LABEL_PATTERN,
    message="a Function name must be a DNS-1035 label: at most 63 lower-case letters, digits "
    "and '-', starting with a letter and ending with a letter or digit (it names a Service)",
)


class Function(toplevel.Object):
    """A Function as stored by the API server."""

    NAME_RULE: ClassVar[toplevel.NameRule] = FUNCTION_NAME_RULE

    kind: Literal["Function"] = KIND
    spec: FunctionSpec
    status: FunctionStatus | None = None
