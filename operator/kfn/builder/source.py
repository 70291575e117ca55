"""Getting the function's code into the workspace: a mounted ConfigMap, or a checked archive."""

from __future__ import annotations

import hashlib
import io
import pathlib
import shutil
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile

from kfn.builder.config import BuildError

#: Larger downloads are refused: Lambda's own limit for unpacked code is 250 MB.
MAX_ARCHIVE_BYTES = 256 * 2**20
_CHUNK = 1 << 16


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


def download(url: str, expected_sha256: str | None, dest: pathlib.Path, timeout: float = 60) -> str:
    """Downloads ``url`` to ``dest`` and checks its SHA-256; returns the digest.

    A mismatch is a build failure naming both digests: the build is keyed by the digest in the
    spec, so a different archive must never be built under it.
    """
    sha = hashlib.sha256()
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, dest.open("wb") as out:  # noqa: S310 - http(s) only, checked by the API schema
            while chunk := resp.read(_CHUNK):
                size += len(chunk)
                if size > MAX_ARCHIVE_BYTES:
                    raise BuildError(
                        f"archive {url} is larger than {MAX_ARCHIVE_BYTES // 2**20} MiB"
                    )
                sha.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        raise BuildError(f"downloading the archive {url} failed: {exc}") from exc
    actual = sha.hexdigest()
    if expected_sha256 is not None and actual != expected_sha256.lower():
        raise BuildError(
            f"archive sha256 mismatch: {url} has sha256 {actual}, "
            f"the Function expects {expected_sha256}; refusing to build it"
        )
    return actual


def unpack(archive: pathlib.Path, code: pathlib.Path) -> list[str]:
    """Unpacks a zip or (gzip/bzip2/xz) tar archive into ``code``; returns the files.

    Members are written one by one: absolute names, ``..`` segments and links are refused, so
    nothing lands outside ``code``. Modes are normalised to 0644 (0755 when executable).
    """
    code.mkdir(parents=True, exist_ok=True)
    with archive.open("rb") as f:
        magic = f.read(4)
    files: list[str] = []
    if magic.startswith(b"PK"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                mode = (info.external_attr >> 16) & 0o777
                files.append(_write_member(code, info.filename, zf.read(info), mode))
    else:
        try:
            tar_members = _tar_members(archive)
        except tarfile.TarError as exc:
            raise BuildError(f"the archive is neither a zip nor a tar archive: {exc}") from exc
        for name, data, mode in tar_members:
            files.append(_write_member(code, name, data, mode))
    if not files:
        raise BuildError("the archive holds no files")
    return sorted(files)


def _tar_members(archive: pathlib.Path) -> list[tuple[str, bytes, int]]:
    """The regular files of a tar archive; a link or device member is refused."""
    found = []
    with tarfile.open(archive, mode="r:*") as tf:
        for member in tf:
            if member.isdir():
                continue
            if not member.isfile():
                raise BuildError(f"archive member {member.name} is a link or device")
            data = tf.extractfile(member)
            assert data is not None
            found.append((member.name, data.read(), member.mode))
    return found


def _write_member(code: pathlib.Path, name: str, data: bytes, mode: int) -> str:
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts or not parts:
        raise BuildError(f"archive member {name!r} would be written outside the code directory")
    target = code.joinpath(*parts)
    for parent in reversed(target.relative_to(code).parents):
        directory = code / parent
        directory.mkdir(exist_ok=True)
        directory.chmod(0o755)
    with io.FileIO(target, "w") as out:
        out.write(data)
    target.chmod(0o755 if mode & stat.S_IXUSR else 0o644)
    return "/".join(parts)
