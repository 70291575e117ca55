"""Pool mode (``KFN_POOL=1``, CONTRACT.md §13): a runtime with no function yet, which becomes
one when ``POST /_kfn/specialise`` brings its handler, environment and image layers.

This module reads that request: its JSON line (:func:`parse`, pure), then the layer blobs,
each into a file under the temporary directory whose sha256 is checked while it is read and
only then extracted (:mod:`kfn_runtime.layers`), one blob at a time; and it computes the
function's environment (:func:`environment`, pure). The server (:mod:`kfn_runtime.server`) then
loads the handler as a normal start does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import importlib
import json
import os
import re
import tempfile
from collections.abc import Mapping, MutableMapping
from typing import Any

from kfn_runtime import http11, layers

#: The variable that starts a runtime in pool mode, and is gone once it is specialised.
VARIABLE = "KFN_POOL"
#: On readiness answers of a pool pod that is no function (yet): ``idle``, ``specialising``,
#: ``spent``.
HEADER = "Kfn-Pool"
#: The request's first line, the JSON, with its ``\n``, is at most this long.
MAX_LINE_BYTES = 1024 * 1024
#: The layers' sizes may sum to this, unless ``KFN_POOL_MAX_LAYER_BYTES`` says otherwise.
DEFAULT_MAX_LAYER_BYTES = 512 * 1024 * 1024
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_READ_BYTES = 1024 * 1024


class RefusedError(Exception):
    """The specialise request cannot be carried out: answer ``status`` with the message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class Layer:
    digest: str
    size: int
    media_type: str


@dataclasses.dataclass(frozen=True)
class Request:
    """The JSON line of ``POST /_kfn/specialise``."""

    handler: str
    env: dict[str, str]
    layers: tuple[Layer, ...]

    @property
    def layer_bytes(self) -> int:
        return sum(layer.size for layer in self.layers)


def enabled(environ: Mapping[str, str]) -> bool:
    return environ.get(VARIABLE, "").strip() == "1"


def max_layer_bytes(environ: Mapping[str, str]) -> int:
    raw = environ.get("KFN_POOL_MAX_LAYER_BYTES", "").strip()
    return int(raw) if raw.isdigit() else DEFAULT_MAX_LAYER_BYTES


def parse(line: bytes, max_bytes: int) -> Request:
    """The request the JSON line describes; raises :class:`RefusedError` (400, or 413 when its
    layers sum to more than ``max_bytes``)."""
    try:
        data = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RefusedError(400, f"the first line is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RefusedError(400, "the first line is not a JSON object")
    handler = data.get("handler")
    if not isinstance(handler, str) or not handler:
        raise RefusedError(400, "'handler' must be a non-empty string")
    env = _env(data.get("env", {}))
    raw_layers = data.get("layers", [])
    if not isinstance(raw_layers, list):
        raise RefusedError(400, "'layers' must be a list")
    found = tuple(_layer(i, raw) for i, raw in enumerate(raw_layers))
    request = Request(handler, env, found)
    if request.layer_bytes > max_bytes:
        raise RefusedError(
            413, f"the layers' {request.layer_bytes} bytes are over the {max_bytes} allowed"
        )
    return request


def _env(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise RefusedError(400, "'env' must be an object of strings")
    for name, value in raw.items():
        if not name or "=" in name or "\0" in name:
            raise RefusedError(400, f"'env' has a variable name no process can have: {name!r}")
        if not isinstance(value, str) or "\0" in value:
            raise RefusedError(400, f"'env' {name}: the value must be a string without NUL")
    return dict(raw)


def _layer(index: int, raw: Any) -> Layer:
    where = f"'layers'[{index}]"
    if not isinstance(raw, dict):
        raise RefusedError(400, f"{where} must be an object")
    digest, size, media_type = raw.get("digest"), raw.get("size"), raw.get("mediaType")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise RefusedError(400, f"{where}: 'digest' must be sha256:<64 hex digits>")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise RefusedError(400, f"{where} {digest}: 'size' must be a number of bytes")
    if media_type not in layers.MEDIA_TYPES:
        raise RefusedError(
            400, f"{where} {digest}: 'mediaType' must be one of {', '.join(layers.MEDIA_TYPES)}"
        )
    return Layer(digest, size, str(media_type))


def environment(pod: Mapping[str, str], given: Mapping[str, str]) -> dict[str, str]:
    """The function's environment: the pod's without ``KFN_POOL``, updated with ``given``."""
    env = {name: value for name, value in pod.items() if name != VARIABLE}
    env.update(given)
    return env


def replace_environ(environ: MutableMapping[str, str], new: Mapping[str, str]) -> None:
    """Makes ``environ`` (``os.environ``, whose changes reach child processes) exactly ``new``."""
    for name in [name for name in environ if name not in new]:
        del environ[name]
    for name, value in new.items():
        if environ.get(name) != value:
            environ[name] = value


async def read_request(body: http11.BodyReader, max_bytes: int) -> Request:
    """The request's JSON line, checked against the body's length when it has one."""
    line = await body.readline(MAX_LINE_BYTES)
    if line is None:
        raise RefusedError(400, f"the body has no JSON line of at most {MAX_LINE_BYTES} bytes")
    request = parse(line, max_bytes)
    expected = len(line) + request.layer_bytes
    if body.length is not None and body.length != expected:
        raise RefusedError(
            400,
            f"Content-Length {body.length} is not the JSON line's {len(line)} bytes plus the "
            f"layers' {request.layer_bytes}",
        )
    return request


async def install(
    body: http11.BodyReader, request: Request, directories: Mapping[str, str]
) -> None:
    """Receives and extracts each layer in turn, then checks that nothing follows them."""
    for layer in request.layers:
        path = await receive(body, layer)
        try:
            await asyncio.to_thread(layers.extract, path, layer.media_type, directories)
        except layers.LayerError as exc:
            raise RefusedError(400, f"layer {layer.digest}: {exc}") from None
        finally:
            os.unlink(path)
    if await body.read(1):
        raise RefusedError(400, "the body goes on after the last layer")
    # The directories on the import path changed under the import system's caches.
    importlib.invalidate_caches()


async def receive(body: http11.BodyReader, layer: Layer) -> str:
    """The path of a temporary file holding the layer's blob, its digest checked. A file that
    cannot be written (the temporary directory full) is a 500."""
    try:
        fd, path = tempfile.mkstemp(prefix="kfn-layer-")
    except OSError as exc:
        raise RefusedError(500, f"layer {layer.digest}: no temporary file: {exc}") from None
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as f:
            left = layer.size
            while left:
                data = await body.read(min(left, _READ_BYTES))
                if not data:
                    raise RefusedError(400, f"the body ended inside layer {layer.digest}")
                digest.update(data)
                left -= len(data)
                try:
                    f.write(data)
                except OSError as exc:
                    raise RefusedError(500, f"layer {layer.digest}: {exc}") from None
        got = f"sha256:{digest.hexdigest()}"
        if got != layer.digest:
            raise RefusedError(400, f"layer {layer.digest}: its bytes have digest {got}")
    except BaseException:
        os.unlink(path)
        raise
    return path
