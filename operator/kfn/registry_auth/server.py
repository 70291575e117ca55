"""The token service's HTTP(S) endpoint: ``/token`` (``GET``, and ``POST`` for the OAuth2
password grant containerd uses) and ``GET /healthz``, nothing else.

Bounded like every kfn endpoint, since it faces whatever can reach the registry: one request
per connection (answers say ``Connection: close``; clients cache tokens, so requests are
few), a request line of at most :data:`MAX_REQUEST_LINE` bytes and a head of at most
:data:`MAX_HEAD` bytes, :data:`READ_TIMEOUT` seconds to send it (the TLS handshake
included, done in the connection's thread rather than the accepting one), no body but a
token form of at most :data:`MAX_FORM` bytes, and at most :data:`MAX_CONNECTIONS`
connections in hand: more are closed at once. Decisions are
:mod:`kfn.registry_auth.tokens`'; this module only carries them.
"""

from __future__ import annotations

import http.server
import json
import logging
import socket
import ssl
import sys
import threading
from typing import Any, BinaryIO, Final

from kfn import clock
from kfn.registry_auth import tokens

logger = logging.getLogger("kfn.registry_auth")

MAX_REQUEST_LINE: Final = 8192
MAX_HEAD: Final = 16384
#: A token form (user, password, service and a few scopes) is far smaller.
MAX_FORM: Final = 8192
READ_TIMEOUT: Final = 10.0
MAX_CONNECTIONS: Final = 64
TOKEN_PATH: Final = "/token"  # noqa: S105 - a URL path, not a password
HEALTH_PATH: Final = "/healthz"


class Server(http.server.ThreadingHTTPServer):
    """A thread per connection, at most :data:`MAX_CONNECTIONS` of them."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        settings: tokens.Settings,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            logger.warning(
                "more than %d connections; closing one from %s", MAX_CONNECTIONS, client_address
            )
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up, stall or fail the handshake are routine; anything else is
        logged with its traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError | ssl.SSLError | socket.timeout):
            logger.debug("%s: %s", client_address, error)
            return
        logger.exception("serving %s failed", client_address)


class _Bounded:
    """A request's input, cut off after ``budget`` bytes (``exceeded`` then says so)."""

    def __init__(self, raw: BinaryIO, budget: int) -> None:
        self.raw = raw
        self.budget = budget
        self.exceeded = False

    def readline(self, limit: int = -1) -> bytes:
        if self.budget <= 0:
            self.exceeded = True
            return b""
        size = self.budget if limit < 0 else min(limit, self.budget)
        line = self.raw.readline(size)
        self.budget -= len(line)
        if self.budget <= 0 and not line.endswith(b"\n"):
            self.exceeded = True
        return line

    def read(self, size: int = -1) -> bytes:
        """A request body of exactly ``size`` bytes (the caller bounds it first)."""
        if size <= 0:
            return b""
        return self.raw.read(size)

    def close(self) -> None:
        self.raw.close()


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    timeout = READ_TIMEOUT
    rfile: Any

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()
        self.rfile = _Bounded(self.rfile, MAX_HEAD)

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()

    def handle_one_request(self) -> None:  # noqa: PLR0911 - one answer per way a request fails
        line = self.rfile.readline(MAX_REQUEST_LINE + 1)
        if not line:
            return
        if len(line) > MAX_REQUEST_LINE or not line.endswith(b"\n"):
            self.requestline, self.request_version, self.command = "", "HTTP/1.1", ""
            self.send_error(414, "request line too long")
            return
        self.raw_requestline = line
        if not self.parse_request():
            return
        if self.rfile.exceeded:
            self.send_error(431, "request head too large")
            return
        if self.command == "POST":
            self.do_POST()
            return
        if self.headers.get("Transfer-Encoding") or self.headers.get("Content-Length", "0") != "0":
            self.send_error(413, "no request body is accepted")
            return
        if self.command != "GET":
            self._json(
                405,
                {"errors": [{"code": "UNSUPPORTED", "message": "only GET and POST"}]},
                {"Allow": "GET, POST"},
            )
            return
        self.do_GET()

    def do_POST(self) -> None:
        """The OAuth2 form of ``/token`` (what containerd sends when it holds a password)."""
        path = self.path.partition("?")[0]
        if path not in (TOKEN_PATH, TOKEN_PATH + "/"):
            self._json(404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]})
            return
        if self.headers.get("Transfer-Encoding"):
            self.send_error(411, "a form needs a Content-Length")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.send_error(411, "a form needs a Content-Length")
            return
        if not 0 <= length <= MAX_FORM:
            self.send_error(413, f"a form is at most {MAX_FORM} bytes")
            return
        kind = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            self.send_error(415, "the form must be application/x-www-form-urlencoded")
            return
        body = self.rfile.read(length)
        if len(body) != length:
            return  # the client went away, or was too slow (the socket timeout)
        now = clock.utcnow()
        result = tokens.answer_form(self.server.settings, body.decode("utf-8", "replace"), now)
        logger.info("%s %s", self.client_address[0], result.log)
        self._json(result.status, result.body)

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path == HEALTH_PATH:
            self._json(200, {"status": "ok"})
            return
        if path not in (TOKEN_PATH, TOKEN_PATH + "/"):
            self._json(404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]})
            return
        now = clock.utcnow()
        result = tokens.answer(self.server.settings, query, self.headers.get("Authorization"), now)
        logger.info("%s %s", self.client_address[0], result.log)
        extra = {"WWW-Authenticate": 'Basic realm="kfn registry"'} if result.status == 401 else {}
        self._json(result.status, result.body, extra)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors of the request's form (by the base class too) answered as JSON."""
        self.close_connection = True
        text = message or self.responses.get(code, ("error",))[0]
        self._json(code, {"errors": [{"code": "INVALID_REQUEST", "message": text}]})

    def _json(
        self, status: int, doc: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        body = json.dumps(doc).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context of TLS 1.2 and later."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def serve(
    address: tuple[str, int], settings: tokens.Settings, tls: ssl.SSLContext | None = None
) -> tuple[Server, threading.Thread]:
    """Starts the service in a thread; stop it with ``server.shutdown()``."""
    server = Server(address, settings, tls)
    thread = threading.Thread(
        target=server.serve_forever, args=(0.1,), name="registry-auth", daemon=True
    )
    thread.start()
    return server, thread
