"""Streamed answers from both runtimes (CONTRACT.md §12), read chunk by chunk off a raw socket.

Handlers are ``handlers/*/streams.*``. Those that must still be running while the test reads
wait on a *gate*, a FIFO the test opens only when it wants them to go on: the test knows the
handler has not finished because it cannot have.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httptools
import pytest

from .conftest import RunningRuntime, Starter

MIB = 1024 * 1024


class Streamed:
    """One answer read off a socket as it arrives: head, body so far, trailers."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.trailers: dict[str, str] = {}
        self.head_done = False
        self.body = bytearray()
        self.complete = False
        self.closed = False

    @classmethod
    def request(
        cls, runtime: RunningRuntime, method: str, path: str, body: bytes = b""
    ) -> Streamed:
        sock = socket.create_connection(("127.0.0.1", runtime.port), timeout=10)
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: fn.example\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        return cls(sock)

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def read_until(self, condition: Callable[[], bool]) -> None:
        while not condition() and not self.closed:
            data = self.sock.recv(65536)
            if not data:
                self.closed = True
                break
            self.parser.feed_data(data)

    def read_all(self) -> Streamed:
        self.read_until(lambda: self.complete)
        return self

    def error(self) -> dict[str, object]:
        return dict(json.loads(base64.b64decode(self.trailers["kfn-error-body"])))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:
            self.trailers[name.decode().lower()] = value.decode()
        else:
            self.headers.append((name.decode(), value.decode()))

    def on_headers_complete(self) -> None:
        self.head_done = True
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    path = tmp_path / "gate"
    os.mkfifo(path)
    return path


def open_gate(gate: Path, data: bytes = b"go") -> None:
    """Let a handler waiting on ``gate`` go on (opening blocks until it reads)."""
    with open(gate, "wb") as writer:
        writer.write(data)


def invoke_body(event: dict[str, object]) -> bytes:
    return json.dumps(event).encode()


# --- arriving while the handler runs --------------------------------------------------------


def test_an_http_events_stream_arrives_before_its_handler_ends_with_the_preludes_head(
    start_runtime: Starter, language: str, gate: Path
) -> None:
    runtime = start_runtime(language, "streams.gated")
    answer = Streamed.request(runtime, "GET", f"/report?gate={gate}")
    answer.read_until(lambda: b"first\n" in answer.body)
    # The handler waits on the gate: it cannot have ended, and its answer is under way.
    assert not answer.complete
    assert answer.status == 201
    assert answer.header("content-type") == ["text/plain"]
    assert answer.header("x-stream") == ["yes"]
    assert answer.header("set-cookie") == ["step=1"]
    assert answer.header("transfer-encoding") == ["chunked"]
    assert len(answer.header("kfn-request-id")) == 1
    open_gate(gate)
    answer.read_all()
    assert bytes(answer.body) == b"first\nafter gate: go"
    assert set(answer.trailers) == {"kfn-handler-duration"}  # no error trailers
    runtime.wait_for_output("REPORT RequestId")


def test_an_invokes_stream_arrives_before_its_handler_ends_as_the_body_alone(
    start_runtime: Starter, language: str, gate: Path
) -> None:
    runtime = start_runtime(language, "streams.gated")
    answer = Streamed.request(runtime, "POST", "/_kfn/invoke", invoke_body({"gate": str(gate)}))
    answer.read_until(lambda: b"first\n" in answer.body)
    assert not answer.complete
    # The invoke path's answer is the body: 200, the prelude's content type, no cookies.
    assert answer.status == 200
    assert answer.header("content-type") == ["text/plain"]
    assert answer.header("set-cookie") == []
    assert answer.header("x-stream") == []
    open_gate(gate)
    assert bytes(answer.read_all().body) == b"first\nafter gate: go"


