"""What one build is asked to do, read from the environment the operator gives the Job."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
from collections.abc import Mapping
from typing import Any, Final

from kfn import urls

PYTHON_RUNTIMES: Final = ("python3.11", "python3.12", "python3.13")
NODEJS_RUNTIMES: Final = ("nodejs18", "nodejs20", "nodejs22")
"""The runtimes a build knows (``kfn.api.function``'s, which the builder does not import)."""
PYTHON: str = PYTHON_RUNTIMES[0]
NODEJS: str = NODEJS_RUNTIMES[0]
"""The oldest runtime of each language."""
_DIGEST: Final = re.compile(r"^sha256:[a-f0-9]{64}$")
_KEY: Final = re.compile(r"^[a-f0-9]{64}$")


class BuildError(RuntimeError):
    """A build failed for a reason the user can read; the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class Bounds:
    """How much an archive may unpack to: the chart's ``builder.archives`` values."""

    max_bytes: int = 512 * 2**20
    max_files: int = 20_000

    def too_large(self) -> BuildError:
        return BuildError(
            f"the archive unpacks to more than {self.max_bytes / 2**20:g} MiB, the most a build "
            "unpacks (the chart's builder.archives.maxUnpackedMiB); stopped before writing past it"
        )

    def too_many(self) -> BuildError:
        return BuildError(
            f"the archive holds more than {self.max_files} files and directories, the most a "
            "build unpacks (the chart's builder.archives.maxFiles)"
        )


@dataclasses.dataclass(frozen=True)
class DependencyLayer:
    """A dependency layer an earlier build of the Function pushed, as the operator recorded it
    from that build's result: reused by its digest when the dependency set (``key``) is the
    same, never found by a tag."""

    key: str
    digest: str
    size: int
    media_type: str
    diff_id: str

    @classmethod
    def from_json(cls, doc: Any) -> DependencyLayer:
        """From the operator's record (camelCase keys); ValueError if it is not one."""
        if not isinstance(doc, Mapping):
            raise ValueError("a dependency layer record must be an object")
        layer = cls(
            key=str(doc.get("key", "")),
            digest=str(doc.get("digest", "")),
            size=doc.get("size", -1) if isinstance(doc.get("size"), int) else -1,
            media_type=str(doc.get("mediaType", "")),
            diff_id=str(doc.get("diffId", "")),
        )
        if not (
            _KEY.match(layer.key)
            and _DIGEST.match(layer.digest)
            and _DIGEST.match(layer.diff_id)
            and layer.size >= 0
            and layer.media_type
        ):
            raise ValueError(f"not a dependency layer record: {doc!r}")
        return layer

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "digest": self.digest,
            "size": self.size,
            "mediaType": self.media_type,
            "diffId": self.diff_id,
        }


_LAYER_IMAGE: Final = re.compile(
    r"^(localhost|[a-zA-Z0-9-]+[.:][a-zA-Z0-9.:-]*)(/[a-z0-9._-]+)+@sha256:[a-f0-9]{64}$"
)


