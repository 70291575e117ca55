"""Whole builds against a real registry: layers on top of the runtime, and dependency reuse."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import tarfile
import urllib.request

import pytest

from kfn import oci, ociauth
from kfn.builder import __main__ as cli
from kfn.builder import build, deps
from kfn.builder.config import NODEJS, PYTHON, BuildConfig, BuildError, DependencyLayer
from tests.unit import registries


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
    client = oci.Registry(registry, plain_http=True)
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


def _command_line_env(monkeypatch: pytest.MonkeyPatch, cfg: BuildConfig) -> None:
    """The environment the build Job gives kfn's builder command line, for ``cfg``."""
    for key, value in {
        "KFN_BUILD_RUNTIME": cfg.runtime,
        "KFN_BUILD_BASE_IMAGE": cfg.base_image,
        "KFN_BUILD_TARGET": cfg.target,
        "KFN_BUILD_WORKSPACE": str(cfg.workspace),
        "KFN_BUILD_SOURCE_DIR": str(cfg.source_dir),
        "KFN_TERMINATION_LOG": str(cfg.termination_log),
        "KFN_REGISTRY_PLAIN_HTTP": "true",
    }.items():
        monkeypatch.setenv(key, value)


def test_the_command_line_reports_the_result_in_the_termination_log(
    tmp_path: pathlib.Path, registry: str, base_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(tmp_path, registry, base_image, PYTHON, {"app.py": "x = 1\n"})
    _command_line_env(monkeypatch, cfg)
    assert cli.main(["build"]) == 0
    result = json.loads(cfg.termination_log.read_text())
    assert result["image"].startswith(f"{registry}/fn/team/hello@sha256:")
    assert set(result["seconds"]) >= {"source", "prepare", "layers", "push", "total"}
    assert result["seconds"]["source"] <= result["seconds"]["prepare"]


def test_a_failed_build_exits_1_with_the_error_in_the_termination_log(
    tmp_path: pathlib.Path, registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(tmp_path, registry, f"{registry}/kfn/no-such-runtime:1", PYTHON, {"a.py": ""})
    _command_line_env(monkeypatch, cfg)
    assert cli.main(["build"]) == 1
    reported = json.loads(cfg.termination_log.read_text())
    assert "no-such-runtime" in reported["error"]
    # The code was prepared; pushing onto a runtime image the registry lacks failed.
    assert reported["phase"] == "push"


def test_a_build_that_fails_installing_names_the_install_phase(
    tmp_path: pathlib.Path, registry: str, base_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in the Job: one container prepares, the next installs and pushes.
    cfg = _config(
        tmp_path,
        registry,
        base_image,
        PYTHON,
        {"app.py": "x = 1\n", "requirements.txt": "not a requirement !!\n"},
    )
    _command_line_env(monkeypatch, cfg)
    assert cli.main(["prepare"]) == 0
    assert cli.main(["push"]) == 1
    reported = json.loads(cfg.termination_log.read_text())
    assert reported["phase"] == "install"
    assert "installing the Python dependencies failed" in reported["error"]


def _npm_installs(cfg: BuildConfig, packages: dict[str, str]) -> None:
    """What the npm init container leaves behind: node_modules in the prepared project."""
    assert (cfg.workspace / build.NPM_MARKER).exists(), "prepare asked for no install"
    modules = cfg.deps_dir / "nodejs" / "node_modules"
    for name, content in packages.items():
        (modules / name).mkdir(parents=True, exist_ok=True)
        (modules / name / "index.js").write_text(content)


# --- dependency layers: reused only by the digest the operator recorded ----------------------

PACKAGE = json.dumps({"name": "fn", "dependencies": {"left-pad": "1.3.0"}})


def _first_node_build(tmp_path: pathlib.Path, registry: str, base: str) -> dict[str, object]:
    """A Node.js build that installs left-pad; its result, as the operator reads it."""
    client = oci.Registry(registry, plain_http=True)
    first = _config(
        tmp_path / "one", registry, base, NODEJS, {"index.js": "v1", "package.json": PACKAGE}
    )
    plan = build.prepare(first, client)
    _npm_installs(first, {"left-pad": "module.exports = 1;"})
    return build.push(first, plan, client)


def _second_node_build(
    tmp_path: pathlib.Path, registry: str, base: str, *recorded: DependencyLayer
) -> tuple[BuildConfig, build.Plan]:
    """The next build of the same dependency set (new code), given the ``recorded`` layers."""
    second = _config(
        tmp_path / "two",
        registry,
        base,
        NODEJS,
        {"index.js": "v2", "package.json": PACKAGE},
        dependency_layers=recorded,
    )
    return second, build.prepare(second, oci.Registry(registry, plain_http=True))


def test_a_build_reports_its_dependency_layer_for_the_operator_to_record(
    tmp_path: pathlib.Path, registry: str, base_image: str
) -> None:
    one = _first_node_build(tmp_path, registry, base_image)
    layer = one["dependencyLayer"]
    assert isinstance(layer, dict)
    assert not one["dependenciesReused"]
    assert set(layer) == {"key", "digest", "size", "mediaType", "diffId"}
    assert DependencyLayer.from_json(layer).to_json() == layer
    client = oci.Registry(registry, plain_http=True)
    assert _layer_files(client, "fn/team/hello", str(layer["digest"])) == [
        "opt/nodejs/node_modules/left-pad/index.js"
    ]
    # The layer lives in the image only: no tag names it.
    listed = urllib.request.urlopen(f"http://{registry}/v2/fn/team/hello/tags/list", timeout=10)
    assert json.loads(listed.read())["tags"] == ["a" * 64]


def test_a_rebuild_with_the_recorded_layer_of_its_dependencies_reuses_it_without_installing(
    tmp_path: pathlib.Path, registry: str, base_image: str
) -> None:
    one = _first_node_build(tmp_path, registry, base_image)
    recorded = DependencyLayer.from_json(one["dependencyLayer"])
    second, plan = _second_node_build(tmp_path, registry, base_image, recorded)
    assert not (second.workspace / build.NPM_MARKER).exists()
    two = build.push(second, plan, oci.Registry(registry, plain_http=True))
    assert two["dependenciesReused"]
    assert two["dependencyLayer"] == one["dependencyLayer"]
    assert two["codeLayer"] != one["codeLayer"]
    assert two["digest"] != one["digest"]


def test_a_layer_planted_under_a_predictable_tag_is_not_reused(
    tmp_path: pathlib.Path, registry: str, base_image: str
) -> None:
    client = oci.Registry(registry, plain_http=True)
    code = tmp_path / "probe"
    code.mkdir()
    (code / "package.json").write_text(PACKAGE)
    key = deps.key(base_image, NODEJS, code, ())
    # Someone who can push to the repository puts a layer where the old builder looked.
    store = oci.BlobStore(tmp_path / "planted")
    evil = tmp_path / "evil"
    (evil / "left-pad").mkdir(parents=True)
    (evil / "left-pad" / "index.js").write_text("steal()")
    planted = store.image(
        [store.layer_from_tree([("opt/nodejs/node_modules", evil)])], oci.ImageConfig()
    )
    client.push_image(planted, oci.Reference(registry, "fn/team/hello", f"deps-{key[:40]}"))
    second, plan = _second_node_build(tmp_path, registry, base_image)
    assert plan.deps_key == key
    assert plan.cached_layer is None
    assert (second.workspace / build.NPM_MARKER).exists()


def test_a_recorded_layer_the_repository_no_longer_holds_is_installed_again(
    tmp_path: pathlib.Path, registry: str, base_image: str
) -> None:
    code = tmp_path / "probe"
    code.mkdir()
    (code / "package.json").write_text(PACKAGE)
    gone = DependencyLayer(
        deps.key(base_image, NODEJS, code, ()),
        "sha256:" + "e" * 64,
        10,
        oci.MEDIA_LAYER,
        "sha256:" + "e" * 64,
    )
    second, plan = _second_node_build(tmp_path, registry, base_image, gone)
    assert plan.cached_layer is None
    assert (second.workspace / build.NPM_MARKER).exists()


def test_a_recorded_layer_of_another_dependency_set_is_not_used(
    tmp_path: pathlib.Path, registry: str, base_image: str
) -> None:
    one = _first_node_build(tmp_path, registry, base_image)
    other = DependencyLayer.from_json({**one["dependencyLayer"], "key": "f" * 64})  # type: ignore[dict-item]
    second, plan = _second_node_build(tmp_path, registry, base_image, other)
    assert plan.cached_layer is None
    assert (second.workspace / build.NPM_MARKER).exists()


def test_malformed_layer_records_in_the_build_environment_fail_the_build() -> None:
    env = {
        "KFN_BUILD_RUNTIME": NODEJS,
        "KFN_BUILD_BASE_IMAGE": "r:1/kfn/base:1",
        "KFN_BUILD_TARGET": "r:1/fn/a/x:1",
        "KFN_BUILD_SOURCE_DIR": "/source",
        "KFN_BUILD_DEPENDENCY_LAYERS": json.dumps([{"key": "k", "digest": "latest"}]),
    }
    with pytest.raises(BuildError, match="the build Job is malformed: not a dependency layer"):
        BuildConfig.from_env(env)


def test_changed_dependencies_are_installed_again(
    tmp_path: pathlib.Path, registry: str, base_image: str
) -> None:
    client = oci.Registry(registry, plain_http=True)
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


# A registry that wants a login: TLS, token auth, the namespace's Secret mounted as a file.


def test_the_build_environment_names_the_registry_login_its_ca_and_plain_http(
    tmp_path: pathlib.Path,
) -> None:
    env = {
        "KFN_BUILD_RUNTIME": PYTHON,
        "KFN_BUILD_BASE_IMAGE": "r:1/kfn/base:1",
        "KFN_BUILD_TARGET": "r:1/fn/a/x:1",
        "KFN_BUILD_SOURCE_DIR": "/source",
        "KFN_REGISTRY_AUTH_FILE": "/var/run/kfn/registry/config.json",
        "KFN_REGISTRY_AUTH_SOURCE": "Secret a/kfn-registry",
        "KFN_REGISTRY_CA_FILE": "/etc/kfn/registry-ca.pem",
    }
    cfg = BuildConfig.from_env(env)
    assert cfg.registry_auth_file == pathlib.Path("/var/run/kfn/registry/config.json")
    assert cfg.registry_auth_source == "Secret a/kfn-registry"
    assert cfg.registry_ca_file == pathlib.Path("/etc/kfn/registry-ca.pem")
    assert not cfg.registry_plain_http
    assert BuildConfig.from_env({**env, "KFN_REGISTRY_PLAIN_HTTP": "true"}).registry_plain_http
    unnamed = BuildConfig.from_env({**env, "KFN_REGISTRY_AUTH_SOURCE": ""})
    assert unnamed.registry_auth_source == "file /var/run/kfn/registry/config.json"
    with pytest.raises(BuildError, match="KFN_REGISTRY_PLAIN_HTTP must be true or false"):
        BuildConfig.from_env({**env, "KFN_REGISTRY_PLAIN_HTTP": "yes"})


@pytest.fixture
def secured_base(token_registry: registries.TokenRegistry, tmp_path: pathlib.Path) -> str:
    """A runtime image the admin pushed to the token registry's public ``kfn/``."""
    root = tmp_path / "base-root"
    (root / "opt").mkdir(parents=True)
    (root / "opt" / "runtime.txt").write_text("the runtime\n")
    store = oci.BlobStore(tmp_path / "base-blobs")
    image = store.image([store.layer_from_tree([("", root)])], oci.ImageConfig(cmd=["run"]))
    ref = oci.Reference(token_registry.host, "kfn/runtime-secured", "1")
    digest = token_registry.client(token_registry.admin).push_image(image, ref)
    return f"{ref.registry}/{ref.repository}@{digest}"


def _secured_env(
    cfg: BuildConfig, registry: registries.TokenRegistry, credentials: oci.Credentials
) -> dict[str, str]:
    auth = cfg.workspace.parent / "registry-auth.json"
    auth.write_bytes(
        ociauth.docker_config(registry.host, credentials.username, credentials.password)
    )
    return {
        "KFN_BUILD_RUNTIME": cfg.runtime,
        "KFN_BUILD_BASE_IMAGE": cfg.base_image,
        "KFN_BUILD_TARGET": cfg.target,
        "KFN_BUILD_WORKSPACE": str(cfg.workspace),
        "KFN_BUILD_SOURCE_DIR": str(cfg.source_dir),
        "KFN_TERMINATION_LOG": str(cfg.termination_log),
        "KFN_REGISTRY_AUTH_FILE": str(auth),
        "KFN_REGISTRY_AUTH_SOURCE": "Secret tenant-a/kfn-registry",
        "KFN_REGISTRY_CA_FILE": str(registry.ca_file),
    }


def _secured_config(
    tmp_path: pathlib.Path, registry: registries.TokenRegistry, base: str, repository: str
) -> BuildConfig:
    cfg = _config(tmp_path, registry.host, base, PYTHON, {"app.py": "x = 1\n"})
    return dataclasses.replace(cfg, target=f"{registry.host}/{repository}:{'b' * 64}")


def test_a_build_with_the_namespaces_robot_pushes_to_its_repository_over_tls(
    tmp_path: pathlib.Path,
    token_registry: registries.TokenRegistry,
    secured_base: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = _secured_config(tmp_path, token_registry, secured_base, "fn/tenant-a/hello")
    robot = token_registry.robot("tenant-a")
    for key, value in _secured_env(cfg, token_registry, robot).items():
        monkeypatch.setenv(key, value)
    assert cli.main(["build"]) == 0
    result = json.loads(cfg.termination_log.read_text())
    assert result["image"].startswith(f"{token_registry.host}/fn/tenant-a/hello@sha256:")


def _failed_build(
    cfg: BuildConfig,
    registry: registries.TokenRegistry,
    credentials: oci.Credentials,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """Runs the build command, which must fail; the error in its termination message."""
    for key, value in _secured_env(cfg, registry, credentials).items():
        monkeypatch.setenv(key, value)
    # A recorded dependency layer makes the build look for its blob in the target repository.
    monkeypatch.setenv("KFN_BUILD_DEPENDENCIES", '["six"]')
    key = deps.key(cfg.base_image, cfg.runtime, cfg.workspace, ("six",))
    recorded = DependencyLayer(key, "sha256:" + "c" * 64, 1, oci.MEDIA_LAYER, "sha256:" + "c" * 64)
    monkeypatch.setenv("KFN_BUILD_DEPENDENCY_LAYERS", json.dumps([recorded.to_json()]))
    assert cli.main(["build"]) == 1
    error: str = json.loads(cfg.termination_log.read_text())["error"]
    assert credentials.password not in error
    return error


def test_a_build_with_wrong_credentials_fails_naming_the_secret_and_the_registry_answer(
    tmp_path: pathlib.Path,
    token_registry: registries.TokenRegistry,
    secured_base: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = _secured_config(tmp_path, token_registry, secured_base, "fn/tenant-a/hello")
    wrong = token_registry.robot("tenant-a", key=b"a key the token service never had")
    error = _failed_build(cfg, token_registry, wrong, monkeypatch)
    assert error == (
        f"registry {token_registry.host} refused the credentials of Secret tenant-a/kfn-registry "
        f"(token service {token_registry.token_url}): "
        "HTTP 401 UNAUTHORIZED: incorrect username or password"
    )


def test_a_build_into_another_namespaces_repository_fails_as_denied_by_the_registry(
    tmp_path: pathlib.Path,
    token_registry: registries.TokenRegistry,
    secured_base: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = _secured_config(tmp_path, token_registry, secured_base, "fn/tenant-b/hello")
    error = _failed_build(cfg, token_registry, token_registry.robot("tenant-a"), monkeypatch)
    assert error == (
        f"registry {token_registry.host} denied pull from fn/tenant-b/hello with the credentials "
        "of Secret tenant-a/kfn-registry: HTTP 401 (insufficient_scope)"
    )


def test_a_secret_without_an_entry_for_the_registry_fails_the_build_saying_so(
    tmp_path: pathlib.Path,
    token_registry: registries.TokenRegistry,
    secured_base: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = _secured_config(tmp_path, token_registry, secured_base, "fn/tenant-a/hello")
    env = _secured_env(cfg, token_registry, token_registry.robot("tenant-a"))
    pathlib.Path(env["KFN_REGISTRY_AUTH_FILE"]).write_bytes(
        ociauth.docker_config("elsewhere.example:5000", "u", "p")
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["build"]) == 1
    error = json.loads(cfg.termination_log.read_text())["error"]
    assert error == (
        f"Secret tenant-a/kfn-registry holds no credentials for the registry {token_registry.host}"
    )