def test_a_python_async_generator_streams_as_a_generator_does(
    start_runtime: Starter, gate: Path
) -> None:
    runtime = start_runtime("python", "streams.async_gated")
    answer = Streamed.request(runtime, "GET", f"/report?gate={gate}")
    answer.read_until(lambda: b"first\n" in answer.body)
    assert not answer.complete
    assert answer.status == 201
    open_gate(gate)
    assert bytes(answer.read_all().body) == b"first\nafter gate: go"


# --- what is sent -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "handler"),
    [
        ("python", "streams.bare"),
        ("python", "streams.returns_iterator"),
        ("nodejs", "streams.bare"),
        ("nodejs", "streams.piped"),
    ],
)
@pytest.mark.parametrize("path", ["/bytes", "/_kfn/invoke"])
def test_bare_pieces_are_the_body_as_octet_stream(
    start_runtime: Starter, language: str, handler: str, path: str
) -> None:
    runtime = start_runtime(language, handler)
    method = "POST" if path == "/_kfn/invoke" else "GET"
    answer = Streamed.request(runtime, method, path).read_all()
    assert answer.status == 200
    assert answer.header("content-type") == ["application/octet-stream"]
    assert bytes(answer.body) == b"\x00\x01binary\xc3\xa9"
    assert set(answer.trailers) == {"kfn-handler-duration"}  # no error trailers


def test_a_stream_leaves_the_connection_open_for_the_next_request(
    start_runtime: Starter, language: str
) -> None:
    runtime = start_runtime(language, "streams.bare")
    sock = socket.create_connection(("127.0.0.1", runtime.port), timeout=10)
    for _ in range(2):
        sock.sendall(b"GET /again HTTP/1.1\r\nHost: fn\r\n\r\n")
        answer = Streamed(sock).read_all()
        assert bytes(answer.body) == b"\x00\x01binary\xc3\xa9"
    sock.close()


def test_a_head_request_gets_the_streams_head_and_no_body(
    start_runtime: Starter, language: str
) -> None:
    runtime = start_runtime(language, "streams.bare")
    sock = socket.create_connection(("127.0.0.1", runtime.port), timeout=10)
    sock.sendall(
        b"HEAD /bytes HTTP/1.1\r\nHost: fn\r\n\r\nHEAD /bytes HTTP/1.1\r\nHost: fn\r\n\r\n"
    )
    received = b""
    while received.count(b"\r\n\r\n") < 2:
        received += sock.recv(65536)
    first, second, rest = received.split(b"\r\n\r\n", 2)
    # Had a body followed the first head, the second answer would not start right after it.
    assert first.startswith(b"HTTP/1.1 200 ")
    assert second.startswith(b"HTTP/1.1 200 ")
    assert b"application/octet-stream" in second
    assert rest == b""
    sock.close()


def test_an_http_1_0_client_gets_the_pieces_unchunked_up_to_the_connections_end(
    start_runtime: Starter, language: str
) -> None:
    runtime = start_runtime(language, "streams.bare")
    sock = socket.create_connection(("127.0.0.1", runtime.port), timeout=10)
    sock.sendall(b"GET /bytes HTTP/1.0\r\nHost: fn\r\n\r\n")
    received = b""
    while data := sock.recv(65536):
        received += data
    head, body = received.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"chunked" not in head.lower()
    assert b"trailer" not in head.lower()
    assert body == b"\x00\x01binary\xc3\xa9"
    sock.close()


# --- failures -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/fails", "/_kfn/invoke"])
def test_an_error_midway_ends_the_stream_with_error_trailers(
    start_runtime: Starter, language: str, path: str
) -> None:
    runtime = start_runtime(language, "streams.fails_midway")
    method = "POST" if path == "/_kfn/invoke" else "GET"
    answer = Streamed.request(runtime, method, path).read_all()
    assert answer.status == 200  # sent before the error: it cannot change any more
    assert bytes(answer.body) == b"partial"
    assert answer.trailers["kfn-function-error"] == "Unhandled"
    assert answer.trailers["kfn-error-type"] == ("ValueError" if language == "python" else "Error")
    assert answer.error()["errorMessage"] == "failed midway"
    output = runtime.wait_for_output("REPORT RequestId")
    assert "failed midway" in output


