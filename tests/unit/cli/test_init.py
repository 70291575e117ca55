"""``kubectl kfn init``: the files it writes, that it never overwrites, and that what it writes
runs and deploys."""

from __future__ import annotations

import importlib.util
import json
import logging
import pathlib
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kfn.api import function
from kfn.cli import events, package, scaffold

from .conftest import Run


@pytest.fixture(autouse=True)
def _root_log_level_restored() -> Iterator[None]:
    """The Python handler sets the root logger's level, as Lambda handlers do; not for later
    tests."""
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)


def _load_handler(path: pathlib.Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"kfn_init_{path.parent.name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


def test_init_writes_a_python_function_folder_named_after_the_function(
    kfn: Run, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    result = kfn("init", "hello")

    assert result.code == 0, result.err
    written = sorted(
        p.relative_to(tmp_path / "hello").as_posix()
        for p in (tmp_path / "hello").rglob("*")
        if p.is_file()
    )
    assert written == [
        ".kfnignore", "app.py", "events/event.json", "function.yaml", "requirements.txt"
    ]  # fmt: skip
    doc = yaml.safe_load((tmp_path / "hello" / "function.yaml").read_text())
    assert doc["metadata"] == {"name": "hello"}
    assert doc["spec"]["runtime"] == scaffold.DEFAULT_RUNTIME
    assert doc["spec"]["handler"] == "app.handler"
    assert "source" not in doc["spec"]
    assert json.loads((tmp_path / "hello/events/event.json").read_text()) == events.get("apigw")


def test_init_writes_a_node_function_into_the_folder_it_is_given(
    kfn: Run, tmp_path: pathlib.Path
) -> None:
    result = kfn("init", "orders", "--runtime", "nodejs22", str(tmp_path / "code"))

    assert result.code == 0, result.err
    assert (tmp_path / "code/index.js").read_text().count("exports.handler") == 1
    assert json.loads((tmp_path / "code/package.json").read_text())["dependencies"] == {}
    doc = yaml.safe_load((tmp_path / "code/function.yaml").read_text())
    assert (doc["spec"]["runtime"], doc["spec"]["handler"]) == ("nodejs22", "index.handler")


def test_init_refuses_to_overwrite_and_then_writes_nothing_at_all(
    kfn: Run, tmp_path: pathlib.Path
) -> None:
    (tmp_path / "function.yaml").write_text("mine\n")

    result = kfn("init", "hello", str(tmp_path))

    assert result.code == 1
    assert result.err.startswith("error: ")
    assert "function.yaml already exists; nothing was written" in result.err
    assert (tmp_path / "function.yaml").read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["function.yaml"]


def test_init_refuses_a_name_a_function_cannot_have(kfn: Run, tmp_path: pathlib.Path) -> None:
    result = kfn("init", "Hello_World", str(tmp_path))

    assert result.code == 1
    assert 'invalid name "Hello_World": a Function name must be a DNS-1035 label' in result.err
    assert list(tmp_path.iterdir()) == []


def test_init_warns_about_a_runtime_lambda_has_deprecated(kfn: Run, tmp_path: pathlib.Path) -> None:
    result = kfn("init", "old", "--runtime", "nodejs18", str(tmp_path))

    assert result.code == 0
    assert result.err.startswith("Warning: AWS Lambda deprecated nodejs18.x")


@pytest.mark.parametrize("runtime", function.PYTHON_RUNTIMES)
def test_the_generated_python_handler_answers_the_test_event_and_echoes_others(
    runtime: str, tmp_path: pathlib.Path
) -> None:
    for path, text in scaffold.files("hello", runtime).items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    handler = _load_handler(tmp_path / "app.py")
    event = json.loads((tmp_path / "events/event.json").read_text())

    answer = handler(event, None)

    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == {"message": "Hello, kfn!", "path": "/hello"}
    assert handler(events.get("schedule"), None) == {"received": events.get("schedule")}


@pytest.mark.parametrize("runtime", function.NODEJS_RUNTIMES)
def test_the_generated_node_handler_answers_the_test_event(
    runtime: str, tmp_path: pathlib.Path
) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: the Node.js handler cannot be run here")
    for path, text in scaffold.files("orders", runtime).items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    script = (
        'require("./index").handler(require("./events/event.json"), {awsRequestId: "r-1"})'
        ".then((r) => process.stdout.write(JSON.stringify(r)))"
    )

    done = subprocess.run(
        [node, "-e", script], cwd=tmp_path, capture_output=True, text=True, timeout=30,
        check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    logged, result = done.stdout.rsplit("\n", 1)
    assert logged == "request r-1"
    answer = json.loads(result)
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == {"message": "Hello, kfn!", "path": "/hello"}


@pytest.mark.parametrize("runtime", function.RUNTIMES)
def test_the_generated_function_yaml_is_a_valid_function_once_deploy_adds_the_folder(
    runtime: str, kfn: Run, tmp_path: pathlib.Path
) -> None:
    assert kfn("init", "hello", "--runtime", runtime, str(tmp_path)).code == 0
    document = yaml.safe_load((tmp_path / "function.yaml").read_text())

    applied = package.manifest(document, tmp_path, "team-a")

    fn = function.Function.model_validate(applied)
    assert fn.metadata.namespace == "team-a"
    assert fn.spec.source.inline is not None
    names = [f.name for f in fn.spec.source.inline.files]
    code = scaffold.handler_file(runtime)
    manifest_file = "requirements.txt" if runtime.startswith("python") else "package.json"
    assert names == sorted([code, manifest_file])
    assert package.handler_warning(applied["spec"], names) is None
