"""Getting the code into the workspace: mounted ConfigMaps, and archives checked by digest and
unpacked within bounds. The bombs here are real archives built in the test, against small
bounds so that each stays quick: what matters is the ratio, and that nothing past the bound is
written."""

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

from kfn import urls
from kfn.builder import source
from kfn.builder.config import Bounds, BuildError

#: The test server listens on loopback, which builds refuse unless the admin allows it.
LOOPBACK = urls.parse_networks(["127.0.0.0/8"])


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
    assert source.download(f"{url}/code.zip", expected, archive, allowed=LOOPBACK) == expected
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
        source.download(f"{url}/code.tar.gz", wrong, tmp_path / "archive", allowed=LOOPBACK)
    assert actual in str(err.value)
    assert wrong in str(err.value)


def test_an_unreachable_archive_is_a_build_error(
    served: tuple[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    url, _ = served
    with pytest.raises(BuildError, match="HTTP 404"):
        source.download(f"{url}/missing.zip", None, tmp_path / "archive", allowed=LOOPBACK)


def test_an_archive_url_is_shown_without_its_query_string_in_every_message(
    served: tuple[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    url, www = served
    (www / "code.zip").write_bytes(b"PK not quite")
    presigned = f"{url}/code.zip?X-Amz-Credential=AKIA&X-Amz-Signature=s3cr3t"
    for call in (
        lambda: source.download(presigned, "0" * 64, tmp_path / "a", allowed=LOOPBACK),
        lambda: source.download(presigned.replace("code", "gone"), None, tmp_path / "b",
                                allowed=LOOPBACK),
        lambda: source.download(presigned, None, tmp_path / "c"),
    ):  # fmt: skip
        with pytest.raises(BuildError) as err:
            call()
        assert "s3cr3t" not in str(err.value)
        assert "X-Amz" not in str(err.value)
        assert f"{url}/" in str(err.value)


def test_an_archive_on_a_loopback_address_is_refused_unless_the_admin_allows_it(
    served: tuple[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    url, www = served
    (www / "code.zip").write_bytes(b"x")
    with pytest.raises(BuildError) as err:
        source.download(f"{url}/code.zip", None, tmp_path / "archive")
    assert "127.0.0.1, a loopback address" in str(err.value)
    assert "builder.archives.allowedCIDRs" in str(err.value)
    assert not (tmp_path / "archive").exists()


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


# --- unpacking within bounds -------------------------------------------------------------------

MIB = 2**20
#: Small bounds, so that a bomb a few KiB big is one.
SMALL = Bounds(max_bytes=1 * MIB, max_files=10)


def _bytes_under(code: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in code.rglob("*") if p.is_file())


def _zip_bomb(unpacked: int) -> bytes:
    """One member of ``unpacked`` zero bytes, deflated to a few KiB."""
    buf = io.BytesIO()
    with (
        zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
        zf.open("zeros.bin", "w") as member,
    ):
        for _ in range(unpacked // MIB):
            member.write(bytes(MIB))
    return buf.getvalue()


def test_a_zip_bomb_stops_at_the_unpacked_bound_naming_it_without_writing_past_it(
    tmp_path: pathlib.Path,
) -> None:
    bomb = _zip_bomb(64 * MIB)
    assert len(bomb) < 128 * 1024, "a bomb: over 500 times smaller than what it unpacks to"
    archive = tmp_path / "bomb.zip"
    archive.write_bytes(bomb)
    with pytest.raises(BuildError) as err:
        source.unpack(archive, tmp_path / "code", SMALL)
    assert str(err.value) == (
        "the archive unpacks to more than 1 MiB, the most a build unpacks (the chart's "
        "builder.archives.maxUnpackedMiB); stopped before writing past it"
    )
    assert _bytes_under(tmp_path / "code") <= SMALL.max_bytes


def test_a_zip_member_that_understates_its_size_is_still_stopped_at_the_bound(
    tmp_path: pathlib.Path,
) -> None:
    bomb = bytearray(_zip_bomb(8 * MIB))
    # Rewrite the declared size (local header and central directory) to 1 KiB: zipfile then
    # stops at the declared size and fails the CRC, so nothing past the bound is written.
    size = (8 * MIB).to_bytes(4, "little")
    assert bomb.count(size) == 2
    archive = tmp_path / "liar.zip"
    archive.write_bytes(bytes(bomb).replace(size, (1024).to_bytes(4, "little")))
    with pytest.raises(BuildError, match="not a valid zip archive: Bad CRC-32"):
        source.unpack(archive, tmp_path / "code", SMALL)
    assert _bytes_under(tmp_path / "code") <= SMALL.max_bytes


def _zip(count: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(count):
            zf.writestr(f"f{i:03d}.txt", "x")
    return buf.getvalue()


def test_a_zip_of_more_files_than_allowed_is_refused_before_anything_is_written(
    tmp_path: pathlib.Path,
) -> None:
    archive = tmp_path / "many.zip"
    archive.write_bytes(_zip(11))
    with pytest.raises(BuildError) as err:
        source.unpack(archive, tmp_path / "code", SMALL)
    assert str(err.value) == (
        "the archive holds more than 10 files and directories, the most a build unpacks "
        "(the chart's builder.archives.maxFiles)"
    )
    assert list((tmp_path / "code").iterdir()) == []


def test_a_zip_whose_end_record_understates_its_entries_is_stopped_while_unpacking(
    tmp_path: pathlib.Path,
) -> None:
    data = bytearray(_zip(30))
    end = data.rfind(b"PK\x05\x06")
    data[end + 8 : end + 12] = (1).to_bytes(2, "little") * 2  # entries: on this disk, in all
    archive = tmp_path / "liar.zip"
    archive.write_bytes(bytes(data))
    with pytest.raises(BuildError, match="more than 10 files"):
        source.unpack(archive, tmp_path / "code", SMALL)
    assert len(list((tmp_path / "code").iterdir())) == 10


def test_a_zip_whose_central_directory_is_too_large_for_the_bound_is_refused(
    tmp_path: pathlib.Path,
) -> None:
    archive = tmp_path / "long-names.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(3):
            zf.writestr(f"{i}/" + "n" * 60_000, "x")
    archive.write_bytes(buf.getvalue())
    with pytest.raises(BuildError, match="more than 10 files"):
        source.unpack(archive, tmp_path / "code", Bounds(max_bytes=MIB, max_files=10))


def _tar_bomb(unpacked: int, compression: str) -> bytes:
    """One member of ``unpacked`` zero bytes, compressed."""

    class Zeros:
        def __init__(self) -> None:
            self.left = unpacked

        def read(self, size: int) -> bytes:
            n = min(size, self.left)
            self.left -= n
            return bytes(n)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compression}") as tf:
        info = tarfile.TarInfo("zeros.bin")
        info.size = unpacked
        tf.addfile(info, Zeros())  # type: ignore[arg-type]
    return buf.getvalue()


@pytest.mark.parametrize("compression", ["gz", "bz2", "xz"])
def test_a_tar_bomb_stops_at_the_unpacked_bound_naming_it_without_writing_past_it(
    tmp_path: pathlib.Path, compression: str
) -> None:
    bomb = _tar_bomb(32 * MIB, compression)
    assert len(bomb) < 256 * 1024
    archive = tmp_path / "bomb.tar"
    archive.write_bytes(bomb)
    with pytest.raises(BuildError, match=r"unpacks to more than 1 MiB, .*maxUnpackedMiB"):
        source.unpack(archive, tmp_path / "code", SMALL)
    assert _bytes_under(tmp_path / "code") <= SMALL.max_bytes


def test_a_tar_of_more_entries_than_allowed_is_stopped_counting_directories_too(
    tmp_path: pathlib.Path,
) -> None:
    members = []
    for i in range(11):
        directory = tarfile.TarInfo(f"d{i}")
        directory.type = tarfile.DIRTYPE
        members.append(directory)
    archive = tmp_path / "dirs.tar.gz"
    archive.write_bytes(_tar(members, {}))
    with pytest.raises(BuildError, match="more than 10 files and directories"):
        source.unpack(archive, tmp_path / "code", SMALL)


def test_a_tar_header_larger_than_any_real_one_is_refused_before_it_is_read(
    tmp_path: pathlib.Path,
) -> None:
    info = tarfile.TarInfo("a.txt")
    info.pax_headers = {"comment": "x" * (source.MAX_HEADER_BYTES + 1)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tf:
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    archive = tmp_path / "header.tar.gz"
    archive.write_bytes(buf.getvalue())
    with pytest.raises(BuildError, match=r"a header of \d+ bytes; headers are at most 1 MiB"):
        source.unpack(archive, tmp_path / "code", SMALL)


def test_an_archive_within_its_bounds_unpacks_whole(tmp_path: pathlib.Path) -> None:
    data = {f"f{i}.txt": bytes(100 * 1024) for i in range(8)}
    members = [tarfile.TarInfo(name) for name in data]
    archive = tmp_path / "fits.tar.gz"
    archive.write_bytes(_tar(members, data))
    files = source.unpack(archive, tmp_path / "code", SMALL)
    assert files == sorted(data)
    assert _bytes_under(tmp_path / "code") == 800 * 1024


def test_the_default_bounds_are_512_mib_and_20000_files() -> None:
    assert Bounds() == Bounds(max_bytes=512 * MIB, max_files=20_000)


def test_an_archive_that_is_neither_zip_nor_tar_is_a_build_error(tmp_path: pathlib.Path) -> None:
    archive = tmp_path / "text"
    archive.write_bytes(b"just some text, not an archive\n" * 100)
    with pytest.raises(BuildError, match="neither a zip nor a tar archive"):
        source.unpack(archive, tmp_path / "code", SMALL)
