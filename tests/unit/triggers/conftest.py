"""Stand-ins for trigger-worker tests, real servers on 127.0.0.1.

``activator`` answers the invoke API as the activator does: 200 with the function's result
for ``RequestResponse``, 202 for ``Event``; a test scripts other answers (a function error,
throttling) with :meth:`ActivatorStub.answer`. ``listener`` is a foreign server that records
whatever reaches it, to show what a worker sends where.
"""

from __future__ import annotations

import dataclasses
import http.server
import socketserver
import threading
from collections.abc import Iterator
from typing import Any

import pytest


@dataclasses.dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclasses.dataclass
class ActivatorStub:
    url: str
    calls: list[Call] = dataclasses.field(default_factory=list)
    answers: list[tuple[int, dict[str, str], bytes]] = dataclasses.field(default_factory=list)

    def answer(self, status: int, body: bytes = b"{}", **headers: str) -> None:
        self.answers.append((status, {k.replace("_", "-"): v for k, v in headers.items()}, body))


@pytest.fixture
def activator() -> Iterator[ActivatorStub]:
    stub = ActivatorStub(url="")
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                stub.calls.append(Call(self.path, dict(self.headers), body))
                scripted = stub.answers.pop(0) if stub.answers else None
            if scripted is None:
                event = self.headers.get("Kfn-Invocation-Type") == "Event"
                scripted = (202, {}, b"") if event else (200, {}, b'{"ok":true}')
            status, headers, answer = scripted
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield stub
    server.shutdown()
    server.server_close()


@dataclasses.dataclass
class Listener:
    """A server on 127.0.0.1 that someone other than a Secret's owner runs: it records every
    connection and every byte sent to it. With ``greeting`` it first sends that (a NATS
    server's INFO, after which a client sends its credentials) and answers the first bytes
    it receives with ``refusal``, then hangs up, as a server turning them down does."""

    port: int = 0
    greeting: bytes = b""
    refusal: bytes = b"-ERR 'Authorization Violation'\r\n"
    connections: int = 0
    received: bytes = b""
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def seen(self) -> tuple[int, bytes]:
        with self.lock:
            return self.connections, self.received


#: What a NATS server asking for credentials sends first.
NATS_INFO = (
    b'INFO {"server_id":"foreign","server_name":"foreign","version":"2.10.0","proto":1,'
    b'"host":"127.0.0.1","port":4222,"max_payload":1048576,"auth_required":true}\r\n'
)


@pytest.fixture
def listener() -> Iterator[Listener]:
    state = Listener()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            with state.lock:
                state.connections += 1
            self.request.settimeout(5)
            if state.greeting:
                self.request.sendall(state.greeting)
            while True:
                try:
                    data = self.request.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                with state.lock:
                    state.received += data
                if state.greeting:
                    self.request.sendall(state.refusal)
                    return

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.port = server.server_address[1]
    yield state
    server.shutdown()
    server.server_close()
