"""The build of a Function: its identity, the Job that runs it and the ConfigMap of its source.

Pure: the operator passes the Function, the source hash it computed and the settings it read
from its environment (:class:`BuildSettings`); the result is plain dicts for the API.

* The **build hash** covers the source hash (runtime, code, dependencies), the runtime image
  it builds on and the function's name, so a new runtime image rebuilds every function and two
  functions never share a Job. It tags the image (``<registry>/fn/<ns>/<name>:<hash>``) and
  names the Job, so creating the Job twice is the same Job. The tag is for people: whether a
  build is done is decided by what the Job reported (:mod:`kfn.resources.provenance`).
* The **source ConfigMap** carries inline files (and a copy of a referenced ConfigMap's, frozen
  at the content that was hashed). Keys are ``file-NNN`` with ``items`` giving each its path,
  since ConfigMap keys cannot hold ``/``.
* The **Job** (no retries, a deadline, restricted pod security, no API token) runs
  ``python3 -m kfn.builder`` on the kfn image: ``prepare`` puts the code into the workspace,
  the **code check** compiles it (``check``, an init container on the function's runtime image,
  so the code is compiled by the very Python or Node.js it will run on; the kfn image has no
  Node.js and may have another Python), a Node.js build runs npm (on the runtime image too),
  and ``push`` installs Python dependencies and pushes the image. Every step runs with the
  chart's ``builder.resources`` (CPU, memory and ephemeral storage, requests and limits); an
  archive is unpacked within the chart's ``builder.archives`` bounds and fetched only from
  addresses the URL rules allow (:mod:`kfn.urls`), which the operator applies first to an
  address the URL names literally (:func:`archive_refusal`). The layers of ``spec.layers``
  (``KFN_BUILD_LAYERS``) are fetched by the build container under the same rules and bounds.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, Literal, NotRequired, TypedDict

from kfn import urls
from kfn.api import function
from kfn.resources import objects
from kfn.resources import platform as platform_

BUILD_FORMAT: Final = b"kfn-build-v1"
COMPONENT_BUILD: Final = "build"
LABEL_BUILD: Final = "kfn.dev/build"
ANNOTATION_BUILD_HASH: Final = "kfn.dev/build-hash"
ANNOTATION_IMAGE: Final = "kfn.dev/image"
WORKSPACE: Final = "/workspace"
SOURCE_MOUNT: Final = "/source"
BUILD_CONTAINER: Final = "build"
CHECK_CONTAINER: Final = "check"
#: The code check's command per runtime: the checker the runtime image carries, on the code.
CHECK_COMMANDS: Final[Mapping[str, list[str]]] = {
    **{
        r: ["python3", "-m", "kfn_runtime.check", f"{WORKSPACE}/code"]
        for r in function.PYTHON_RUNTIMES
    },
    **{
        r: ["node", "/opt/kfn/runtime/kfn_runtime/check.js", f"{WORKSPACE}/code"]
        for r in function.NODEJS_RUNTIMES
    },
}
#: The reason a failed step may name in its termination message (the code check's).
CODE_CHECK_FAILED: Final = "CodeCheckFailed"
REGISTRY_AUTH_MOUNT: Final = "/var/run/kfn/registry"
NPM_SCRIPT: Final = """\
set -eu
if [ ! -e /workspace/npm-install ]; then echo "npm: nothing to install"; exit 0; fi
cd /workspace/deps/nodejs
echo "$ npm install --omit=dev --ignore-scripts --registry $KFN_NPM_REGISTRY"
npm install --omit=dev --ignore-scripts --no-audit --no-fund --no-update-notifier \\
  --registry "$KFN_NPM_REGISTRY"
"""
"""Runs in the Node.js runtime image, which has npm but not the builder; ``prepare`` left the
project (package.json, lock) in the workspace and the marker when there is anything to do.
Install scripts are not run: a build runs none of the dependencies' code."""
#: What each step of a build may use, unless the chart says otherwise (``builder.resources``).
#: Steps run one after another, so the pod reserves one step's requests. The workspace
#: (4 GiB) and /tmp (1 GiB) fit in the ephemeral-storage limit.
DEFAULT_RESOURCES: Final[Mapping[str, Mapping[str, str]]] = {
    "requests": {"cpu": "250m", "memory": "256Mi", "ephemeral-storage": "1Gi"},
    "limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "6Gi"},
}


