"""Layers on the import path: a handler imports from a layer's directories under /opt, and the
function's own dependencies (/opt/python, /opt/nodejs/node_modules) and code win over a layer's
copy of the same module. A real runtime process each time, its /opt a directory made here."""

from __future__ import annotations

import pathlib
import subprocess

from .conftest import RunningRuntime, command, make_task_root, python_command, start

PYTHON_HANDLER = """\
import from_layer, shared, mine

def handler(event, context):
    return {"layer": from_layer.WHO, "shared": shared.WHO, "mine": mine.WHO}
"""

NODE_HANDLER = """\
const fromLayer = require('from-layer');
const shared = require('shared');
const mine = require('mine');

exports.handler = async () => ({ layer: fromLayer.WHO, shared: shared.WHO, mine: mine.WHO });
"""


def _write(path: pathlib.Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)


def _python_site(opt: pathlib.Path) -> pathlib.Path:
    """The layers' site directory for the Python the runtime runs on."""
    code = "import sys; print('%d.%d' % sys.version_info[:2])"
    out = subprocess.run(
        [python_command()[0], "-c", code], capture_output=True, text=True, check=True
    )
    version = out.stdout.strip()
    return opt / "python" / "lib" / f"python{version}" / "site-packages"


def _node_major() -> str:
    out = subprocess.run(
        [command("nodejs")[0], "--version"], capture_output=True, text=True, check=True
    )
    return out.stdout.strip().lstrip("v").split(".")[0]


def _python_runtime(tmp_path: pathlib.Path) -> RunningRuntime:
    opt = tmp_path / "opt"
    site = _python_site(opt)
    _write(site / "from_layer.py", "WHO = 'layer site directory'\n")
    _write(site / "shared.py", "WHO = 'layer'\n")
    _write(site / "mine.py", "WHO = 'layer'\n")
    _write(opt / "python" / "shared.py", "WHO = 'function dependency'\n")
    _write(opt / "python" / "mine.py", "WHO = 'function dependency'\n")
    root = make_task_root("python", tmp_path)
    _write(root / "layers_app.py", PYTHON_HANDLER)
    _write(root / "mine.py", "WHO = 'function code'\n")
    return start("python", root, "layers_app.handler", KFN_OPT_ROOT=str(opt))


def _node_runtime(tmp_path: pathlib.Path) -> RunningRuntime:
    opt = tmp_path / "opt"
    versioned = opt / "nodejs" / f"node{_node_major()}" / "node_modules"
    for name in ("from-layer", "shared", "mine"):
        _write(versioned / name / "index.js", "exports.WHO = 'layer';\n")
    _write(versioned / "from-layer" / "index.js", "exports.WHO = 'layer node<major>';\n")
    for name in ("shared", "mine"):
        _write(
            opt / "nodejs" / "node_modules" / name / "index.js",
            "exports.WHO = 'function dependency';\n",
        )
    root = make_task_root("nodejs", tmp_path)
    _write(root / "layers_app.js", NODE_HANDLER)
    _write(root / "node_modules" / "mine" / "index.js", "exports.WHO = 'function code';\n")
    return start("nodejs", root, "layers_app.handler", KFN_OPT_ROOT=str(opt))


def _invoke(runtime: RunningRuntime) -> object:
    try:
        ready = runtime.wait_ready()
        assert ready.status == 200, runtime.output()
        answer = runtime.invoke({})
        assert answer.status == 200, answer.body
        return answer.json()
    finally:
        runtime.stop()


def test_a_python_handler_imports_from_a_layer_and_its_own_dependencies_win(
    tmp_path: pathlib.Path,
) -> None:
    assert _invoke(_python_runtime(tmp_path)) == {
        "layer": "layer site directory",
        "shared": "function dependency",
        "mine": "function code",
    }


def test_a_node_handler_requires_from_a_layer_and_its_own_dependencies_win(
    tmp_path: pathlib.Path,
) -> None:
    assert _invoke(_node_runtime(tmp_path)) == {
        "layer": "layer node<major>",
        "shared": "function dependency",
        "mine": "function code",
    }
