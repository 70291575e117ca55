"""A stand-in activator for trigger-worker tests: a real HTTP server on 127.0.0.1.

It answers the invoke API as the activator does: 200 with the function's result for
``RequestResponse``, 202 for ``Event``; a test scripts other answers (a function error,
throttling) with :meth:`ActivatorStub.answer`.
"""

from __future__ import annotations

import dataclasses
import http.server
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