@dataclasses.dataclass(frozen=True)
class BuildSettings:
    """How builds run here; the operator reads them from its environment (chart values)."""

    registry: str
    builder_image: str
    runtime_images: Mapping[str, str]
    pypi_index_url: str = ""
    npm_registry: str = ""
    max_concurrent: int = 2
    deadline_seconds: int = 900
    keep_finished_seconds: int = 3600
    resources: Mapping[str, Mapping[str, str]] = dataclasses.field(
        default_factory=lambda: DEFAULT_RESOURCES
    )
    """Requests and limits of every step (``cpu``, ``memory``, ``ephemeral-storage``)."""
    max_unpacked_mib: int = 512
    """The most an archive source may unpack to."""
    max_files: int = 20_000
    """The most files and directories an archive source may hold."""
    allowed_networks: tuple[urls.Network, ...] = ()
    """Networks an archive may be fetched from although the URL rules refuse them."""
    registry_plain_http: bool = False
    """Development only: push over plain HTTP instead of TLS."""
    registry_ca_pem: str = ""
    """Certificates the registry's TLS is checked against instead of the system roots."""
    platform: platform_.Platform = dataclasses.field(default_factory=platform_.Platform)


def parse_resources(doc: Any) -> Mapping[str, Mapping[str, str]]:
    """A build step's requests and limits from the chart's ``builder.resources`` (None: the
    defaults); quantities the chart gives as numbers become strings."""
    if doc is None:
        return DEFAULT_RESOURCES
    if not isinstance(doc, Mapping):
        raise ValueError(f"builder.resources must be an object, not {doc!r}")
    return {
        kind: {name: str(value) for name, value in (doc.get(kind) or {}).items()}
        for kind in ("requests", "limits")
        if doc.get(kind)
    }


class ConfigMap(TypedDict):
    apiVersion: Literal["v1"]
    kind: Literal["ConfigMap"]
    metadata: objects.ObjectMeta
    data: dict[str, str]
    binaryData: NotRequired[dict[str, str]]


class Job(TypedDict):
    apiVersion: Literal["batch/v1"]
    kind: Literal["Job"]
    metadata: objects.ObjectMeta
    spec: dict[str, Any]


def build_hash(fn: function.Function, source_hash: str, settings: BuildSettings) -> str:
    """Hex SHA-256 naming one build of ``fn`` (see the module documentation)."""
    digest = hashlib.sha256()
    for part in (
        BUILD_FORMAT,
        fn.metadata.namespace.encode(),
        fn.metadata.name.encode(),
        source_hash.encode(),
        runtime_image(fn, settings).encode(),
    ):
        digest.update(str(len(part)).encode() + b"\0" + part)
    return digest.hexdigest()


def runtime_image_env(runtime: str) -> str:
    """The operator's environment variable naming ``runtime``'s image, which the chart sets
    from ``builder.runtimeImages``: ``KFN_RUNTIME_IMAGE_PYTHON3_13`` for python3.13."""
    return "KFN_RUNTIME_IMAGE_" + runtime.upper().replace(".", "_")


def runtime_image(fn: function.Function, settings: BuildSettings) -> str:
    runtime = fn.spec.runtime
    if runtime is None or runtime not in settings.runtime_images:
        raise ValueError(f"no runtime image for runtime {runtime!r}")
    return settings.runtime_images[runtime]


def repository(fn: function.Function) -> str:
    return f"fn/{fn.metadata.namespace}/{fn.metadata.name}"


def repository_ref(fn: function.Function, settings: BuildSettings) -> str:
    """``<registry>/fn/<ns>/<name>``: where the Function's builds push, the only repository
    a build's reported image may name."""
    return f"{settings.registry}/{repository(fn)}"


def target(fn: function.Function, hash_: str, settings: BuildSettings) -> str:
    """The tagged image reference a build pushes."""
    return f"{repository_ref(fn, settings)}:{hash_}"


def fetched_urls(fn: function.Function) -> list[str]:
    """The URLs a build of ``fn`` fetches: its source archive and its layers' archives."""
    found = [fn.spec.source.archive.url] if fn.spec.source.archive is not None else []
    return found + [layer.archive.url for layer in fn.spec.layers if layer.archive is not None]


