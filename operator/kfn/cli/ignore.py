"""Which files of a function's folder ``kubectl kfn deploy`` leaves out: ``.kfnignore`` (pure).

The patterns are gitignore's, in the subset people write: one a line, ``#`` comments and blank
lines skipped, ``!`` re-includes, a trailing ``/`` matches directories only, a pattern with a
``/`` before its end is anchored to the folder (``/build``, ``src/gen``) while one without
matches a name at any depth (``*.log``), ``*`` and ``?`` stay within one path segment and
``**`` spans segments (``**/fixtures``, ``docs/**``). The last matching pattern decides, and, as
in git, a file inside a left-out directory cannot be re-included (the walk never enters it).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from typing import Final

DEFAULT_PATTERNS: Final = (
    ".git/",
    "__pycache__/",
    "node_modules/",
    ".venv/",
    "*.pyc",
    "/.kfnignore",
    "/function.yaml",
)
"""Always left out, before ``.kfnignore`` is read (a ``!`` line there can take one back).

Dependencies are installed by the build from ``requirements.txt`` / ``package.json``, so a local
``node_modules`` or virtualenv would only add size; ``function.yaml`` is the Function's spec, not
its code, and leaving it out keeps a change of configuration from rebuilding the image."""


@dataclasses.dataclass(frozen=True)
class Pattern:
    """One line of an ignore file, compiled."""

    text: str
    regex: re.Pattern[str]
    negated: bool
    directory_only: bool


def _segment(text: str) -> str:
    """A regex for glob characters within one path segment."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(re.escape(text[i + 1]))
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = text.find("]", i + 2 if text[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = text[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body.replace(chr(92), chr(92) * 2)}]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def compile_pattern(line: str) -> Pattern | None:
    """The pattern of one line, or None for a blank line or a comment."""
    text = line.rstrip("\n\r")
    # Trailing spaces are dropped unless escaped, as git does.
    stripped = text.rstrip(" ")
    if stripped.endswith("\\") and len(stripped) < len(text):
        stripped += " "
    text = stripped
    if not text or text.startswith("#"):
        return None
    negated = text.startswith("!")
    body = text[1:] if negated else text
    if body.startswith(("\\#", "\\!")):
        body = body[1:]
    directory_only = body.endswith("/")
    body = body.rstrip("/")
    if not body:
        return None
    anchored = "/" in body
    body = body.lstrip("/")
    parts = body.split("/")
    regex = ""
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            regex += ".*" if last else "(?:[^/]+/)*"
        else:
            regex += _segment(part) + ("" if last else "/")
    if not anchored:
        regex = "(?:.*/)?" + regex
    return Pattern(line.strip(), re.compile(regex + r"\Z"), negated, directory_only)


def parse(lines: Iterable[str]) -> list[Pattern]:
    """The patterns of an ignore file's lines, in order."""
    return [p for p in (compile_pattern(line) for line in lines) if p is not None]


@dataclasses.dataclass(frozen=True)
class Rules:
    """The default patterns followed by a folder's ``.kfnignore``; the last match decides."""

    patterns: Sequence[Pattern]

    @classmethod
    def of(cls, kfnignore: str | None) -> Rules:
        lines = [*DEFAULT_PATTERNS, *(kfnignore.splitlines() if kfnignore else [])]
        return cls(parse(lines))

    def ignored(self, path: str, *, is_dir: bool) -> bool:
        """Whether ``path`` (relative, ``/``-separated) is left out."""
        verdict = False
        for pattern in self.patterns:
            if pattern.directory_only and not is_dir:
                continue
            if pattern.regex.match(path):
                verdict = not pattern.negated
        return verdict
