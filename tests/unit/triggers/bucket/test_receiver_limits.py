"""What a sender may make the bucket receiver hold: body framing, sizes and deadlines."""

from __future__ import annotations

import http.client
import json
import select
import socket
import time
from collections.abc import Iterator

import pytest

from kfn.triggers.bucket import limits, receiver
from tests.unit.triggers.bucket.helpers import Recorder, make_worker, notification, trigger

MAX = 1000


@pytest.mark.parametrize(
    ("lengths", "transfer_encoding", "expected"),
    [
        ([], None, 0),
        (["0"], None, 0),
        (["42"], None, 42),
        ([" 42 "], None, 42),
        (["42", "42"], None, 42),
        (["42, 42"], None, 42),
        ([str(MAX)], None, MAX),
        ([str(MAX + 1)], None, limits.Refusal(413, f"the notification is larger than {MAX} bytes")),
        (["9" * 40], None, limits.Refusal(413, f"the notification is larger than {MAX} bytes")),
        (
            ["-1"],
            None,
            limits.Refusal(400, "Content-Length must be a non-negative integer, not '-1'"),
        ),
        (
            ["+5"],
            None,
            limits.Refusal(400, "Content-Length must be a non-negative integer, not '+5'"),
        ),
        (
            ["12abc"],
            None,
            limits.Refusal(400, "Content-Length must be a non-negative integer, not '12abc'"),
        ),
        (
            ["١٢"],  # Arabic-Indic digits: str.isdigit() says yes, HTTP says no
            None,
            limits.Refusal(400, "Content-Length must be a non-negative integer, not '١٢'"),
        ),
        ([""], None, limits.Refusal(400, "Content-Length must be a non-negative integer, not ''")),
        (
            ["42", "43"],
            None,
            limits.Refusal(400, "the request has conflicting Content-Length values"),
        ),
        (
            [],
            "chunked",
            limits.Refusal(
                411, "send notifications with a Content-Length; chunked bodies are refused"
            ),
        ),
    ],
)
def test_a_body_length_is_taken_only_from_one_plain_content_length_within_the_bound(
    lengths: list[str], transfer_encoding: str | None, expected: int | limits.Refusal
) -> None:
    assert limits.body_length(lengths, transfer_encoding, MAX) == expected


SHORT = limits.Limits(
    max_body=4096, head_timeout=0.4, body_timeout=0.4, idle_timeout=0.6, send_timeout=2
)


@pytest.fixture
def server() -> Iterator[receiver.Server]:
    recorder = Recorder()
    bucket = make_worker(recorder)
    bucket.routes.replace([trigger()])
    started, _ = receiver.serve(("127.0.0.1", 0), bucket, SHORT)
    try:
        yield started
    finally:
        recorder.gate.set()
        started.shutdown()
        started.server_close()
        bucket.dispatcher.pool.shutdown(wait=True)


def connect(server: receiver.Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=5)


def answer(sock: socket.socket) -> tuple[int, str, bool]:
    """Status, message, and whether the receiver closed the connection after it."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    message = json.loads(response.read())["message"]
    closed = sock.recv(1) == b""
    return response.status, message, closed


@pytest.mark.parametrize(
    ("length", "status"),
    [("-5", 400), ("12abc", 400), ("5, 6", 400), ("4097", 413), ("99999999999999999999", 413)],
)
def test_a_bad_or_oversized_content_length_is_refused_before_any_body_is_read(
    server: receiver.Server, length: str, status: int
) -> None:
    with connect(server) as sock:
        sock.sendall(
            f"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode()
        )
        got, _, closed = answer(sock)
    assert (got, closed) == (status, True)


def test_a_chunked_notification_is_refused_as_length_required(server: receiver.Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert answer(sock)[0] == 411


def test_a_notification_within_the_bound_is_still_handled(server: receiver.Server) -> None:
    body = json.dumps(notification()).encode()
    with connect(server) as sock:
        head = f"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        sock.sendall(head.encode() + body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        response.read()
    assert response.status == 200


def test_a_head_dripping_in_byte_by_byte_is_answered_408_at_its_deadline(
    server: receiver.Server,
) -> None:
    """Each byte arrives well within any per-read time-out; the head's deadline still holds."""
    with connect(server) as sock:
        started = time.monotonic()
        for byte in b"POST /events HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            # Stop once the answer is there: bytes sent to a closed socket would reset it.
            if select.select([sock], [], [], 0.02)[0] or time.monotonic() - started > 2:
                break
            sock.sendall(bytes([byte]))
        status, message, closed = answer(sock)
        took = time.monotonic() - started
    assert (status, message, closed) == (408, "the request head did not arrive in time", True)
    assert SHORT.head_timeout <= took < SHORT.head_timeout + 0.5


def test_a_body_that_stops_short_is_answered_408_at_its_deadline(
    server: receiver.Server,
) -> None:
    with connect(server) as sock:
        sock.sendall(b'POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"Records"')
        started = time.monotonic()
        status, message, closed = answer(sock)
        took = time.monotonic() - started
    assert (status, message, closed) == (
        408,
        "the notification's body did not arrive in time",
        True,
    )
    assert SHORT.body_timeout - 0.05 <= took < SHORT.body_timeout + 0.5


def test_an_idle_kept_alive_connection_is_closed_after_the_idle_time_out(
    server: receiver.Server,
) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        response.read()
        started = time.monotonic()
        assert sock.recv(1) == b""
        took = time.monotonic() - started
    assert SHORT.idle_timeout - 0.05 <= took < SHORT.idle_timeout + 0.5
