"""What one build is asked to do, read from the environment the operator gives the Job."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Mapping

PYTHON: str = "python3.11"
NODEJS: str = "nodejs18"


class BuildError(RuntimeError):
    """A build failed for a reason the user can read; the message says what to fix."""


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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BuildConfig:
        env = os.environ if env is None else env

        def need(name: str) -> str:
            value = env.get(name, "")
            if not value:
                raise BuildError(f"{name} is not set; the build Job is incomplete")
            return value

        runtime = need("KFN_BUILD_RUNTIME")
        if runtime not in (PYTHON, NODEJS):
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
        )

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
    def plan_path(self) -> pathlib.Path:
        return self.workspace / "plan.json"

    @property
    def ca_path(self) -> pathlib.Path:
        """Where an inline CA bundle is written for the registry client to read."""
        return self.workspace / "registry-ca.pem"
