"""The HTTP client trigger workers invoke functions with, through the activator's invoke API.

Every trigger invokes through the activator, so an event wakes a function at zero and never
exceeds its concurrency. :class:`Invoker` makes one invocation (``RequestResponse``, or
``Event`` for a function destination) over a keep-alive connection per thread and reports
every answer, or the failure to get one, as a :class:`kfn.retry.Outcome` for the caller's
retry policy.

:meth:`Invoker.wake` asks the activator to start a function's pods before its events come
(``POST .../wake``, the same door and right as an invoke), and every answer's cold start
(``Server-Timing: cold-start;dur=``) is read into :attr:`kfn.retry.Outcome.cold_start_ms`, so a
worker can learn how long to wake ahead (:mod:`kfn.triggers.warming`).

The activator's invoke door asks for a bearer token that RBAC allows to invoke the function
(:mod:`kfn.activator.access`): a worker sends its projected ServiceAccount token for the
audience ``kfn`` (:class:`kfn.authn.tokenfile.TokenFile`), which the kubelet rotates in place.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable

from kfn import retry
from kfn.triggers import warming


class _ClosedError(Exception):
    """The connection closed before any byte of an answer arrived."""


class _Connection:
    """One keep-alive HTTP/1.1 connection to the activator.

    The invoke API is one request shape and a plain answer, so the client is written for it:
    the request head is formatted in one go and sent with the body in one system call, and
    the answer's head is read line by line without a general header parser. At a hundred
    records per invocation this halves the worker's time per request against http.client.
    """

    def __init__(self, host: str, port: int, tls: bool, timeout: float) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        self.tls = tls
        self.sock = sock
        self.reader = sock.makefile("rb")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def exchange(self, head: bytes, body: bytes, timeout: float) -> tuple[retry.Outcome, bool]:
        """Sends a request; its outcome, and whether the connection may be kept."""
        self.sock.settimeout(timeout)
        self._send(head, body)
        while True:
            status, keep, length, chunked, function_error, cold = self._read_head()
            if not 100 <= status < 200:
                break  # an interim answer is followed by the final one
        if chunked:
            data = self._chunks()
        elif length is not None:
            data = self.reader.read(length)
            if len(data) != length:
                raise http.client.IncompleteRead(data, length - len(data))
        else:
            data, keep = self.reader.read(), False
        return retry.Outcome(status, data, function_error, cold), keep

    def _send(self, head: bytes, body: bytes) -> None:
        try:
            if self.tls:
                self.sock.sendall(head + body)
                return
            # One system call gathers both buffers; a large body may need more.
            sent = self.sock.sendmsg([head, body])
            if sent < len(head) + len(body):
                self.sock.sendall(memoryview(head + body)[sent:])
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _ClosedError(str(exc)) from None

    def _read_head(self) -> tuple[int, bool, int | None, bool, bool, float | None]:
        """The status line and the headers the invoke API uses."""
        line = self.reader.readline(65537)
        if not line:
            raise _ClosedError("the activator closed the connection")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise http.client.BadStatusLine(line.decode(errors="replace"))
        keep = parts[0] == b"HTTP/1.1"
        length: int | None = None
        chunked = function_error = False
        cold: float | None = None
        while (header := self.reader.readline(65537)) not in (b"\r\n", b"\n", b""):
            name, _, value = header.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                keep = keep and b"close" not in value.lower()
            elif name == b"kfn-function-error":
                function_error = True
            elif name == b"server-timing":
                cold = warming.cold_start_ms(value) if cold is None else cold
        return int(parts[1]), keep, length, chunked, function_error, cold

    def _chunks(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.reader.readline(65537).split(b";", 1)[0], 16)
            if size == 0:
                while self.reader.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(self.reader.read(size))
            self.reader.readline(65537)


class Invoker:
    """Invokes functions through the activator's invoke API; safe to share between threads.

    Each thread keeps one keep-alive connection. A request that fails on a connection reused
    from an earlier request, before any answer arrived, is sent once more on a fresh
    connection (the activator closes idle connections); otherwise a failure is reported as
    ``retry.Outcome(0)`` for the caller's retry policy.
    """

    def __init__(self, activator_url: str, token: Callable[[], str] | None = None) -> None:
        parsed = urllib.parse.urlsplit(activator_url)
        #: The bearer token to send, read for each invocation (None: send none).
        self.token = token
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"the activator URL must be http(s)://host[:port]: {activator_url!r}")
        self.scheme = parsed.scheme
        self.host = parsed.hostname
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.base_path = parsed.path.rstrip("/")
        self._host_header = parsed.netloc
        self._local = threading.local()

    def path(self, namespace: str, function: str, qualifier: str = "") -> str:
        """The invoke API's path for ``function``, naming ``qualifier`` (a version or an
        alias; "" for ``$LATEST``) after a quoted colon, as Lambda's ``name:qualifier``."""
        if qualifier:
            function += "%3A" + urllib.parse.quote(qualifier, safe="")
        return f"{self.base_path}/_kfn/functions/{namespace}/{function}/invoke"

    def _connection(self, timeout: float) -> tuple[_Connection, bool]:
        connection: _Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection, True
        connection = _Connection(self.host, self.port, self.scheme == "https", timeout)
        self._local.connection = connection
        return connection, False

    def _drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()

    def invoke(
        self,
        namespace: str,
        function: str,
        payload: bytes,
        *,
        request_id: str,
        timeout: float = 900.0,
        invocation_type: str = "RequestResponse",
        qualifier: str = "",
    ) -> retry.Outcome:
        """One invocation of ``function`` (its ``qualifier``: a version, an alias, or "" for
        ``$LATEST``); blocks until the function answered (or, for ``Event``, the activator
        accepted it)."""
        try:
            authorization = f"Authorization: Bearer {self.token()}\r\n" if self.token else ""
        except OSError as exc:
            return retry.Outcome(0, f"reading the invoke token: {exc}".encode())
        head = (
            f"POST {self.path(namespace, function, qualifier)} HTTP/1.1\r\n"
            f"Host: {self._host_header}\r\n"
            "Content-Type: application/json\r\n"
            f"Kfn-Invocation-Type: {invocation_type}\r\n"
            f"Kfn-Request-Id: {request_id}\r\n"
            f"{authorization}"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode("latin-1")
        return self._send(head, payload, timeout)

    def wake(
        self, namespace: str, function: str, *, qualifier: str = "", timeout: float = 5.0
    ) -> retry.Outcome:
        """Asks the activator to start ``function``'s pods (its ``qualifier``'s) now, for
        events expected soon: runs nothing, answered 202 at once. Waking a function that has
        pods only counts as activity (its idle timeout starts again)."""
        try:
            authorization = f"Authorization: Bearer {self.token()}\r\n" if self.token else ""
        except OSError as exc:
            return retry.Outcome(0, f"reading the invoke token: {exc}".encode())
        path = self.path(namespace, function, qualifier).removesuffix("/invoke") + "/wake"
        head = (
            f"POST {path} HTTP/1.1\r\n"
            f"Host: {self._host_header}\r\n"
            f"{authorization}"
            "Content-Length: 0\r\n\r\n"
        ).encode("latin-1")
        return self._send(head, b"", timeout)

    def _send(self, head: bytes, payload: bytes, timeout: float) -> retry.Outcome:
        """One request over this thread's connection, sent again once on a fresh connection
        when a reused one turned out closed before any answer arrived."""
        for _ in range(2):
            try:
                connection, reused = self._connection(timeout)
                outcome, keep = connection.exchange(head, payload, timeout)
            except _ClosedError as exc:
                self._drop()
                if reused:
                    continue
                return retry.Outcome(0, str(exc).encode())
            except (OSError, ValueError, http.client.HTTPException) as exc:
                self._drop()
                return retry.Outcome(0, str(exc).encode() or type(exc).__name__.encode())
            if not keep:
                self._drop()
            return outcome
        return retry.Outcome(0, b"the activator closed the connection")