def layer_registry_host(image: str) -> str:
    """The host (without port) of the registry a layer image is pulled from."""
    return image.split("/", 1)[0].split(":", 1)[0]


def archive_refusal(fn: function.Function, settings: BuildSettings) -> str | None:
    """Why one of the Function's archive URLs (its source's, its layers') or a layer image's
    registry (other than kfn's own) may not be fetched from, when it says so by itself: a
    literal address or a metadata service's name (the builder checks every address a name
    resolves to).

    The message shows the URL redacted.
    """
    for url in fetched_urls(fn):
        problem = _host_refusal(urls.host(url), settings)
        if problem is not None:
            return f"refusing to fetch {urls.redact(url)}: {problem}; {urls.ADVICE}"
    own = settings.registry.split("/", 1)[0]
    for layer in fn.spec.layers:
        if layer.image is None or layer.image.split("/", 1)[0] == own:
            continue  # kfn's own registry, which builds push to anyway
        problem = _host_refusal(layer_registry_host(layer.image), settings)
        if problem is not None:
            return (
                f"refusing to pull the layer {layer.name} ({layer.image}): {problem}; {urls.ADVICE}"
            )
    return None


def _host_refusal(host: str, settings: BuildSettings) -> str | None:
    address = urls.literal_address(host)
    literal = [address] if address is not None else []
    return urls.refusal(host, literal, settings.allowed_networks)


def job_name(fn: function.Function, hash_: str) -> str:
    """``<name>-build-<hash prefix>``, within the 63 characters of a label value."""
    return f"{fn.metadata.name[:42].rstrip('-')}-build-{hash_[:12]}"


def build_labels(fn: function.Function, hash_: str) -> dict[str, str]:
    """The Function's labels plus the build component; never the serving pods' selector."""
    return {
        **objects.labels_for(fn),
        objects.LABEL_COMPONENT: COMPONENT_BUILD,
        LABEL_BUILD: hash_[:40],
    }


def _meta(fn: function.Function, hash_: str, settings: BuildSettings) -> objects.ObjectMeta:
    return {
        "name": job_name(fn, hash_),
        "namespace": fn.metadata.namespace,
        "labels": build_labels(fn, hash_),
        "annotations": {
            ANNOTATION_BUILD_HASH: hash_,
            ANNOTATION_IMAGE: target(fn, hash_, settings),
        },
        "ownerReferences": [objects.owner_reference(fn)],
    }


def source_files(fn: function.Function) -> dict[str, bytes] | None:
    """The files of an inline source; None for other sources."""
    if fn.spec.source.inline is None:
        return None
    return {f.name: f.content.encode() for f in fn.spec.source.inline.files}


def config_map_files(config_map: Mapping[str, Any]) -> dict[str, bytes]:
    """A ConfigMap's keys as files (``data`` as UTF-8, ``binaryData`` decoded)."""
    files = {k: str(v).encode() for k, v in (config_map.get("data") or {}).items()}
    for k, v in (config_map.get("binaryData") or {}).items():
        files[k] = base64.b64decode(v)
    return files


def _keys(files: Mapping[str, bytes]) -> list[tuple[str, str]]:
    return [(f"file-{i:03d}", name) for i, name in enumerate(sorted(files))]


def build_source_config_map(
    fn: function.Function, hash_: str, files: Mapping[str, bytes], settings: BuildSettings
) -> ConfigMap:
    """The ConfigMap the build Job mounts its source from, named like the Job."""
    data: dict[str, str] = {}
    binary: dict[str, str] = {}
    for key, name in _keys(files):
        content = files[name]
        try:
            data[key] = content.decode("utf-8")
        except UnicodeDecodeError:
            binary[key] = base64.b64encode(content).decode()
    result: ConfigMap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(fn, hash_, settings),
        "data": data,
    }
    if binary:
        result["binaryData"] = binary
    return result


