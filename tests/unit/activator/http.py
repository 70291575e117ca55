"""Real HTTP peers for the activator's tests: a function-pod-like backend and a client.

Both speak HTTP/1.1 over 127.0.0.1 sockets. The backend streams what it receives
(hashing bodies rather than keeping them) and records, per request, what the
activator sent it, so tests can check the proxy from the pod's side.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import json
import typing
from typing import Any

import httptools


@dataclasses.dataclass
class Seen:
    """One request as the backend received it."""

    method: str
    path: str
    headers: dict[str, str]
    body_size: int
    body_sha256: str
    chunked: bool


def _answer(status_line: bytes, headers: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 %s\r\n%sContent-Length: %d\r\n\r\n%s" % (
        status_line,
        headers,
        len(body),
        body,
    )


#: Fixed answers of the functions' own, by path.
_CANNED = {
    # Shaped as the runtime's refusal, but a handler's: no Kfn-Not-Started.
    "/handler429": _answer(
        b"429 Too Many Requests",
        b"Retry-After: 1\r\nContent-Type: application/json\r\n",
        b'{"message": "Too Many Requests"}',
    ),
    "/limited": _answer(
        b"429 Slow Down",
        b"Retry-After: 1\r\nKfn-Function-Error: Unhandled\r\n",
        b'{"message": "Too Many Requests"}',
    ),
    # A function setting CORS headers of its own (a route's policy replaces them).
    "/own-cors": _answer(
        b"200 OK",
        b"Access-Control-Allow-Origin: *\r\naccess-control-expose-headers: x-secret\r\n"
        b"X-Kept: yes\r\n",
        b"own",
    ),
    # A runtime's answers: the handler's own time, and its errors (runtime contract §3).
    "/timed": _answer(b"200 OK", b"Kfn-Handler-Duration: 0.003712\r\n", b"done"),
    "/init-error": _answer(
        b"502 Bad Gateway",
        b"Kfn-Function-Error: Unhandled\r\nContent-Type: application/json\r\n",
        b'{"errorType": "Runtime.ImportModuleError", "errorMessage": "no module"}',
    ),
    "/too-large": _answer(
        b"502 Bad Gateway",
        b"Kfn-Function-Error: Unhandled\r\nContent-Type: application/json\r\n",
        b'{"errorType": "ResponseSizeTooLarge", "errorMessage": "over 6 MiB"}',
    ),
    "/task-timeout": _answer(
        b"504 Gateway Timeout",
        b"Kfn-Function-Error: Unhandled\r\nKfn-Handler-Duration: 1.000100\r\n",
        b'{"errorType": "TimeoutError", "errorMessage": "Task timed out after 1.00 seconds"}',
    ),
    "/own503": _answer(
        b"503 Unavailable", b"Retry-After: 1\r\n", b'{"message": "down for maintenance"}'
    ),
}


class Backend:
    """A small pod: ``/echo``, ``/slow?ms=``, ``/stream?mib=``, ``/_kfn/invoke`` and more.

    ``in_flight``/``peak`` count requests being handled, to check concurrency limits.
    ``invoke_failures`` makes the next N ``/_kfn/invoke`` calls fail with a function error.
    As the runtime contract says, every answer on ``/_kfn/invoke`` carries the request's
    ``Kfn-Request-Id``, and a refusal of a request not started carries ``Kfn-Not-Started``.
    """

    def __init__(self, name: str = "backend") -> None:
        self.name = name
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.peak = 0
        self.connections = 0
        self.transports: set[asyncio.Transport] = set()
        self.invoke_failures = 0
        self.invoke_status = 200
        #: Statuses (429, 503) with which the next requests are refused unstarted, as the
        #: runtime does when busy or draining.
        self.refusals: list[int] = []
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> Backend:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _BackendProtocol(self), "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for transport in list(self.transports):
                transport.abort()
            await self.server.wait_closed()


class _BackendProtocol(asyncio.Protocol):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport.
        self.transport = typing.cast(asyncio.Transport, transport)
        self.backend.connections += 1
        self.backend.transports.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        assert self.transport is not None
        self.backend.transports.discard(self.transport)
        for task in self.tasks:
            task.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers: dict[str, str] = {}
        self.hash = hashlib.sha256()
        self.size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode()

    def on_headers_complete(self) -> None:
        self.backend.in_flight += 1
        self.backend.peak = max(self.backend.peak, self.backend.in_flight)

    def on_body(self, body: bytes) -> None:
        self.hash.update(body)
        self.size += len(body)

    def on_message_complete(self) -> None:
        url = httptools.parse_url(self.url)
        seen = Seen(
            method=self.parser.get_method().decode(),
            path=url.path.decode(),
            headers=self.headers,
            body_size=self.size,
            body_sha256=self.hash.hexdigest(),
            chunked="chunked" in self.headers.get("transfer-encoding", ""),
        )
        self.backend.seen.append(seen)
        query = dict(
            part.split("=", 1) for part in (url.query or b"").decode().split("&") if "=" in part
        )
        task = asyncio.get_running_loop().create_task(self.respond(seen, query))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def respond(self, seen: Seen, query: dict[str, str]) -> None:
        transport = self.transport
        assert transport is not None
        try:
            if seen.path == "/slow":
                await asyncio.sleep(int(query.get("ms", "100")) / 1000)
            if seen.path == "/stream":
                transport.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                chunk = b"x" * 65536
                for _ in range(int(query.get("mib", "1")) * 16):
                    transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    await asyncio.sleep(0)
                transport.write(b"0\r\n\r\n")
                return
            if self.backend.refusals:
                status = self.backend.refusals.pop(0)
                invoke = seen.path == "/_kfn/invoke"
                body = {
                    (429, True): b'{"errorType":"TooManyRequestsException","errorMessage":"x"}',
                    (503, True): b'{"errorType":"ServiceUnavailableException","errorMessage":"x"}',
                    (429, False): b'{"message": "Too Many Requests"}',
                    (503, False): b'{"message": "Service Unavailable"}',
                }[(status, invoke)]
                marker = b"busy" if status == 429 else b"draining"
                transport.write(
                    b"HTTP/1.1 %d Refused\r\nRetry-After: 1\r\nKfn-Not-Started: %s\r\n"
                    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (status, marker, len(body), body)
                )
                return
            canned = _CANNED.get(seen.path)
            if canned is not None:
                transport.write(canned)
                return
            if seen.path == "/close":
                body = b"bye"
                transport.write(
                    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body
                )  # no length: body ends at close
                transport.close()
                return
            invoke = seen.path == "/_kfn/invoke"
            request_id = (
                b"Kfn-Request-Id: %s\r\n" % seen.headers.get("kfn-request-id", "").encode()
                if invoke
                else b""
            )
            if invoke and self.backend.invoke_failures > 0:
                self.backend.invoke_failures -= 1
                body = json.dumps({"errorType": "Boom", "errorMessage": "failed"}).encode()
                transport.write(
                    b"HTTP/1.1 500 Internal Server Error\r\nKfn-Function-Error: Unhandled\r\n"
                    b"%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (request_id, len(body), body)
                )
                return
            body = json.dumps(
                {"backend": self.backend.name, **dataclasses.asdict(seen)}, sort_keys=True
            ).encode()
            status = self.backend.invoke_status if invoke else 200
            head = (
                b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                b"%sKeep-Alive: timeout=5\r\n\r\n" % (status, len(body), request_id)
            )
            transport.write(head if seen.method == "HEAD" else head + body)
        finally:
            self.backend.in_flight -= 1


@dataclasses.dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    interim: list[int]
    #: Every header line as received, repeated names included.
    raw_headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """One client connection speaking raw HTTP/1.1 (keep-alive unless told otherwise)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._responses: collections.deque[Response] = collections.deque()
        self._new_parser()

    def _new_parser(self) -> None:
        self._collector = _ResponseCollector(self._responses)
        self._parser = httptools.HttpResponseParser(self._collector)
        self._collector.parser = self._parser

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        host: str = "example.com",
    ) -> Response:
        await self.send(build_request(method, path, body, headers, host))
        return await self.read_response(head=method == "HEAD")

    async def read_response(self, *, head: bool = False) -> Response:
        collector = self._collector
        while not self._responses:
            if head and collector.head_done:
                collector.finish()
                self._new_parser()
                break
            data = await self.reader.read(65536)
            if not data:
                if collector.started:
                    collector.finish()  # body delimited by the connection closing
                    break
                raise ConnectionError("connection closed before a response")
            self._parser.feed_data(data)
        return self._responses.popleft()

    async def closed(self) -> bool:
        """True if the server closed the connection (reads EOF)."""
        try:
            async with asyncio.timeout(2):
                return await self.reader.read(1) == b""
        except (TimeoutError, ConnectionError):
            return False

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def build_request(
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    host: str = "example.com",
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    headers = dict(headers or {})
    if body or method in ("POST", "PUT"):
        headers.setdefault("Content-Length", str(len(body)))
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _ResponseCollector:
    def __init__(self, responses: collections.deque[Response]) -> None:
        self.responses = responses
        self.parser: httptools.HttpResponseParser | None = None
        self.reset()

    def reset(self) -> None:
        self.headers: dict[str, str] = {}
        self.raw_headers: list[tuple[str, str]] = []
        self.body = bytearray()
        self.interim: list[int] = []
        self.started = False
        self.head_done = False
        self.status = 0

    def on_message_begin(self) -> None:
        self.started = True
        self.headers = {}
        self.raw_headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode()
        self.raw_headers.append((name.decode().lower(), value.decode()))

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.status = self.parser.get_status_code()
        if 100 <= self.status < 200:
            self.interim.append(self.status)
        else:
            self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        if self.head_done:
            self.finish()

    def finish(self) -> None:
        self.responses.append(
            Response(
                self.status,
                dict(self.headers),
                bytes(self.body),
                list(self.interim),
                list(self.raw_headers),
            )
        )
        self.reset()
