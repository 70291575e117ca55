"""Getting the function's code into the workspace: a mounted ConfigMap, or a checked archive.

An archive is a user's input and is handled as hostile until it is unpacked:

* it is fetched only from addresses the URL rules allow (:mod:`kfn.builder.fetch`), at most
  :data:`MAX_ARCHIVE_BYTES` of it, and refused unless its SHA-256 is the one in the spec;
* it is unpacked within :class:`Bounds` (bytes written, entries), counted while it streams, so
  a decompression bomb ends the build at the bound with a message naming it and memory stays
  flat whatever the archive claims: members are copied in chunks, a zip's central directory is
  sized from its end record before :mod:`zipfile` reads it, a tar's extended headers are held
  to :data:`MAX_HEADER_BYTES` and its decompressed stream to what the bounds let through;
* no member lands outside the code directory, and links and devices are refused.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import http.client
import io
import lzma
import pathlib
import shutil
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Sequence
from typing import IO, Final, Protocol

from kfn import urls
from kfn.builder import fetch
from kfn.builder.config import Bounds, BuildError

#: Larger downloads are refused: Lambda's own limit for unpacked code is 250 MB.
MAX_ARCHIVE_BYTES: Final = 256 * 2**20
#: The largest tar extended header (pax, GNU long name) read: tarfile holds one whole in memory.
MAX_HEADER_BYTES: Final = 2**20
#: Bytes of a zip's central directory one entry may take (46 + name + extra + comment).
MAX_DIRECTORY_ENTRY_BYTES: Final = 4096
#: Bytes of a tar stream per entry beyond its data: header, padding, pax records.
TAR_ENTRY_OVERHEAD: Final = 4096
_CHUNK: Final = 1 << 16


def copy_mounted(mount: pathlib.Path, code: pathlib.Path) -> list[str]:
    """Copies the files of a mounted ConfigMap volume, as plain files, into ``code``.

    The kubelet presents a ConfigMap as symbolic links into a hidden ``..data`` directory;
    the links are followed so the layer holds the files themselves, and the hidden entries
    are left out. Returns the relative paths copied.
    """
    code.mkdir(parents=True, exist_ok=True)
    copied: list[str] = []
    for entry in sorted(mount.iterdir()):
        if entry.name.startswith(".."):
            continue
        target = code / entry.name
        if entry.is_dir():
            shutil.copytree(entry, target, symlinks=False, dirs_exist_ok=True)
        else:
            shutil.copyfile(entry, target)
    for path in sorted(code.rglob("*")):
        if path.is_file():
            path.chmod(0o644)
            copied.append(path.relative_to(code).as_posix())
        elif path.is_dir():
            path.chmod(0o755)
    return copied


def download(
    url: str,
    expected_sha256: str | None,
    dest: pathlib.Path,
    *,
    allowed: Sequence[urls.Network] = (),
    timeout: float = 60,
) -> str:
    """Downloads ``url`` to ``dest`` and checks its SHA-256; returns the digest.

    ``allowed`` are the networks the admin lets builds fetch from although the URL rules would
    refuse them. A mismatch is a build failure naming both digests: the build is keyed by the
    digest in the spec, so a different archive must never be built under it.
    """
    shown = urls.redact(url)
    sha = hashlib.sha256()
    size = 0
    too_large = BuildError(f"archive {shown} is larger than {MAX_ARCHIVE_BYTES // 2**20} MiB")
    try:
        with fetch.get(url, allowed=allowed, timeout=timeout) as resp, dest.open("wb") as out:
            declared = resp.getheader("Content-Length") or ""
            if declared.isdigit() and int(declared) > MAX_ARCHIVE_BYTES:
                raise too_large
            while chunk := resp.read(_CHUNK):
                size += len(chunk)
                if size > MAX_ARCHIVE_BYTES:
                    raise too_large
                sha.update(chunk)
                out.write(chunk)
    except (OSError, http.client.HTTPException) as exc:
        raise BuildError(f"downloading the archive {shown} failed: {exc}") from exc
    actual = sha.hexdigest()
    if expected_sha256 is not None and actual != expected_sha256.lower():
        raise BuildError(
            f"archive sha256 mismatch: {shown} has sha256 {actual}, "
            f"the Function expects {expected_sha256}; refusing to build it"
        )
    return actual


class _Budget:
    """What an archive has unpacked so far, against its :class:`Bounds`."""

    def __init__(self, bounds: Bounds) -> None:
        self.bounds = bounds
        self.bytes = 0
        self.entries = 0

    def entry(self) -> None:
        self.entries += 1
        if self.entries > self.bounds.max_files:
            raise self.bounds.too_many()

    def expect(self, size: int) -> None:
        """A member that says it is ``size`` bytes: refused at once if that is too much."""
        if self.bytes + size > self.bounds.max_bytes:
            raise self.bounds.too_large()

    def take(self, size: int) -> None:
        """``size`` more bytes about to be written."""
        self.expect(size)
        self.bytes += size


def unpack(archive: pathlib.Path, code: pathlib.Path, bounds: Bounds | None = None) -> list[str]:
    """Unpacks a zip or (gzip/bzip2/xz) tar archive into ``code``; returns the files.

    Members are written one by one, in chunks, within ``bounds``: absolute names, ``..``
    segments and links are refused, so nothing lands outside ``code``. Modes are normalised to
    0644 (0755 when executable).
    """
    budget = _Budget(bounds or Bounds())
    code.mkdir(parents=True, exist_ok=True)
    with archive.open("rb") as f:
        magic = f.read(6)
    if magic.startswith(b"PK"):
        files = _unpack_zip(archive, code, budget)
    else:
        files = _unpack_tar(archive, code, budget, magic)
    if not files:
        raise BuildError("the archive holds no files")
    return sorted(files)


_EOCD: Final = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR: Final = struct.Struct("<4sLQL")
_EOCD64: Final = struct.Struct("<4sQ2H2L4Q")


def _zip_directory(archive: pathlib.Path) -> tuple[int, int] | None:
    """The entries and central directory bytes a zip's end record declares (zip64 too), or
    None when there is no end record (:mod:`zipfile` then says what is wrong)."""
    size = archive.stat().st_size
    with archive.open("rb") as f:
        f.seek(max(0, size - _EOCD.size - 0xFFFF))
        tail = f.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + _EOCD.size > len(tail):
            return None
        entries, directory = _EOCD.unpack_from(tail, at)[4:6]
        locator = at - _EOCD64_LOCATOR.size
        if (entries == 0xFFFF or directory == 0xFFFFFFFF) and locator >= 0:
            signature, _, offset, _ = _EOCD64_LOCATOR.unpack_from(tail, locator)
            if signature == b"PK\x06\x07":
                f.seek(offset)
                record = f.read(_EOCD64.size)
                if len(record) == _EOCD64.size and record.startswith(b"PK\x06\x06"):
                    entries, directory = _EOCD64.unpack(record)[7:9]
    return int(entries), int(directory)


def _unpack_zip(archive: pathlib.Path, code: pathlib.Path, budget: _Budget) -> list[str]:
    """A zip's files, its central directory sized before :mod:`zipfile` reads it whole."""
    declared = _zip_directory(archive)
    if declared is not None:
        entries, directory = declared
        if entries > budget.bounds.max_files:
            raise budget.bounds.too_many()
        if directory > budget.bounds.max_files * MAX_DIRECTORY_ENTRY_BYTES:
            raise budget.bounds.too_many()
    files = []
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                budget.entry()
                if info.is_dir():
                    continue
                budget.expect(info.file_size)
                mode = (info.external_attr >> 16) & 0o777
                with zf.open(info) as src:
                    files.append(_write_member(code, info.filename, src, mode, budget))
    except BuildError:
        raise
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError) as exc:
        raise BuildError(f"the archive is not a valid zip archive: {exc}") from exc
    except (NotImplementedError, RuntimeError) as exc:  # a compression or encryption it lacks
        raise BuildError(f"the zip archive cannot be unpacked: {exc}") from exc
    return files


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _decompressed(raw: IO[bytes], magic: bytes) -> _Readable:
    """``raw`` decompressed by what its first bytes say (gzip, bzip2, xz), or as it is."""
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(raw)
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw)
    return raw


