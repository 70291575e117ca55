"""kfn.authn.tokenfile: a projected token read again once the kubelet rotated it."""

from __future__ import annotations

import os
import pathlib
import time

import pytest

from kfn.authn import tokenfile


def _rotate(path: pathlib.Path, token: str) -> None:
    path.write_text(token)
    later = time.time() + 5
    os.utime(path, (later, later))


def test_a_token_is_read_once_and_again_only_after_a_rotation_was_looked_for(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    now = [0.0]
    token = tokenfile.TokenFile(str(path), clock=lambda: now[0])
    assert token() == "first"
    _rotate(path, "second")
    assert token() == "first", "not looked at again yet"
    now[0] += tokenfile.RECHECK
    assert token() == "second"


def test_a_file_looked_at_again_but_unchanged_is_not_read_again(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "token"
    path.write_text("first")
    now = [0.0]
    token = tokenfile.TokenFile(str(path), clock=lambda: now[0])
    assert token() == "first"
    mtime = path.stat().st_mtime
    path.write_text("edited in place")
    os.utime(path, (mtime, mtime))
    now[0] += tokenfile.RECHECK
    assert token() == "first"


def test_a_missing_token_file_is_an_os_error_for_the_caller(tmp_path: pathlib.Path) -> None:
    with pytest.raises(OSError, match="No such file"):
        tokenfile.TokenFile(str(tmp_path / "none"))()
