"""Extracts a function's image layers into a pool pod's writable directories (pool mode).

A layer may only fill the directories a pool pod has as empty volumes: ``var/task/`` (the task
root) and ``opt/python/`` / ``opt/nodejs/`` (the dependencies). Every entry is checked before it
is written (:func:`place`, pure, then against the disk as it is at that moment), and written
through :mod:`tarfile`'s ``data`` filter where the Python has it (3.11.4 and later), which checks
the same again. Anything else refuses the whole layer with :class:`LayerError` naming the entry:
an entry elsewhere, an absolute or ``..`` path, a link leading out of its directory, a device,
a FIFO, an OCI whiteout. Regular files keep their modes as the ``data`` filter keeps them: no
setuid, setgid or sticky bit, no write bit for group and others, always readable and writable by
their owner; directories get the process's default mode.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import posixpath
import tarfile
import zlib
from collections.abc import Mapping
from typing import Literal

MEDIA_TAR = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPES = (MEDIA_TAR_GZIP, MEDIA_TAR)

#: The layer paths a pool pod can write to; each maps to a directory (:func:`roots`).
PREFIXES = ("var/task", "opt/python", "opt/nodejs")
#: Directory entries of the layout itself, skipped ("" is the layer's root, ``./``).
BARE_DIRECTORIES = frozenset({"", "var", "opt", *PREFIXES})
WHITEOUT_PREFIX = ".wh."

#: Whether this Python's tarfile has extraction filters (PEP 706), and what they raise.
_HAS_FILTERS = hasattr(tarfile, "data_filter")
_FILTERED: tuple[type[Exception], ...] = (tarfile.FilterError,) if _HAS_FILTERS else ()


class LayerError(Exception):
    """The layer cannot be used; the message names the entry and why."""


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where one entry goes: ``path`` below the directory of ``prefix``, and for a hard link
    the path of its target below the same directory."""

    prefix: str
    path: str
    link: str | None = None


def roots(environ: Mapping[str, str]) -> dict[str, str]:
    """The directory of each prefix: ``LAMBDA_TASK_ROOT`` (default ``/var/task``) and
    ``python``/``nodejs`` in ``KFN_OPT_ROOT`` (default ``/opt``; another only in tests)."""
    opt = environ.get("KFN_OPT_ROOT") or "/opt"
    return {
        "var/task": environ.get("LAMBDA_TASK_ROOT") or "/var/task",
        "opt/python": os.path.join(opt, "python"),
        "opt/nodejs": os.path.join(opt, "nodejs"),
    }


