"""Dependencies of a function: what decides them (the key), and installing them.

Python: ``requirements.txt`` in the code plus ``spec.dependencies``, installed by pip into
``deps/python`` (→ ``/opt/python``, on the Python runtime's ``sys.path``). Node.js:
``package.json`` (and ``package-lock.json``) in the code plus ``spec.dependencies``, installed by
npm into ``deps/nodejs/node_modules`` (→ ``/opt/nodejs/node_modules``, on ``NODE_PATH``).
"""

from __future__ import annotations

import collections
import hashlib
import json
import pathlib
import subprocess
import sys
import urllib.parse
from collections.abc import Sequence
from typing import Any

from kfn.builder.config import NODEJS, PYTHON, PYTHON_RUNTIMES, BuildError

#: Bumped when the layout of the dependency layer changes, so old cached layers are not reused.
DEPS_FORMAT = "kfn-deps-v1"
NPM_PROJECT = "nodejs"
PIP_TARGET = "python"


def manifest_files(runtime: str, code: pathlib.Path) -> dict[str, bytes]:
    """The files of the code that name dependencies (``requirements.txt``, ``package.json``…)."""
    names = (
        ("requirements.txt",)
        if runtime in PYTHON_RUNTIMES
        else ("package.json", "package-lock.json")
    )
    return {name: (code / name).read_bytes() for name in names if (code / name).is_file()}


def needed(runtime: str, code: pathlib.Path, dependencies: Sequence[str]) -> bool:
    """Whether there is anything to install at all."""
    if dependencies:
        return True
    files = manifest_files(runtime, code)
    if runtime in PYTHON_RUNTIMES:
        return any(
            line.strip() and not line.strip().startswith("#")
            for line in files.get("requirements.txt", b"").decode().splitlines()
        )
    if "package.json" not in files:
        return False
    doc = _package_json(files["package.json"])
    return bool(doc.get("dependencies"))


def key(
    base_image: str,
    runtime: str,
    code: pathlib.Path,
    dependencies: Sequence[str],
    *,
    over_layers: bool = False,
) -> str:
    """Hex SHA-256 of everything that decides the dependency layer.

    Two builds with the same key install the same thing, so the second reuses the first's
    layer. The package index is left out on purpose: a mirror serves the same packages.
    ``over_layers``: the Function has layers, so its packages are marked to hide a layer's
    copy of them (:func:`kfn.builder.layers.shadow_layers`), a layer of its own.
    """
    digest = hashlib.sha256()

    def put(tag: str, data: bytes) -> None:
        digest.update(tag.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)

    put("format", DEPS_FORMAT.encode())
    put("base", base_image.encode())
    put("runtime", runtime.encode())
    for name, data in sorted(manifest_files(runtime, code).items()):
        put("file", name.encode())
        put("content", data)
    for dependency in dependencies:
        put("dependency", dependency.encode())
    if over_layers:
        put("over-layers", b"1")
    return digest.hexdigest()


def split_npm_spec(spec: str) -> tuple[str, str]:
    """``lodash@^4`` → (``lodash``, ``^4``); ``@scope/pkg@1`` → (``@scope/pkg``, ``1``)."""
    at = spec.rfind("@")
    if at <= 0:
        return spec, "*"
    return spec[:at], spec[at + 1 :] or "*"


def _package_json(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise BuildError(f"package.json is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BuildError("package.json must hold a JSON object")
    return doc


def write_npm_project(
    code: pathlib.Path, dependencies: Sequence[str], project: pathlib.Path
) -> None:
    """The npm project to install: the code's package.json with ``spec.dependencies`` added.

    Only ``dependencies`` matter (development dependencies are not installed), and scripts are
    dropped: an install runs no code of the function's own package.
    """
    files = manifest_files(NODEJS, code)
    doc = _package_json(files["package.json"]) if "package.json" in files else {}
    deps = dict(doc.get("dependencies") or {})
    for spec in dependencies:
        name, version = split_npm_spec(spec)
        deps[name] = version
    project.mkdir(parents=True, exist_ok=True)
    out = {"name": "kfn-function-dependencies", "private": True, "dependencies": deps}
    (project / "package.json").write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    if "package-lock.json" in files:
        (project / "package-lock.json").write_bytes(files["package-lock.json"])


#: Seconds pip waits for each read from the index (pip's default is 15).
PIP_READ_TIMEOUT = 60


def pip_command(
    target: pathlib.Path,
    code: pathlib.Path,
    dependencies: Sequence[str],
    index_url: str,
    runtime: str = PYTHON,
) -> list[str]:
    """The pip command line that installs the function's Python dependencies into ``target``.

    pip runs on the builder's Python; for a runtime of another Python version it picks the
    wheels of that version (``--python-version``), and then only wheels: building a source
    distribution would compile it for the builder's Python, not the runtime's.
    """
    cmd = [
        sys.executable, "-m", "pip", "install",
        "--target", str(target),
        "--no-compile", "--no-cache-dir", "--disable-pip-version-check", "--no-input",
        "--progress-bar", "off",
        # A caching index fetches a page it has not seen from its upstream first; pip's
        # default 15 s read timeout is shorter than a cold mirror may take.
        "--timeout", str(PIP_READ_TIMEOUT),
    ]  # fmt: skip
    if index_url:
        cmd += ["--index-url", index_url]
        parsed = urllib.parse.urlsplit(index_url)
        if parsed.scheme == "http" and parsed.hostname:
            # A mirror on the cluster's own network, reached without TLS.
            cmd += ["--trusted-host", parsed.hostname]
    version = runtime.removeprefix("python")
    if version != f"{sys.version_info[0]}.{sys.version_info[1]}":
        cmd += ["--python-version", version, "--implementation", "cp", "--only-binary=:all:"]
    if (code / "requirements.txt").is_file():
        cmd += ["--requirement", str(code / "requirements.txt")]
    cmd += list(dependencies)
    return cmd


def run_logged(
    cmd: Sequence[str], what: str, cwd: pathlib.Path | None = None, tail: int = 25
) -> None:
    """Runs ``cmd`` with its output on our stdout; on failure the error carries its last lines."""
    print(f"$ {' '.join(cmd)}", flush=True)
    last: collections.deque[str] = collections.deque(maxlen=tail)
    with subprocess.Popen(
        list(cmd),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            if line.strip():
                last.append(line.rstrip())
        code = proc.wait()
    if code != 0:
        raise BuildError(f"{what} failed (exit {code}):\n" + "\n".join(last))
