"""A small HTTP/1.1 server-side reader and writer on asyncio streams.

Only what a function pod needs: request line and headers, bodies by ``Content-Length`` or chunked
transfer coding, ``Expect: 100-continue``, keep-alive, and responses with a ``Content-Length`` or,
streamed, chunked with optional trailers.
The standard library's ``http.server`` is thread-per-connection and blocking; this keeps the whole
server on one event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http

from kfn_runtime import config


class ProtocolError(Exception):
    """The request is malformed; answer ``status`` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class BodyTooLargeError(Exception):
    """The body is longer than allowed; the rest of it is not read."""


@dataclasses.dataclass
class RequestHead:
    method: str
    target: str
    protocol: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive)."""
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in (self.header("connection") or "").split(",")}
        if self.protocol == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


async def read_head(reader: asyncio.StreamReader) -> RequestHead | None:
    """The next request's head, or None when the client closed the connection between requests."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise ProtocolError(400, "incomplete request head") from None
    except asyncio.LimitOverrunError:
        raise ProtocolError(431, "request head too large") from None
    lines = raw.decode("latin-1").split("\r\n")
    while lines and not lines[0]:
        lines.pop(0)  # tolerate stray CRLF between requests (RFC 9112 section 2.2)
    if not lines:
        return None
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ProtocolError(400, "malformed request line")
    method, target, protocol = parts
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(400, "malformed header line")
        headers.append((name, value.strip()))
    return RequestHead(method.upper(), target, protocol, headers)


async def read_body(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    head: RequestHead,
    limit: int,
) -> bytes:
    """The request body, at most ``limit`` bytes; sends ``100 Continue`` if the client waits."""
    transfer = (head.header("transfer-encoding") or "").lower()
    chunked = "chunked" in transfer
    length_header = head.header("content-length")
    length = 0
    if not chunked and length_header is not None:
        if not length_header.isdigit():
            raise ProtocolError(400, "bad Content-Length")
        length = int(length_header)
        if length > limit:
            raise BodyTooLargeError
    if not chunked and length == 0:
        return b""
    if (head.header("expect") or "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
    try:
        if not chunked:
            return await reader.readexactly(length)
        return await _read_chunked(reader, limit)
    except asyncio.IncompleteReadError:
        raise ProtocolError(400, "incomplete body") from None


class BodyReader:
    """A request body read piece by piece, for a body too large to hold at once (a pool pod's
    layers, :mod:`kfn_runtime.pool`). By ``Content-Length`` or chunked, as :func:`read_body`."""

    def __init__(self, reader: asyncio.StreamReader, head: RequestHead) -> None:
        self._reader = reader
        self._head = head
        self._chunked = "chunked" in (head.header("transfer-encoding") or "").lower()
        length_header = head.header("content-length")
        #: The body's length when the request said it (not chunked), else None.
        self.length: int | None = None
        if not self._chunked:
            if length_header is not None and not length_header.isdigit():
                raise ProtocolError(400, "bad Content-Length")
            self.length = int(length_header or "0")
        #: Bytes left: of the body (by length), or of the current chunk (chunked).
        self._left = self.length or 0
        self._ended = not self._chunked and self._left == 0
        self._pushed = bytearray()

    async def start(self, writer: asyncio.StreamWriter) -> None:
        """Sends ``100 Continue`` if the client waits for it before sending the body."""
        if not self._ended and (self._head.header("expect") or "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()

    async def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the body (at least one), or ``b""`` once it ended."""
        if self._pushed:
            data = bytes(self._pushed[:size])
            del self._pushed[:size]
            return data
        try:
            return await self._read(size)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            raise ProtocolError(400, "incomplete body") from None

    async def readline(self, limit: int) -> bytes | None:
        """The body up to and with its first ``\\n``, or None when the body ended or ``limit``
        bytes passed without one. What was read past the line is kept for :meth:`read`."""
        line = bytearray()
        while True:
            end = self._pushed.find(b"\n")
            if end >= 0:
                line += self._pushed[: end + 1]
                del self._pushed[: end + 1]
                return bytes(line) if len(line) <= limit else None
            line += self._pushed
            self._pushed.clear()
            if len(line) > limit:
                return None
            data = await self.read(64 * 1024)
            if not data:
                return None
            self._pushed += data

    async def _read(self, size: int) -> bytes:
        if self._ended:
            return b""
        if self._chunked and self._left == 0:
            size_line = (await self._reader.readuntil(b"\r\n")).split(b";", 1)[0].strip()
            try:
                self._left = int(size_line, 16)
            except ValueError:
                raise ProtocolError(400, "bad chunk size") from None
            if self._left == 0:
                while (await self._reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers are not used
                self._ended = True
                return b""
        data = await self._reader.read(min(size, self._left))
        if not data:
            raise ProtocolError(400, "incomplete body")
        self._left -= len(data)
        if self._left == 0:
            if self._chunked:
                if await self._reader.readexactly(2) != b"\r\n":
                    raise ProtocolError(400, "bad chunk terminator")
            else:
                self._ended = True
        return data


async def _read_chunked(reader: asyncio.StreamReader, limit: int) -> bytes:
    body = bytearray()
    while True:
        size_line = (await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise ProtocolError(400, "bad chunk size") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers are not used
            return bytes(body)
        if len(body) + size > limit:
            raise BodyTooLargeError
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise ProtocolError(400, "bad chunk terminator")


def render(
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    keep_alive: bool,
    head_only: bool = False,
) -> bytes:
    """A complete HTTP/1.1 response; ``head_only`` keeps the length but drops the body (HEAD)."""
    lines = _head_lines(status, headers)
    lines.append(f"Content-Length: {len(body)}")
    if not keep_alive:
        lines.append("Connection: close")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
    return data if head_only else data + body


def render_stream_head(
    status: int, headers: list[tuple[str, str]], *, keep_alive: bool, chunked: bool = True
) -> bytes:
    """The head of a streamed response: chunked, each body piece follows as :func:`chunk`
    (not ``chunked``, for an HTTP/1.0 client: the body ends with the connection)."""
    lines = _head_lines(status, headers)
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def chunk(data: bytes) -> bytes:
    """One piece of a chunked body (never empty: an empty chunk ends the body)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def last_chunk(trailers: list[tuple[str, str]]) -> bytes:
    """The end of a chunked body, with trailer fields if any."""
    fields = "".join(f"{name}: {_clean(value)}\r\n" for name, value in trailers)
    return b"0\r\n" + fields.encode("utf-8") + b"\r\n"


def _head_lines(status: int, headers: list[tuple[str, str]]) -> list[str]:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines.extend(f"{name}: {_clean(value)}" for name, value in headers)
    return lines


def _clean(value: str) -> str:
    """Header values must not split the response; CR and LF would."""
    return value.replace("\r", " ").replace("\n", " ")


#: The reader's buffer limit bounds the request head.
STREAM_LIMIT = config.MAX_HEAD_BYTES
