"""Whole builds against a real registry: layers on top of the runtime, and dependency reuse."""

from __future__ import annotations

import json
import pathlib
import tarfile

import pytest

from kfn import oci
from kfn.builder import __main__ as cli
from kfn.builder import build
from kfn.builder.config import NODEJS, PYTHON, BuildConfig


def _config(
    tmp_path: pathlib.Path,
    registry: str,
    base: str,
    runtime: str,
    files: dict[str, str],
    **kw: object,
) -> BuildConfig:
    mount = tmp_path / "source"
    mount.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (mount / name).parent.mkdir(parents=True, exist_ok=True)
        (mount / name).write_text(content)
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    return BuildConfig(
        runtime=runtime,
        base_image=base,
        target=f"{registry}/fn/team/hello:{'a' * 64}",
        workspace=workspace,
        source_dir=mount,
        termination_log=tmp_path / "termination-log",
        **kw,  # type: ignore[arg-type]
    )


def _layer_files(registry: oci.Registry, repository: str, digest: str) -> list[str]:
    import io  # noqa: PLC0415

    with tarfile.open(fileobj=io.BytesIO(registry.get_blob(repository, digest))) as tf:
        return sorted(m.name for m in tf.getmembers() if m.isfile())


def test_a_python_build_without_dependencies_pushes_the_runtime_plus_a_code_layer(
    tmp_path: pathlib.Path, registry: str, base_image: str
) -> None:
    cfg = _config(
        tmp_path, registry, base_image, PYTHON, {"app.py": "def handler(e, c): return 1\n"}
    )
    client = oci.Registry(registry)
    plan = build.prepare(cfg, client)
    build.install_python(cfg, plan)
    result = build.push(cfg, plan, client)
    assert result["dependencyLayer"] is None
    found = client.get_manifest(oci.Reference.parse(result["image"]))
    assert found is not None
    assert found[0] == result["digest"]
    manifest = found[1]
    base = client.get_manifest(oci.Reference.parse(base_image))
    assert base is not None
    assert manifest["layers"][:-1] == base[1]["layers"]
    code_layer = manifest["layers"][-1]["digest"]
    assert _layer_files(client, "fn/team/hello", code_layer) == ["var/task/app.py"]
    config = json.loads(client.get_blob("fn/team/hello", manifest["config"]["digest"]))
    assert config["config"]["Entrypoint"] == ["runtime"]


def test_the_command_line_reports_the_result_in_the_termination_log(
    tmp_path: pathlib.Path, registry: str, base_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(tmp_path, registry, base_image, PYTHON, {"app.py": "x = 1\n"})
    env = {
        "KFN_BUILD_RUNTIME": PYTHON,
        "KFN_BUILD_BASE_IMAGE": base_image,
        "KFN_BUILD_TARGET": cfg.target,
        "KFN_BUILD_WORKSPACE": str(cfg.workspace),
        "KFN_BUILD_SOURCE_DIR": str(cfg.source_dir),
        "KFN_TERMINATION_LOG": str(cfg.termination_log),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["build"]) == 0
    result = json.loads(cfg.termination_log.read_text())
    assert result["image"].startswith(f"{registry}/fn/team/hello@sha256:")
    assert set(result["seconds"]) >= {"source", "layers", "push", "total"}


def test_a_failed_build_exits_1_with_the_error_in_the_termination_log(
    tmp_path: pathlib.Path, registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(tmp_path, registry, f"{registry}/kfn/no-such-runtime:1", PYTHON, {"a.py": ""})
    for key, value in {
        "KFN_BUILD_RUNTIME": PYTHON,
        "KFN_BUILD_BASE_IMAGE": cfg.base_image,
        "KFN_BUILD_TARGET": cfg.target,
        "KFN_BUILD_WORKSPACE": str(cfg.workspace),
        "KFN_BUILD_SOURCE_DIR": str(cfg.source_dir),
        "KFN_TERMINATION_LOG": str(cfg.termination_log),
    }.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["build"]) == 1
    error = json.loads(cfg.termination_log.read_text())["error"]
    assert "no-such-runtime" in error


def _npm_installs(cfg: BuildConfig, packages: dict[str, str]) -> None:
    """What the npm init container leaves behind: node_modules in the prepared project."""
    assert (cfg.workspace / build.NPM_MARKER).exists(), "prepare asked for no install"
    modules = cfg.deps_dir / "nodejs" / "node_modules"
    for name, content in packages.items():
        (modules / name).mkdir(parents=True, exist_ok=True)
        (modules / name / "index.js").write_text(content)


def test_a_rebuild_with_unchanged_dependencies_reuses_the_dependency_layer_without_installing(
    tmp_path: pathlib.Path, registry: str, base_image: str
) -> None:
    client = oci.Registry(registry)
    package = json.dumps({"name": "fn", "dependencies": {"left-pad": "1.3.0"}})
    first = _config(
        tmp_path / "one", registry, base_image, NODEJS, {"index.js": "v1", "package.json": package}
    )
    plan = build.prepare(first, client)
    _npm_installs(first, {"left-pad": "module.exports = 1;"})
    one = build.push(first, plan, client)
    assert one["dependencyLayer"] is not None
    assert not one["dependenciesReused"]
    assert _layer_files(client, "fn/team/hello", one["dependencyLayer"]) == [
        "opt/nodejs/node_modules/left-pad/index.js"
    ]

    second = _config(
        tmp_path / "two", registry, base_image, NODEJS, {"index.js": "v2", "package.json": package}
    )
    plan = build.prepare(second, client)
    assert not (second.workspace / build.NPM_MARKER).exists()
    two = build.push(second, plan, client)
    assert two["dependenciesReused"]
    assert two["dependencyLayer"] == one["dependencyLayer"]
    assert two["codeLayer"] != one["codeLayer"]
    assert two["digest"] != one["digest"]


def test_changed_dependencies_are_installed_again(
    tmp_path: pathlib.Path, registry: str, base_image: str
) -> None:
    client = oci.Registry(registry)
    first = _config(
        tmp_path / "one", registry, base_image, NODEJS, {"index.js": "v1"}, dependencies=("a@1",)
    )
    plan = build.prepare(first, client)
    _npm_installs(first, {"a": "1"})
    build.push(first, plan, client)
    second = _config(
        tmp_path / "two", registry, base_image, NODEJS, {"index.js": "v1"}, dependencies=("a@2",)
    )
    build.prepare(second, client)
    assert (second.workspace / build.NPM_MARKER).exists()