@dataclasses.dataclass(frozen=True)
class LayerSource:
    """One layer of ``spec.layers``: an archive by its SHA-256, or an image by its digest."""

    name: str
    archive_url: str | None = None
    archive_sha256: str | None = None
    image: str | None = None

    @classmethod
    def from_json(cls, doc: Any) -> LayerSource:
        """From the Function's spec as the operator passed it; ValueError if it is not one."""
        if not isinstance(doc, Mapping) or not isinstance(doc.get("name"), str):
            raise ValueError(f"not a layer: {doc!r}")
        archive = doc.get("archive")
        image = doc.get("image")
        if isinstance(archive, Mapping) and image is None:
            url, sha256 = archive.get("url"), archive.get("sha256")
            if isinstance(url, str) and isinstance(sha256, str) and _KEY.match(sha256):
                return cls(doc["name"], archive_url=url, archive_sha256=sha256)
        if archive is None and isinstance(image, str) and _LAYER_IMAGE.match(image):
            return cls(doc["name"], image=image)
        raise ValueError(f"layer {doc.get('name')!r} is neither an archive nor an image by digest")


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """One build: which runtime image, which source, which dependencies, pushed where."""

    runtime: str
    base_image: str
    target: str
    workspace: pathlib.Path
    source_dir: pathlib.Path | None = None
    archive_url: str | None = None
    archive_sha256: str | None = None
    dependencies: tuple[str, ...] = ()
    pypi_index_url: str = ""
    npm_registry: str = ""
    termination_log: pathlib.Path = pathlib.Path("/dev/termination-log")
    registry_auth_file: pathlib.Path | None = None
    """A mounted ``.dockerconfigjson`` with the namespace's registry login, if it has one."""
    registry_auth_source: str = ""
    """Where the login comes from (``Secret tenant-a/kfn-registry``), named in errors."""
    registry_ca_file: pathlib.Path | None = None
    """The PEM bundle the registry's TLS is checked against instead of the system's roots."""
    registry_ca_pem: str = ""
    """The same bundle given inline (``KFN_REGISTRY_CA_PEM``), when there is no file."""
    registry_plain_http: bool = False
    """Development only: a registry on the node that speaks plain HTTP."""
    bounds: Bounds = Bounds()
    """How much an archive source may unpack to."""
    allowed_networks: tuple[urls.Network, ...] = ()
    """Networks an archive may be fetched from although the URL rules refuse them."""
    dependency_layers: tuple[DependencyLayer, ...] = ()
    """The dependency layers the operator recorded for the Function."""
    layers: tuple[LayerSource, ...] = ()
    """The Function's ``spec.layers``, in order."""
    layer_records: tuple[DependencyLayer, ...] = ()
    """The layers of ``spec.layers`` the operator recorded for the Function, by content key."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BuildConfig:
        env = os.environ if env is None else env

        def need(name: str) -> str:
            value = env.get(name, "")
            if not value:
                raise BuildError(f"{name} is not set; the build Job is incomplete")
            return value

        runtime = need("KFN_BUILD_RUNTIME")
        if runtime not in (*PYTHON_RUNTIMES, *NODEJS_RUNTIMES):
            raise BuildError(f"unknown runtime {runtime!r}")
        deps = json.loads(env.get("KFN_BUILD_DEPENDENCIES") or "[]")
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            raise BuildError("KFN_BUILD_DEPENDENCIES must be a JSON list of strings")
        source_dir = env.get("KFN_BUILD_SOURCE_DIR") or None
        archive_url = env.get("KFN_BUILD_ARCHIVE_URL") or None
        if (source_dir is None) == (archive_url is None):
            raise BuildError("exactly one of KFN_BUILD_SOURCE_DIR and KFN_BUILD_ARCHIVE_URL")
        plain_http = env.get("KFN_REGISTRY_PLAIN_HTTP", "").strip().lower()
        if plain_http not in ("", "true", "false"):
            raise BuildError(f"KFN_REGISTRY_PLAIN_HTTP must be true or false, not {plain_http!r}")
        auth_file = env.get("KFN_REGISTRY_AUTH_FILE") or None
        ca_file = env.get("KFN_REGISTRY_CA_FILE") or None
        try:
            allowed = urls.parse_networks(
                n for n in env.get("KFN_BUILD_ALLOWED_CIDRS", "").split(",") if n.strip()
            )
            layers = tuple(
                DependencyLayer.from_json(doc)
                for doc in json.loads(env.get("KFN_BUILD_DEPENDENCY_LAYERS") or "[]")
            )
            layer_sources = tuple(
                LayerSource.from_json(doc)
                for doc in json.loads(env.get("KFN_BUILD_LAYERS") or "[]")
            )
            layer_records = tuple(
                DependencyLayer.from_json(doc)
                for doc in json.loads(env.get("KFN_BUILD_LAYER_RECORDS") or "[]")
            )
        except (ValueError, TypeError) as exc:
            raise BuildError(f"the build Job is malformed: {exc}") from exc
        return cls(
            runtime=runtime,
            base_image=need("KFN_BUILD_BASE_IMAGE"),
            target=need("KFN_BUILD_TARGET"),
            workspace=pathlib.Path(env.get("KFN_BUILD_WORKSPACE") or "/workspace"),
            source_dir=pathlib.Path(source_dir) if source_dir else None,
            archive_url=archive_url,
            archive_sha256=env.get("KFN_BUILD_ARCHIVE_SHA256") or None,
            dependencies=tuple(deps),
            pypi_index_url=env.get("KFN_PYPI_INDEX_URL", ""),
            npm_registry=env.get("KFN_NPM_REGISTRY", ""),
            termination_log=pathlib.Path(env.get("KFN_TERMINATION_LOG") or "/dev/termination-log"),
            registry_auth_file=pathlib.Path(auth_file) if auth_file else None,
            registry_auth_source=env.get("KFN_REGISTRY_AUTH_SOURCE")
            or (f"file {auth_file}" if auth_file else ""),
            registry_ca_file=pathlib.Path(ca_file) if ca_file else None,
            registry_ca_pem=env.get("KFN_REGISTRY_CA_PEM", ""),
            registry_plain_http=plain_http == "true",
            bounds=Bounds(
                max_bytes=_count(env, "KFN_BUILD_MAX_UNPACKED_BYTES", Bounds.max_bytes),
                max_files=_count(env, "KFN_BUILD_MAX_FILES", Bounds.max_files),
            ),
            allowed_networks=allowed,
            dependency_layers=layers,
            layers=layer_sources,
            layer_records=layer_records,
        )

    @property
    def is_python(self) -> bool:
        """Whether the runtime is one of Python's (else one of Node.js's)."""
        return self.runtime in PYTHON_RUNTIMES

    @property
    def code_dir(self) -> pathlib.Path:
        """The function's code, which becomes ``/var/task``."""
        return self.workspace / "code"

    @property
    def deps_dir(self) -> pathlib.Path:
        """Installed dependencies: ``python/`` → ``/opt/python``, ``nodejs/node_modules`` →
        ``/opt/nodejs/node_modules``."""
        return self.workspace / "deps"

    @property
    def layers_dir(self) -> pathlib.Path:
        """Where each layer of ``spec.layers`` is unpacked before it becomes an image layer."""
        return self.workspace / "layers"

    @property
    def plan_path(self) -> pathlib.Path:
        return self.workspace / "plan.json"

    @property
    def ca_path(self) -> pathlib.Path:
        """Where an inline CA bundle is written for the registry client to read."""
        return self.workspace / "registry-ca.pem"


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) == 0:
        raise BuildError(f"{name} must be a positive whole number, not {value!r}")
    return int(value)
