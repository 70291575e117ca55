"""``python3 -m kfn_runtime.check <code dir>``: compiles every ``.py`` of a function's code, as
``py_compile`` does but writing nothing, and fails with each file, line and message.

A build runs it in a step on the runtime image, so the code is compiled by the very Python the
function will run on: a syntax error ends the build (``BuildSucceeded=False, CodeCheckFailed``)
instead of every invocation failing with ``Runtime.UserCodeSyntaxError``. Packages vendored into
the code (a ``*.dist-info`` beside them says so) are left out: they are not the user's code, and
some ship files that are never imported and do not compile (Python 2 leftovers, test data).

Exit 0 when everything compiles; else 1, the problems on stdout and, for the operator,
``{"reason": "CodeCheckFailed", "error": ...}`` in the termination message.
"""

from __future__ import annotations

import dataclasses
import importlib.machinery
import json
import os
import pathlib
import sys

REASON = "CodeCheckFailed"
#: Directories that hold no code of the function's own.
SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", ".git"})
#: The kubelet keeps at most 4096 bytes of a termination message.
MESSAGE_LIMIT = 3800
#: Problems named in the message; the log lists them all.
SHOWN = 5


@dataclasses.dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    message: str
    text: str = ""

    def describe(self) -> str:
        where = f"{self.file}, line {self.line}" if self.line else self.file
        shown = f": {self.text.strip()}" if self.text.strip() else ""
        return f"{where}: {self.message}{shown}"


def vendored(root: pathlib.Path) -> set[str]:
    """Top-level names of the distributions installed into ``root`` (``pip install -t``)."""
    names: set[str] = set()
    for info in [*root.glob("*.dist-info"), *root.glob("*.egg-info")]:
        top_level = info / "top_level.txt"
        if top_level.is_file():
            names.update(n.strip() for n in top_level.read_text().splitlines() if n.strip())
        record = info / "RECORD"
        if record.is_file():
            for row in record.read_text(errors="replace").splitlines():
                first = row.split(",", 1)[0].split("/", 1)[0]
                if first and not first.endswith((".dist-info", "..")):
                    names.add(first.removesuffix(".py"))
    return names


def python_files(root: pathlib.Path) -> list[pathlib.Path]:
    """The ``.py`` files of the function's own code, in a stable order."""
    skip = vendored(root)
    found = []
    for folder, dirs, files in os.walk(root):
        here = pathlib.Path(folder)
        dirs[:] = sorted(
            d for d in dirs if d not in SKIPPED_DIRS and not (here == root and d in skip)
        )
        for name in sorted(files):
            if name.endswith(".py") and not (here == root and name.removesuffix(".py") in skip):
                found.append(here / name)
    return found


def compile_file(path: pathlib.Path, root: pathlib.Path) -> Problem | None:
    """Compiles one file as ``py_compile`` does; the problem, or None."""
    relative = str(path.relative_to(root))
    loader = importlib.machinery.SourceFileLoader("<check>", str(path))
    try:
        loader.source_to_code(path.read_bytes(), relative)
    except SyntaxError as exc:  # IndentationError and TabError too
        return Problem(relative, exc.lineno, f"{type(exc).__name__}: {exc.msg}", exc.text or "")
    except (ValueError, UnicodeDecodeError) as exc:  # null bytes, a bad encoding
        return Problem(relative, None, f"{type(exc).__name__}: {exc}")
    return None


def check(root: pathlib.Path) -> list[Problem]:
    return [p for f in python_files(root) if (p := compile_file(f, root)) is not None]


def message(problems: list[Problem]) -> str:
    """What the user reads in the Function's condition."""
    lines = [p.describe() for p in problems[:SHOWN]]
    more = (
        f" (and {len(problems) - SHOWN} more; the build's log lists them)"
        if len(problems) > SHOWN
        else ""
    )
    return f"the code does not compile with {platform()}: " + "; ".join(lines) + more


def platform() -> str:
    return f"Python {sys.version_info.major}.{sys.version_info.minor}"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 -m kfn_runtime.check <code dir>", file=sys.stderr)
        return 2
    root = pathlib.Path(argv[0])
    files = python_files(root)
    problems = check(root)
    if not problems:
        print(f"code check: {len(files)} Python file(s) compile with {platform()}", flush=True)
        return 0
    for problem in problems:
        print(f"code check: {problem.describe()}", flush=True)
    terminate({"reason": REASON, "error": message(problems)[-MESSAGE_LIMIT:]})
    return 1


def terminate(doc: dict[str, str]) -> None:
    """Writes the termination message the operator reads; the log says it all anyway."""
    path = pathlib.Path(os.environ.get("KFN_TERMINATION_LOG") or "/dev/termination-log")
    try:
        path.write_text(json.dumps(doc, separators=(",", ":")))
    except OSError as exc:
        print(f"code check: cannot write the termination message: {exc}", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