#: tar member types whose data tarfile reads into memory whole, as headers of the next member.
_HEADER_TYPES: Final = frozenset(
    {
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
    }
)


class _BoundedTarInfo(tarfile.TarInfo):
    """A tar member whose extended header is at most :data:`MAX_HEADER_BYTES`.

    tarfile reads a pax header or a GNU long name whole before it hands out the member it
    describes; ``_proc_member`` is the hook tarfile leaves for subclasses to process members.
    """

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _HEADER_TYPES and self.size > MAX_HEADER_BYTES:
            raise BuildError(
                f"the archive has a header of {self.size} bytes; headers are at most "
                f"{MAX_HEADER_BYTES // 2**20} MiB"
            )
        member: tarfile.TarInfo = super()._proc_member(tar)  # type: ignore[misc]
        return member


class _Capped(io.RawIOBase):
    """A stream that ends the build once more than ``cap`` bytes were read through it."""

    def __init__(self, inner: _Readable, cap: int, too_large: BuildError) -> None:
        self.inner = inner
        self.cap = cap
        self.used = 0
        self.too_large = too_large

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        room = self.cap - self.used + 1
        data = self.inner.read(room if size is None or size < 0 else min(size, room))
        self.used += len(data)
        if self.used > self.cap:
            raise self.too_large
        return data


