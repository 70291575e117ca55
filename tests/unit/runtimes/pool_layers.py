"""What the pool-mode tests of both runtimes (CONTRACT.md §13) build and start alike: image
layers as real tar archives, the body of ``POST /_kfn/specialise`` that carries them, and the
life of a pool runtime fixture. Each runtime's test file keeps what is its own: the Python one
puts the builder's bare directories before its entries, the Node.js one its handler's code,
its long names in each tar format and its damaged archives."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol, TypeVar

import pytest

from .conftest import Interpreter, RunningRuntime, find_interpreter, language_of

TAR = "application/vnd.oci.image.layer.v1.tar"
TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
#: The owner of every entry: a builder's user, not the pod's, whom the runtime must not keep.
OWNER = 4242

Descriptor = dict[str, str | int]


@dataclasses.dataclass(frozen=True)
class Entry:
    """One tar entry: a regular file (``data``) by default, else a directory, a symbolic or
    hard link (to ``linkname``), a device or a FIFO."""

    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    linkname: str = ""
    mode: int = 0o644


def file(name: str, text: str, mode: int = 0o644) -> Entry:
    return Entry(name, text.encode(), mode=mode)


def digest_of(blob: bytes) -> str:
    return "sha256:" + hashlib.sha256(blob).hexdigest()


@dataclasses.dataclass(frozen=True)
class Layer:
    """A layer's bytes and the media type its descriptor gives them."""

    blob: bytes
    media_type: str = TAR_GZIP

    @property
    def digest(self) -> str:
        return digest_of(self.blob)

    def descriptor(self) -> Descriptor:
        """The layer as the request's JSON line lists it, its digest and size true."""
        return {"digest": self.digest, "size": len(self.blob), "mediaType": self.media_type}


def layer(*entries: Entry, fmt: int = tarfile.PAX_FORMAT, gzipped: bool = True) -> Layer:
    """A layer of ``entries`` and nothing else, a tar archive of ``fmt`` (gzipped unless told),
    each entry owned by ``OWNER``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type, info.linkname, info.mode = entry.type, entry.linkname, entry.mode
            info.size = len(entry.data) if entry.type == tarfile.REGTYPE else 0
            info.uid = info.gid = OWNER
            archive.addfile(info, io.BytesIO(entry.data) if info.size else None)
    if not gzipped:
        return Layer(raw.getvalue(), TAR)
    return Layer(gzip.compress(raw.getvalue()), TAR_GZIP)


def specialise_body(
    handler: str,
    env: Mapping[str, str],
    layers: Sequence[Layer],
    descriptors: Sequence[Descriptor] | None = None,
) -> bytes:
    """The request body: the JSON line, then the layers' blobs; ``descriptors`` replaces the
    layers' true ones."""
    listed = [x.descriptor() for x in layers] if descriptors is None else list(descriptors)
    line = json.dumps({"handler": handler, "env": dict(env), "layers": listed}) + "\n"
    return line.encode() + b"".join(x.blob for x in layers)


class PoolRuntime(Protocol):
    """What a test's pool pod holds at least: its runtime process."""

    @property
    def runtime(self) -> RunningRuntime: ...


P = TypeVar("P", bound=PoolRuntime)


def starting(
    runtime: str, language: str, skipped: str, start: Callable[[Interpreter, dict[str, str]], P]
) -> Iterator[Callable[..., P]]:
    """A ``start_pool`` fixture's life, for ``yield from``: skips a runtime of another language
    than ``language`` (saying ``skipped``) and one whose interpreter this machine lacks; yields
    ``start_pool(**env)``, which has ``start`` start a pool pod on the runtime's interpreter
    with ``env``; kills every pod's runtime at teardown."""
    if language_of(runtime) != language:
        pytest.skip(skipped)
    found = find_interpreter(runtime)
    if isinstance(found, str):
        pytest.skip(found)
    started: list[P] = []

    def starter(**env: str) -> P:
        pod = start(found, env)
        started.append(pod)
        return pod

    yield starter
    for pod in started:
        pod.runtime.stop()