def _split(name: str, member: str) -> list[str]:
    """The parts of an archive path; an absolute or ``..`` path is refused."""
    if name.startswith("/"):
        raise LayerError(f"{member}: an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"{member}: a path with '..'")
    return parts


def _below(parts: list[str], member: str) -> tuple[str, str]:
    """The prefix ``parts`` are under and the path below it."""
    path = "/".join(parts)
    for prefix in PREFIXES:
        if path.startswith(prefix + "/"):
            return prefix, path[len(prefix) + 1 :]
    raise LayerError(f"{member}: outside {', '.join(p + '/' for p in PREFIXES)}")


def place(member: tarfile.TarInfo) -> Placement | None:
    """Where ``member`` is written, None for a directory of the layout itself; raises
    :class:`LayerError` for an entry a pool pod must not take. Decides on the names alone;
    :func:`extract` checks the disk too."""
    name = member.name
    parts = _split(name, name)
    if any(part.startswith(WHITEOUT_PREFIX) for part in parts):
        raise LayerError(f"{name}: an OCI whiteout")
    if member.isdir() and "/".join(parts) in BARE_DIRECTORIES:
        return None
    if not (member.isdir() or member.isreg() or member.issym() or member.islnk()):
        raise LayerError(f"{name}: a device, FIFO or other special file")
    prefix, path = _below(parts, name)
    if member.issym():
        if member.linkname.startswith("/"):
            raise LayerError(f"{name}: a link to an absolute path ({member.linkname})")
        target = posixpath.normpath(posixpath.join(posixpath.dirname(path), member.linkname))
        if target == ".." or target.startswith("../"):
            raise LayerError(f"{name}: a link pointing outside {prefix}/ ({member.linkname})")
    if member.islnk():
        link_prefix, link = _below(_split(member.linkname, name), name)
        if link_prefix != prefix:
            raise LayerError(f"{name}: a link pointing outside {prefix}/ ({member.linkname})")
        return Placement(prefix, path, link)
    return Placement(prefix, path)


def extract(archive: str, media_type: str, directories: Mapping[str, str]) -> None:
    """Extracts the layer in file ``archive`` (``media_type`` says whether it is gzipped) into
    ``directories`` (:func:`roots`), a later entry over an earlier one as a later layer's
    files are over an earlier one's. Raises :class:`LayerError`; entries before the bad one
    are left written (a pod that got one is spent)."""
    current = "the archive"
    try:
        mode: Literal["r:gz", "r:"] = "r:gz" if media_type == MEDIA_TAR_GZIP else "r:"
        with tarfile.open(archive, mode) as tar:
            for member in tar:
                current = member.name
                placed = place(member)
                if placed is not None:
                    _extract_one(tar, member, placed, directories[placed.prefix])
    except _FILTERED as exc:
        raise LayerError(f"{current}: {exc}") from exc
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise LayerError(f"{current}: not a readable {_kind(media_type)}: {exc}") from exc
    except OSError as exc:
        raise LayerError(f"{current}: {exc.strerror or exc}") from exc


def _kind(media_type: str) -> str:
    return "gzipped tar" if media_type == MEDIA_TAR_GZIP else "tar"


def _inside(real_root: str, path: str) -> bool:
    """Whether ``path``, its links followed, is ``real_root`` or below it."""
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def _extract_one(
    tar: tarfile.TarFile, member: tarfile.TarInfo, placed: Placement, root: str
) -> None:
    """Writes one entry below ``root``, after checking that links already written there
    (by this layer or an earlier one) do not lead it out."""
    os.makedirs(root, exist_ok=True)
    real_root = os.path.realpath(root)
    target = os.path.join(root, placed.path)
    outside = f"{member.name}: a link pointing outside {placed.prefix}/"
    if not _inside(real_root, os.path.dirname(target)):
        raise LayerError(
            f"{member.name}: its directory is a link pointing outside {placed.prefix}/"
        )
    if member.issym() and not _inside(
        real_root, os.path.join(os.path.dirname(target), member.linkname)
    ):
        raise LayerError(f"{outside} ({member.linkname})")
    if placed.link is not None and not _inside(real_root, os.path.join(root, placed.link)):
        raise LayerError(f"{outside} ({member.linkname})")
    replaced = os.path.lexists(target) and not (os.path.isdir(target) and member.isdir())
    if replaced:
        if os.path.isdir(target) and not os.path.islink(target):
            raise LayerError(f"{member.name}: a directory of an earlier entry is in the way")
        os.unlink(target)
    if member.isdir():
        os.makedirs(target, exist_ok=True)
        return
    entry = copy.copy(member)
    entry.name = placed.path
    if placed.link is not None:
        entry.linkname = placed.link
    entry.mode = file_mode(member.mode)
    # Owned by the process (root in a test): never by the archive's user.
    entry.uid, entry.gid, entry.uname, entry.gname = os.getuid(), os.getgid(), "", ""
    if _HAS_FILTERS:
        tar.extract(entry, root, filter="data")
    else:
        tar.extract(entry, root)


def file_mode(mode: int) -> int:
    """A regular file's mode as the ``data`` filter leaves it: no setuid, setgid or sticky bit,
    no group or other write, owner read and write, and no execute bit at all unless the owner
    had one."""
    mode &= 0o755
    if not mode & 0o100:
        mode &= ~0o111
    return mode | 0o600
