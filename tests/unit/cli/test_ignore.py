"""``.kfnignore``: gitignore's patterns, in the subset people write, as a table."""

from __future__ import annotations

import pytest

from kfn.cli import ignore

CASES = [
    # (patterns, path, is a directory, left out)
    ("", ".git", True, True),
    ("", "lib/__pycache__", True, True),
    ("", "node_modules", True, True),
    ("", "pkg/.venv", True, True),
    ("", "lib/util.pyc", False, True),
    ("", ".kfnignore", False, True),
    ("", "function.yaml", False, True),
    # function.yaml is the spec only at the top; one in a subfolder is code.
    ("", "fixtures/function.yaml", False, False),
    ("", "app.py", False, False),
    ("*.log", "debug.log", False, True),
    ("*.log", "logs/deep/debug.log", False, True),
    ("*.log", "debug.log.txt", False, False),
    ("# a comment\n\n*.md", "README.md", False, True),
    ("tests/", "tests", True, True),
    ("tests/", "src/tests", True, True),
    # A trailing slash matches directories only.
    ("tests/", "tests", False, False),
    # A slash before the end anchors the pattern to the folder.
    ("/build", "build", True, True),
    ("/build", "src/build", True, False),
    ("src/gen", "src/gen", True, True),
    ("src/gen", "lib/src/gen", True, False),
    ("**/fixtures", "a/b/fixtures", True, True),
    ("**/fixtures", "fixtures", True, True),
    ("docs/**", "docs/a/b.md", False, True),
    ("data?.csv", "data1.csv", False, True),
    ("data?.csv", "data10.csv", False, False),
    ("data[0-9].csv", "data7.csv", False, True),
    ("data[!0-9].csv", "data7.csv", False, False),
    # The last match decides; "!" takes a file back.
    ("*.json\n!package.json", "package.json", False, False),
    ("*.json\n!package.json", "events/event.json", False, True),
    ("!function.yaml", "function.yaml", False, False),
    (r"\#notes", "#notes", False, True),
    ("*.txt   ", "a.txt", False, True),
]


@pytest.mark.parametrize(("patterns", "path", "is_dir", "left_out"), CASES)
def test_a_path_is_left_out_as_gitignore_would_leave_it_out(
    patterns: str, path: str, is_dir: bool, left_out: bool
) -> None:
    assert ignore.Rules.of(patterns).ignored(path, is_dir=is_dir) is left_out
