"""The phases of a build: prepare (source, dependency plan), install, push.

Each phase times itself, and the result's ``seconds`` carries the times: ``prepare`` (the
whole phase, of which ``source`` is getting the code), ``dependencies`` (pip's install, when
it ran), ``layers`` and ``push`` (making the layers, then pushing: together the push phase),
and ``total`` (the last container's run). The operator's build metrics are made of them.

A Python build runs all three in one container. A Node.js build runs ``prepare`` and ``push``
on the kfn image and npm in between, in an init container on the Node.js runtime image; the
phases talk through the workspace (``plan.json`` and the ``deps`` directory).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import tempfile
import time
from typing import Any

from kfn import oci, urls
from kfn.builder import deps, layers, source
from kfn.builder.config import BuildConfig, BuildError, DependencyLayer

#: Where dependency layers are unpacked in the image, per runtime (both on the import path).
PYTHON_DEPS_PATH = "opt/python"
NODEJS_DEPS_PATH = "opt/nodejs/node_modules"
CODE_PATH = "var/task"
#: Where a layer's programs and libraries are found, as in Lambda: put in front of the runtime
#: image's own PATH and LD_LIBRARY_PATH when the Function has layers.
LAYER_PATHS = {"PATH": "/opt/bin", "LD_LIBRARY_PATH": "/opt/lib"}
#: Marker that tells the npm init container there is something to install.
NPM_MARKER = "npm-install"


@dataclasses.dataclass
class Plan:
    """What ``prepare`` decided, for the later phases."""

    deps_key: str | None
    cached_layer: dict[str, Any] | None
    seconds: dict[str, float]

    def dump(self, path: pathlib.Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def load(cls, path: pathlib.Path) -> Plan:
        return cls(**json.loads(path.read_text()))


def prepare(cfg: BuildConfig, registry: oci.Registry) -> Plan:
    """Puts the code into the workspace and decides whether dependencies must be installed."""
    t0 = time.monotonic()
    code = cfg.code_dir
    if cfg.source_dir is not None:
        files = source.copy_mounted(cfg.source_dir, code)
        print(f"source: {len(files)} file(s) from the build's ConfigMap", flush=True)
    else:
        assert cfg.archive_url is not None
        archive = cfg.workspace / "archive"
        print(f"source: downloading {urls.redact(cfg.archive_url)}", flush=True)
        digest = source.download(
            cfg.archive_url, cfg.archive_sha256, archive, allowed=cfg.allowed_networks
        )
        files = source.unpack(archive, code, cfg.bounds)
        archive.unlink()
        print(f"source: sha256 {digest} verified, {len(files)} file(s) unpacked", flush=True)
    seconds = {"source": time.monotonic() - t0}
    if not deps.needed(cfg.runtime, code, cfg.dependencies):
        print("dependencies: none", flush=True)
        seconds["prepare"] = time.monotonic() - t0
        return Plan(None, None, seconds)
    key = deps.key(
        cfg.base_image, cfg.runtime, code, cfg.dependencies, over_layers=bool(cfg.layers)
    )
    cached = _recorded_layer(cfg, key, registry)
    if cached is not None:
        print(f"dependencies: unchanged, reusing layer {cached['digest']}", flush=True)
    elif not cfg.is_python:
        deps.write_npm_project(code, cfg.dependencies, cfg.deps_dir / deps.NPM_PROJECT)
        (cfg.workspace / NPM_MARKER).touch()
        print("dependencies: npm installs them next", flush=True)
    seconds["prepare"] = time.monotonic() - t0
    return Plan(key, cached, seconds)


def install_python(cfg: BuildConfig, plan: Plan) -> None:
    """pip-installs the Python dependencies unless the plan reuses a layer."""
    if plan.deps_key is None or plan.cached_layer is not None:
        return
    t0 = time.monotonic()
    cmd = deps.pip_command(
        cfg.deps_dir / deps.PIP_TARGET,
        cfg.code_dir,
        cfg.dependencies,
        cfg.pypi_index_url,
        cfg.runtime,
    )
    deps.run_logged(cmd, "installing the Python dependencies")
    plan.seconds["dependencies"] = time.monotonic() - t0


def push(cfg: BuildConfig, plan: Plan, registry: oci.Registry) -> dict[str, Any]:
    """Makes the layers and pushes runtime + dependencies + code; returns the result."""
    t0 = time.monotonic()
    target = oci.Reference.parse(cfg.target)
    with tempfile.TemporaryDirectory(dir=cfg.workspace) as tmp:
        store = oci.BlobStore(pathlib.Path(tmp))
        # Runtime, then spec.layers in order, then dependencies, then code: each above the one
        # before, so the function's own files win over every layer's.
        made = layers.make_all(cfg, registry, store)
        image_layers = [m.layer for m in made]
        dependency_layer: oci.Layer | None = None
        reused = False
        if plan.cached_layer is not None:
            dependency_layer = _layer_from_descriptor(plan.cached_layer)
            reused = True
        elif plan.deps_key is not None:
            installed = cfg.deps_dir / (
                deps.PIP_TARGET if cfg.is_python else f"{deps.NPM_PROJECT}/node_modules"
            )
            if not installed.is_dir():
                raise BuildError(f"the dependencies were not installed ({installed} is missing)")
            if cfg.layers:
                layers.shadow_layers(installed, "python" if cfg.is_python else "nodejs")
            at = PYTHON_DEPS_PATH if cfg.is_python else NODEJS_DEPS_PATH
            dependency_layer = store.layer_from_tree([(at, installed)])
        if dependency_layer is not None:
            image_layers.append(dependency_layer)
        code_layer = store.layer_from_tree([(CODE_PATH, cfg.code_dir)])
        image_layers.append(code_layer)
        plan.seconds["layers"] = time.monotonic() - t0
        t1 = time.monotonic()
        digest = oci.extend(
            registry,
            oci.Reference.parse(cfg.base_image),
            store=store,
            layers=image_layers,
            overrides=oci.ImageConfig(env_prefixes=LAYER_PATHS if cfg.layers else {}),
            target=target,
            history="kfn build: layers, dependencies and code"
            if cfg.layers
            else "kfn build: dependencies and code",
        )
        plan.seconds["push"] = time.monotonic() - t1
    image = str(target.with_digest(digest))
    result: dict[str, Any] = {
        "image": image,
        "digest": digest,
        "codeLayer": code_layer.blob.digest,
        "dependencyLayer": (
            _layer_record(plan.deps_key, dependency_layer) if dependency_layer is not None else None
        ),
        "dependenciesReused": reused,
        "seconds": {k: round(v, 3) for k, v in plan.seconds.items()},
    }
    if made:
        result["layers"] = layers.records(made)
        result["layersReused"] = sum(1 for m in made if m.reused)
    print(f"pushed {image}", flush=True)
    return result


def _recorded_layer(cfg: BuildConfig, key: str, registry: oci.Registry) -> dict[str, Any] | None:
    """The descriptor and diff id of the layer the operator recorded for the dependency set
    ``key``, if the target repository still holds its blob; None to install anew.

    Only the operator's record is trusted: a tag in the repository is not, since whoever can
    push there could have put any layer under a tag they can predict.
    """
    recorded = next((layer for layer in cfg.dependency_layers if layer.key == key), None)
    if recorded is None:
        return None
    repository = oci.Reference.parse(cfg.target).repository
    if not registry.has_blob(repository, recorded.digest):
        print(f"dependencies: the recorded layer {recorded.digest} is gone", flush=True)
        return None
    return {
        "digest": recorded.digest,
        "size": recorded.size,
        "mediaType": recorded.media_type,
        "diffId": recorded.diff_id,
    }


def _layer_record(key: str | None, layer: oci.Layer) -> dict[str, Any]:
    """What the operator records of the dependency layer: its key and descriptor."""
    assert key is not None
    return DependencyLayer(
        key, layer.blob.digest, layer.blob.size, layer.blob.media_type, layer.diff_id
    ).to_json()


def _layer_from_descriptor(desc: dict[str, Any]) -> oci.Layer:
    """A layer the registry already holds in the target repository; its bytes never travel.

    :func:`kfn.oci.extend` pushes a blob only when the repository lacks it, so the local path
    is never read.
    """
    blob = oci.Blob(desc["digest"], int(desc["size"]), desc["mediaType"], pathlib.Path("/dev/null"))
    return oci.Layer(blob, desc["diffId"])
