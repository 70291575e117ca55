"""Getting the code into the workspace: mounted ConfigMaps, and archives checked by digest."""

from __future__ import annotations

import hashlib
import http.server
import io
import pathlib
import tarfile
import threading
import zipfile
from collections.abc import Iterator

import pytest

from kfn.builder import source
from kfn.builder.config import BuildError


@pytest.fixture
def served(tmp_path: pathlib.Path) -> Iterator[tuple[str, pathlib.Path]]:
    """A loopback HTTP server of ``tmp_path/www``; yields its base URL and the directory."""
    www = tmp_path / "www"
    www.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(www), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", www
    finally:
        server.shutdown()
        server.server_close()


def _mounted_config_map(root: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    """A directory laid out as the kubelet mounts a ConfigMap: links into ``..data``."""
    data = root / "..2026_01_01_00_00_00.000000001"
    for name, content in files.items():
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text(content)
    (root / "..data").symlink_to(data.name)
    for top in {name.split("/")[0] for name in files}:
        (root / top).symlink_to(f"..data/{top}")
    return root


def test_a_mounted_config_map_is_copied_as_plain_files_without_its_hidden_entries(
    tmp_path: pathlib.Path,
) -> None:
    mount = _mounted_config_map(
        tmp_path / "mount", {"app.py": "print(1)\n", "lib/util.py": "X = 1\n"}
    )
    code = tmp_path / "code"
    copied = source.copy_mounted(mount, code)
    assert copied == ["app.py", "lib/util.py"]
    assert not (code / "app.py").is_symlink()
    assert (code / "lib" / "util.py").read_text() == "X = 1\n"
    assert sorted(p.name for p in code.iterdir()) == ["app.py", "lib"]


def test_an_archive_with_the_expected_sha256_is_downloaded_and_unpacked(
    served: tuple[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    url, www = served
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.js", "exports.handler = async () => 42;\n")
        zf.writestr("lib/a.js", "module.exports = 1;\n")
    (www / "code.zip").write_bytes(buf.getvalue())
    expected = hashlib.sha256(buf.getvalue()).hexdigest()
    archive = tmp_path / "archive"
    assert source.download(f"{url}/code.zip", expected, archive) == expected
    files = source.unpack(archive, tmp_path / "code")
    assert files == ["index.js", "lib/a.js"]


def test_an_archive_whose_sha256_differs_is_refused_naming_both_digests(
    served: tuple[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    url, www = served
    (www / "code.tar.gz").write_bytes(b"not what was promised")
    actual = hashlib.sha256(b"not what was promised").hexdigest()
    wrong = "0" * 64
    with pytest.raises(BuildError, match="sha256 mismatch") as err:
        source.download(f"{url}/code.tar.gz", wrong, tmp_path / "archive")
    assert actual in str(err.value)
    assert wrong in str(err.value)


def test_an_unreachable_archive_is_a_build_error(
    served: tuple[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    url, _ = served
    with pytest.raises(BuildError, match="downloading the archive"):
        source.download(f"{url}/missing.zip", None, tmp_path / "archive")


def _tar(members: list[tarfile.TarInfo], data: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for info in members:
            payload = data.get(info.name)
            if payload is not None:
                info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return buf.getvalue()


def test_archive_members_escaping_the_code_directory_are_refused(tmp_path: pathlib.Path) -> None:
    info = tarfile.TarInfo("../../etc/evil")
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(_tar([info], {"../../etc/evil": b"x"}))
    with pytest.raises(BuildError, match="outside the code directory"):
        source.unpack(archive, tmp_path / "code")
    assert not (tmp_path / "etc").exists()


def test_links_in_an_archive_are_refused(tmp_path: pathlib.Path) -> None:
    link = tarfile.TarInfo("passwd")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    archive = tmp_path / "link.tar.gz"
    archive.write_bytes(_tar([link], {}))
    with pytest.raises(BuildError, match="link"):
        source.unpack(archive, tmp_path / "code")


def test_executable_bits_survive_unpacking_and_other_modes_are_normalised(
    tmp_path: pathlib.Path,
) -> None:
    run = tarfile.TarInfo("bin/run")
    run.mode = 0o700
    conf = tarfile.TarInfo("conf.json")
    conf.mode = 0o600
    archive = tmp_path / "modes.tar.gz"
    archive.write_bytes(_tar([run, conf], {"bin/run": b"#!/bin/sh\n", "conf.json": b"{}"}))
    source.unpack(archive, tmp_path / "code")
    assert (tmp_path / "code" / "bin" / "run").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "code" / "conf.json").stat().st_mode & 0o777 == 0o644