def _unpack_tar(
    archive: pathlib.Path, code: pathlib.Path, budget: _Budget, magic: bytes
) -> list[str]:
    """A tar's regular files, read as a stream; a link or device member is refused."""
    bounds = budget.bounds
    cap = bounds.max_bytes + (bounds.max_files + 16) * TAR_ENTRY_OVERHEAD
    files = []
    with archive.open("rb") as raw:
        stream = _Capped(_decompressed(raw, magic), cap, bounds.too_large())
        try:
            with tarfile.open(fileobj=stream, mode="r|", tarinfo=_BoundedTarInfo) as tf:
                for member in tf:
                    budget.entry()
                    if member.isdir():
                        continue
                    if not member.isfile():
                        raise BuildError(f"archive member {member.name} is a link or device")
                    budget.expect(member.size)
                    data = tf.extractfile(member)
                    assert data is not None
                    files.append(_write_member(code, member.name, data, member.mode, budget))
        except BuildError:
            raise
        except (tarfile.TarError, zlib.error, lzma.LZMAError, EOFError, OSError) as exc:
            raise BuildError(f"the archive is neither a zip nor a tar archive: {exc}") from exc
        except RecursionError as exc:  # a chain of headers, each for the next
            raise BuildError("the archive is not a tar archive kfn unpacks") from exc
    return files


def _write_member(
    code: pathlib.Path, name: str, data: IO[bytes], mode: int, budget: _Budget
) -> str:
    """Copies one member to its place below ``code``, counting every byte before writing it."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts or not parts:
        raise BuildError(f"archive member {name!r} would be written outside the code directory")
    target = code.joinpath(*parts)
    for parent in reversed(target.relative_to(code).parents):
        directory = code / parent
        directory.mkdir(exist_ok=True)
        directory.chmod(0o755)
    with io.FileIO(target, "w") as out:
        while chunk := data.read(_CHUNK):
            budget.take(len(chunk))
            try:
                out.write(chunk)
            except OSError as exc:
                raise BuildError(f"writing {'/'.join(parts)} failed: {exc}") from exc
    target.chmod(0o755 if mode & stat.S_IXUSR else 0o644)
    return "/".join(parts)