def _restricted() -> dict[str, Any]:
    """Pod Security "restricted"; the images' numeric non-root user, or any the cluster picks."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _env(
    fn: function.Function,
    hash_: str,
    settings: BuildSettings,
    layers: Sequence[function.DependencyLayerRecord],
    extra_layers: Sequence[function.LayerRecord],
) -> list[dict[str, str]]:
    source = fn.spec.source
    env = {
        "KFN_BUILD_RUNTIME": fn.spec.runtime or "",
        "KFN_BUILD_BASE_IMAGE": runtime_image(fn, settings),
        "KFN_BUILD_TARGET": target(fn, hash_, settings),
        "KFN_BUILD_WORKSPACE": WORKSPACE,
        "KFN_BUILD_DEPENDENCIES": json.dumps(list(fn.spec.dependencies)),
        "KFN_PYPI_INDEX_URL": settings.pypi_index_url,
        "KFN_NPM_REGISTRY": settings.npm_registry,
        # npm and pip want a writable home; the root filesystem is read-only.
        "HOME": f"{WORKSPACE}/home",
        "npm_config_cache": f"{WORKSPACE}/npm-cache",
        "PYTHONUNBUFFERED": "1",
    }
    secret = settings.platform.credentials_secret
    if secret:
        env["KFN_REGISTRY_AUTH_FILE"] = f"{REGISTRY_AUTH_MOUNT}/config.json"
        env["KFN_REGISTRY_AUTH_SOURCE"] = f"Secret {fn.metadata.namespace}/{secret}"
    if settings.registry_ca_pem:
        env["KFN_REGISTRY_CA_PEM"] = settings.registry_ca_pem
    if settings.registry_plain_http:
        env["KFN_REGISTRY_PLAIN_HTTP"] = "true"
    if source.archive is not None:
        env["KFN_BUILD_ARCHIVE_URL"] = source.archive.url
        env["KFN_BUILD_ARCHIVE_SHA256"] = source.archive.sha256
    else:
        env["KFN_BUILD_SOURCE_DIR"] = SOURCE_MOUNT
    if source.archive is not None or fn.spec.layers:
        # Archives and layers are fetched and unpacked within the same bounds.
        env["KFN_BUILD_MAX_UNPACKED_BYTES"] = str(settings.max_unpacked_mib * 2**20)
        env["KFN_BUILD_MAX_FILES"] = str(settings.max_files)
        if settings.allowed_networks:
            env["KFN_BUILD_ALLOWED_CIDRS"] = ",".join(map(str, settings.allowed_networks))
    if fn.spec.layers:
        specs = [
            layer.model_dump(mode="json", by_alias=True, exclude_none=True)
            for layer in fn.spec.layers
        ]
        env["KFN_BUILD_LAYERS"] = json.dumps(specs, separators=(",", ":"))
    if fn.spec.layers and extra_layers:
        # The layers kfn recorded for the Function: the only ones a build may reuse.
        records = [layer.model_dump(mode="json", by_alias=True) for layer in extra_layers]
        env["KFN_BUILD_LAYER_RECORDS"] = json.dumps(records, separators=(",", ":"))
    if layers:
        # The layers kfn recorded for the Function: the only ones a build may reuse.
        records = [layer.model_dump(mode="json", by_alias=True) for layer in layers]
        env["KFN_BUILD_DEPENDENCY_LAYERS"] = json.dumps(records, separators=(",", ":"))
    return [{"name": k, "value": v} for k, v in env.items()]


def _container(
    name: str,
    image: str,
    command: list[str],
    *,
    env: list[dict[str, str]],
    mounts: list[dict[str, Any]],
    settings: BuildSettings,
) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": [dict(var) for var in env],
        "resources": {kind: dict(amounts) for kind, amounts in settings.resources.items()},
        "securityContext": _restricted(),
        # The builder writes its result or error there; npm's own failure shows its log tail.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [dict(mount) for mount in mounts],
    }


def build_job(
    fn: function.Function,
    hash_: str,
    settings: BuildSettings,
    *,
    files: Mapping[str, bytes] | None,
    dependency_layers: Sequence[function.DependencyLayerRecord] = (),
    layers: Sequence[function.LayerRecord] = (),
) -> Job:
    """The Job that builds ``fn`` at ``hash_``; ``files`` are those of the source ConfigMap,
    ``dependency_layers`` and ``layers`` those kfn recorded for the Function (the build may
    reuse them)."""
    env = _env(fn, hash_, settings, dependency_layers, layers)
    mounts: list[dict[str, Any]] = [
        {"name": "workspace", "mountPath": WORKSPACE},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "workspace", "emptyDir": {"sizeLimit": "4Gi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    secret = settings.platform.credentials_secret
    if secret:
        # Only the build container pushes; npm (on the runtime image) never sees it.
        volumes.append(
            {
                "name": "registry-auth",
                "secret": {
                    "secretName": secret,
                    "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
                },
            }
        )
    if files is not None:
        mounts.append({"name": "source", "mountPath": SOURCE_MOUNT, "readOnly": True})
        volumes.append(
            {
                "name": "source",
                "configMap": {
                    "name": job_name(fn, hash_),
                    "items": [{"key": key, "path": name} for key, name in _keys(files)],
                },
            }
        )
    builder = ["python3", "-m", "kfn.builder"]
    builder_mounts = [
        *mounts,
        *(
            [{"name": "registry-auth", "mountPath": REGISTRY_AUTH_MOUNT, "readOnly": True}]
            if secret
            else []
        ),
    ]
    init: list[dict[str, Any]] = [
        _container(
            "prepare",
            settings.builder_image,
            [*builder, "prepare"],
            env=env,
            mounts=builder_mounts,
            settings=settings,
        ),
        _container(
            CHECK_CONTAINER,
            runtime_image(fn, settings),
            list(CHECK_COMMANDS[fn.spec.runtime or ""]),
            env=[],  # compiling runs none of the code and needs nothing of the build's
            mounts=mounts,
            settings=settings,
        ),
    ]
    if fn.spec.runtime in function.NODEJS_RUNTIMES:
        init.append(
            _container(
                "npm",
                runtime_image(fn, settings),
                ["sh", "-c", NPM_SCRIPT],
                env=env,
                mounts=mounts,
                settings=settings,
            )
        )
    main = _container(
        BUILD_CONTAINER,
        settings.builder_image,
        [*builder, "push"],
        env=env,
        mounts=builder_mounts,
        settings=settings,
    )
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": init,
        "containers": [main],
        "volumes": volumes,
        **settings.platform.builds.pod_fields(),
    }
    pull_secrets = settings.platform.image_pull_secrets(fn)
    if pull_secrets:
        pod_spec["imagePullSecrets"] = pull_secrets
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(fn, hash_, settings),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": settings.deadline_seconds,
            "ttlSecondsAfterFinished": settings.keep_finished_seconds,
            "template": {
                "metadata": {"labels": build_labels(fn, hash_)},
                "spec": pod_spec,
            },
        },
    }


def finished(job: Mapping[str, Any]) -> Literal["succeeded", "failed"] | None:
    """Whether a Job is done, from its conditions (or its counters)."""
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "succeeded"
        if cond.get("type") in ("Failed", "FailureTarget"):
            return "failed"
    if status.get("succeeded"):
        return "succeeded"
    if status.get("failed"):
        return "failed"
    return None


def _failed_steps(
    pods: Sequence[Mapping[str, Any]],
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Each step (init container or container) that ended with a non-zero exit: its name
    and its ``terminated`` state, in the order the pods run them."""
    for pod in pods:
        pod_status = pod.get("status") or {}
        for cs in [
            *(pod_status.get("initContainerStatuses") or []),
            *(pod_status.get("containerStatuses") or []),
        ]:
            term = (cs.get("state") or {}).get("terminated") or {}
            if term and term.get("exitCode", 0) != 0:
                yield str(cs.get("name")), term


def failure_reason(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """The reason the failed step named in its termination message (``CodeCheckFailed``), if any."""
    for _, term in _failed_steps(pods):
        try:
            doc = json.loads(str(term.get("message") or ""))
        except ValueError:
            return None
        reason = doc.get("reason") if isinstance(doc, dict) else None
        return str(reason) if reason else None
    return None


def failure_message(
    job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], limit: int = 1500
) -> str:
    """The tail of why a build failed: the builder's error, a step's log, an eviction (a step
    past its ephemeral storage), or the Job's reason."""
    for pod in pods:
        pod_status = pod.get("status") or {}
        if pod_status.get("reason") == "Evicted":
            return f"evicted: {pod_status.get('message', '')}"[-limit:]
    for step, term in _failed_steps(pods):
        text = str(term.get("message") or term.get("reason") or "").strip()
        try:
            doc = json.loads(text)
            if isinstance(doc, dict) and "error" in doc:
                text = str(doc["error"])
        except ValueError:
            pass
        return f"step {step}: {text[-limit:]}"
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            return f"{cond.get('reason', 'Failed')}: {cond.get('message', '')}"[-limit:]
    return "the build Job failed"
