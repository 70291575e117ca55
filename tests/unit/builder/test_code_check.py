"""The build's code check: the runtime image's checker compiles every source file and fails the
build naming file, line and message, which the Function shows as ``CodeCheckFailed``.

The checkers run as the build Job runs them, as subprocesses (python3.11 and node of this
machine, the runtime images' interpreters), on a code directory laid out by ``prepare``.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
from typing import Any

import pytest

from kfn.api import function
from kfn.builder import __main__ as cli
from kfn.builder.config import PYTHON
from kfn.operator import builds
from kfn.resources import build as build_resources
from tests.unit.runtimes.conftest import REPO, python_command

NODE_CHECK = REPO / "runtime-images/nodejs/kfn_runtime/check.js"


def _write(root: pathlib.Path, files: dict[str, str | bytes]) -> pathlib.Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def _run(command: list[str], code: pathlib.Path, tmp_path: pathlib.Path) -> tuple[int, str, Any]:
    """Runs a checker; its exit status, its output and its termination message (or None)."""
    log = tmp_path / "termination-log"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO / "runtime-images/python"),
        "KFN_TERMINATION_LOG": str(log),
    }
    done = subprocess.run(
        [*command, str(code)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    message = json.loads(log.read_text()) if log.exists() else None
    return done.returncode, done.stdout + done.stderr, message


def check_python(code: pathlib.Path, tmp_path: pathlib.Path) -> tuple[int, str, Any]:
    return _run([*python_command()[:1], "-m", "kfn_runtime.check"], code, tmp_path)


def check_node(code: pathlib.Path, tmp_path: pathlib.Path) -> tuple[int, str, Any]:
    return _run(["node", str(NODE_CHECK)], code, tmp_path)


# --- Python -----------------------------------------------------------------------------------


def test_python_code_that_compiles_passes_and_says_how_much_was_checked(
    tmp_path: pathlib.Path,
) -> None:
    code = _write(
        tmp_path / "code",
        {"app.py": "def handler(event, context):\n    return event\n", "lib/util.py": "X = 1\n"},
    )
    status, output, message = check_python(code, tmp_path)
    assert (status, message) == (0, None)
    assert "2 Python file(s) compile with Python 3." in output


PYTHON_CASES = [
    pytest.param({"app.py": "def handler(event, context)\n    return event\n"},
                 "app.py, line 1: SyntaxError: expected ':': def handler(event, context)",
                 id="a missing colon"),
    pytest.param({"app.py": "x = 1\n", "lib/helper.py": "def f():\nreturn 1\n"},
                 "lib/helper.py, line 2: IndentationError: expected an indented block after "
                 "function definition on line 1: return 1",
                 id="an indentation error in a module the handler would import"),
    pytest.param({"app.py": "print 'hello'\n"},
                 "app.py, line 1: SyntaxError: Missing parentheses in call to 'print'. "
                 "Did you mean print(...)?: print 'hello'",
                 id="Python 2 code"),
    pytest.param({"app.py": b"x = 1\x00\n"}, "app.py: ",
                 id="a null byte"),
]  # fmt: skip


@pytest.mark.parametrize(("files", "expected"), PYTHON_CASES)
def test_python_code_that_does_not_compile_fails_naming_file_line_and_message(
    tmp_path: pathlib.Path, files: dict[str, str | bytes], expected: str
) -> None:
    status, output, message = check_python(_write(tmp_path / "code", files), tmp_path)
    assert status == 1
    assert message["reason"] == "CodeCheckFailed"
    assert message["error"].startswith("the code does not compile with Python 3.")
    assert expected in message["error"]
    assert f"code check: {expected}" in output


def test_every_python_problem_is_logged_and_the_first_five_named(tmp_path: pathlib.Path) -> None:
    code = _write(tmp_path / "code", {f"m{i}.py": "def (\n" for i in range(7)})
    status, output, message = check_python(code, tmp_path)
    assert status == 1
    assert output.count("code check: m") == 7
    assert message["error"].count(", line 1: ") == 5
    assert message["error"].endswith("(and 2 more; the build's log lists them)")


def test_python_packages_vendored_into_the_code_are_not_checked(tmp_path: pathlib.Path) -> None:
    code = _write(
        tmp_path / "code",
        {
            "app.py": "import oldlib\n",
            "oldlib/__init__.py": "print 'py2 only'\n",
            "oldlib-1.0.dist-info/RECORD": "oldlib/__init__.py,sha256=x,10\n",
            "six.py": "exec 'py2'\n",
            "six-1.16.0.dist-info/top_level.txt": "six\n",
            "node_modules/x/y.py": "not python at all (\n",
        },
    )
    status, output, _ = check_python(code, tmp_path)
    assert status == 0, output
    assert "1 Python file(s)" in output


# --- Node.js ----------------------------------------------------------------------------------


def test_javascript_that_passes_node_check_passes(tmp_path: pathlib.Path) -> None:
    code = _write(
        tmp_path / "code",
        {
            "index.js": "exports.handler = async (e) => e;\n",
            "esm/app.mjs": "export const handler = async (e) => e;\n",
            "lib/util.cjs": "module.exports = 1;\n",
            "bin/tool.js": "#!/usr/bin/env node\nreturn;\n",
            "README.md": "not code\n",
        },
    )
    status, output, message = check_node(code, tmp_path)
    assert (status, message) == (0, None)
    assert "4 JavaScript file(s) compile with Node.js " in output


NODE_CASES = [
    pytest.param({"index.js": "exports.handler = async (e) => {\n  return 1 +;\n};\n"},
                 "index.js, line 2: SyntaxError: Unexpected token ';': return 1 +;",
                 id="CommonJS"),
    pytest.param({"app.mjs": "export const handler = async (e) => {\n  return { e\n};\n"},
                 "app.mjs, line ", id="an ES module"),
    pytest.param({"package.json": '{"type": "module"}',
                  "app.js": "import x from 'y';\nexport const h = () => { await 1; };\n"},
                 "app.js, line 2: SyntaxError: ", id="a .js ES module under type module"),
    pytest.param({"index.js": "exports.h = 1;\n", "lib/old.cjs": "var x = ;\n"},
                 "lib/old.cjs, line 1: SyntaxError: Unexpected token ';': var x = ;",
                 id="a .cjs file in a folder"),
]  # fmt: skip


@pytest.mark.parametrize(("files", "expected"), NODE_CASES)
def test_javascript_that_fails_node_check_fails_naming_file_line_and_message(
    tmp_path: pathlib.Path, files: dict[str, str], expected: str
) -> None:
    status, output, message = check_node(_write(tmp_path / "code", files), tmp_path)
    assert status == 1, output
    assert message["reason"] == "CodeCheckFailed"
    assert message["error"].startswith("the code does not compile with Node.js ")
    assert expected in message["error"]
    assert f"code check: {expected}" in output


def test_node_modules_vendored_into_the_code_are_not_checked(tmp_path: pathlib.Path) -> None:
    code = _write(
        tmp_path / "code",
        {"index.js": "exports.h = 1;\n", "node_modules/dep/index.js": "this is not ( javascript"},
    )
    status, output, _ = check_node(code, tmp_path)
    assert status == 0, output


# --- the build Job and the condition ------------------------------------------------------------


def _function(runtime: str) -> function.Function:
    return function.Function.model_validate(
        {
            "metadata": {"name": "hello", "namespace": "team", "uid": "u", "generation": 1},
            "spec": {
                "runtime": runtime,
                "handler": "app.handler",
                "source": {"inline": {"files": [{"name": "app.py", "content": "x = 1\n"}]}},
            },
        }
    )


SETTINGS = build_resources.BuildSettings(
    registry="registry.local",
    builder_image="kfn@sha256:" + "1" * 64,
    runtime_images={"python3.11": "py@sha256:" + "2" * 64, "nodejs18": "node@sha256:" + "3" * 64},
)


@pytest.mark.parametrize(
    ("runtime", "steps", "check_image"),
    [
        ("python3.11", ["prepare", "check", "build"], "py@sha256:" + "2" * 64),
        ("nodejs18", ["prepare", "check", "npm", "build"], "node@sha256:" + "3" * 64),
    ],
)
def test_the_build_checks_the_code_on_the_runtime_image_before_installing_and_pushing(
    runtime: str, steps: list[str], check_image: str
) -> None:
    job = build_resources.build_job(_function(runtime), "a" * 64, SETTINGS, files={})
    pod = job["spec"]["template"]["spec"]
    containers = [*pod["initContainers"], *pod["containers"]]
    assert [c["name"] for c in containers] == steps
    check = containers[1]
    assert check["image"] == check_image
    assert check["command"][-1] == "/workspace/code"
    assert check["env"] == []
    assert containers[-1]["command"] == ["python3", "-m", "kfn.builder", "push"]


def test_a_python_build_runs_as_the_job_runs_it_prepare_check_then_push(
    tmp_path: pathlib.Path, registry: str, base_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _write(tmp_path / "source", {"app.py": "def handler(e, c):\n    return e\n"})
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    for key, value in {
        "KFN_BUILD_RUNTIME": PYTHON,
        "KFN_BUILD_BASE_IMAGE": base_image,
        "KFN_BUILD_TARGET": f"{registry}/fn/team/hello:{'a' * 64}",
        "KFN_BUILD_WORKSPACE": str(workspace),
        "KFN_BUILD_SOURCE_DIR": str(source),
        "KFN_TERMINATION_LOG": str(tmp_path / "push-log"),
        "KFN_REGISTRY_PLAIN_HTTP": "true",
    }.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["prepare"]) == 0
    assert check_python(workspace / "code", tmp_path)[0] == 0
    assert cli.main(["push"]) == 0
    assert json.loads((tmp_path / "push-log").read_text())["image"].startswith(registry)


def _failed_pod(step: str, message: str) -> dict[str, Any]:
    terminated = {"state": {"terminated": {"exitCode": 1, "message": message}}}
    return {
        "status": {
            "initContainerStatuses": [
                {"name": "prepare", "state": {"terminated": {"exitCode": 0}}},
                {"name": step, **terminated},
            ]
        }
    }


FAILED_JOB = {"status": {"conditions": [{"type": "Failed", "status": "True"}]}}


def test_a_failed_code_check_is_code_check_failed_with_the_files_and_what_to_do(
    tmp_path: pathlib.Path,
) -> None:
    _, _, message = check_python(
        _write(tmp_path / "code", {"app.py": "def handler(event, context)\n"}), tmp_path
    )
    pod = _failed_pod("check", json.dumps(message))
    verdict = builds.failed_build("team", "hello-build-1", FAILED_JOB, [pod])
    assert (verdict.status, verdict.reason) == ("False", "CodeCheckFailed")
    assert verdict.message.startswith("the code does not compile with Python 3.")
    assert "app.py, line 1: SyntaxError: expected ':': def handler(event, context)" in (
        verdict.message
    )
    assert verdict.message.endswith(
        ". Fix the code and apply again (kubectl -n team logs job/hello-build-1 -c check "
        "lists every problem)."
    )


def test_any_other_failed_step_is_still_build_failed() -> None:
    pod = _failed_pod("build", json.dumps({"error": "registry refused the push"}))
    verdict = builds.failed_build("team", "hello-build-1", FAILED_JOB, [pod])
    assert (verdict.status, verdict.reason) == ("False", "BuildFailed")
    assert verdict.message.endswith("step build: registry refused the push")