@pytest.mark.parametrize(("path", "status"), [("/fails", 502), ("/_kfn/invoke", 500)])
def test_an_error_before_the_first_piece_is_answered_as_any_handler_error(
    start_runtime: Starter, language: str, path: str, status: int
) -> None:
    runtime = start_runtime(language, "streams.fails_first")
    method = "POST" if path == "/_kfn/invoke" else "GET"
    answer = Streamed.request(runtime, method, path).read_all()
    assert answer.status == status
    assert answer.header("kfn-function-error") == ["Unhandled"]
    assert answer.header("transfer-encoding") == []


def test_the_deadline_midway_ends_the_stream_with_a_timeout_trailer(
    start_runtime: Starter, language: str, gate: Path
) -> None:
    runtime = start_runtime(language, "streams.stuck_midway", KFN_TIMEOUT_MS="1000")
    answer = Streamed.request(runtime, "GET", f"/stuck?gate={gate}").read_all()
    assert bytes(answer.body) == b"partial"
    assert answer.trailers["kfn-error-type"] == "TimeoutError"
    assert answer.error()["errorMessage"] == "Task timed out after 1.00 seconds"
    runtime.wait_for_output("Status: timeout")
    open_gate(gate)  # the handler, past its deadline, may end now


def test_a_node_streaming_handler_that_is_not_async_fails_as_in_lambda(
    start_runtime: Starter,
) -> None:
    runtime = start_runtime("nodejs", "streams.not_async")
    answer = Streamed.request(runtime, "POST", "/_kfn/invoke").read_all()
    assert answer.status == 500
    assert json.loads(answer.body)["errorMessage"] == (
        "Streaming does not support non-async handlers."
    )


def test_a_client_going_away_stops_the_stream_and_frees_the_handlers_slot(
    start_runtime: Starter, language: str
) -> None:
    runtime = start_runtime(language, "streams.endless", KFN_CONCURRENCY="1")
    answer = Streamed.request(runtime, "GET", "/endless")
    answer.read_until(lambda: len(answer.body) >= MIB)
    answer.sock.close()
    runtime.wait_for_output("stream stopped")
    runtime.wait_for_output("REPORT RequestId")
    # Its one slot is free again: the next invocation runs.
    again = Streamed.request(runtime, "GET", "/again")
    again.read_until(lambda: len(again.body) >= MIB)
    assert again.status == 200
    again.sock.close()


# --- flow control -----------------------------------------------------------------------------


def _peak_rss_mib(runtime: RunningRuntime) -> float:
    for line in Path(f"/proc/{runtime.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_slow_reader_slows_the_handler_instead_of_filling_the_runtimes_memory(
    start_runtime: Starter, language: str
) -> None:
    runtime = start_runtime(language, "streams.flood", KFN_TIMEOUT_MS="60000")
    Streamed.request(runtime, "GET", "/flood?mib=1").read_all()  # warm: the peak includes a stream
    before = _peak_rss_mib(runtime)
    answer = Streamed.request(runtime, "GET", "/flood?mib=64")
    answer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    # A reader far slower than the handler (it pauses after every MiB): without flow control
    # the runtime would hold most of the 64 MiB by the end; with it, the handler waits for
    # the reader. The pauses cannot make a runtime with flow control fail.
    received = 0
    while not answer.complete:
        data = answer.sock.recv(64 * 1024)
        if not data:
            break
        answer.parser.feed_data(data)
        if received // MIB != (received + len(data)) // MIB:
            time.sleep(0.005)
        received += len(data)
    assert answer.complete
    assert len(answer.body) == 64 * 1024 * 1024
    assert _peak_rss_mib(runtime) - before < 16
