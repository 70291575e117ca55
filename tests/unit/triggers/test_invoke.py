"""Invoking through the activator: the invoke client and the HTTP/1.1 client under it.

The activator is a real HTTP server on 127.0.0.1 (the ``activator`` fixture), or a raw
socket server that answers with scripted bytes."""

from __future__ import annotations

import os
import pathlib
import socket
import threading
import time

import pytest

from kfn import stats
from kfn.activator import router
from kfn.authn import tokenfile
from kfn.triggers import invoke
from tests.unit.triggers.conftest import ActivatorStub

FUNCTION_ERROR = b'{"errorType":"ValueError","errorMessage":"bad image"}'


# --- the invoke client -----------------------------------------------------------------------


def test_a_synchronous_invocation_returns_the_functions_answer(activator: ActivatorStub) -> None:
    activator.answer(200, b'{"width": 64}')
    invoker = invoke.Invoker(activator.url)
    outcome = invoker.invoke("shop", "thumbnail", b'{"a":1}', request_id="r-1")
    assert (outcome.status, outcome.body, outcome.kind) == (200, b'{"width": 64}', "success")
    (call,) = activator.calls
    assert call.path == "/_kfn/functions/shop/thumbnail/invoke"
    assert call.headers["Kfn-Request-Id"] == "r-1"
    assert call.headers["Kfn-Invocation-Type"] == "RequestResponse"


@pytest.mark.parametrize("qualifier", ["3", "live", "blue_2024-a"])
def test_a_qualified_invocation_names_its_qualifier_as_the_activators_router_reads_it(
    activator: ActivatorStub, qualifier: str
) -> None:
    invoker = invoke.Invoker(activator.url)
    invoker.invoke("shop", "thumbnail", b"{}", request_id="r-1", qualifier=qualifier)
    (call,) = activator.calls
    assert call.path == f"/_kfn/functions/shop/thumbnail%3A{qualifier}/invoke"
    match = router.Router().match(b"activator", call.path.encode(), b"POST")
    assert match is not None
    assert (match.function, match.qualifier, match.invoke) == (
        stats.FunctionKey("shop", "thumbnail"),
        qualifier,
        True,
    )


def test_a_function_error_is_told_apart_from_an_unavailable_activator(
    activator: ActivatorStub,
) -> None:
    activator.answer(500, FUNCTION_ERROR, Kfn_Function_Error="Unhandled")
    invoker = invoke.Invoker(activator.url)
    outcome = invoker.invoke("shop", "thumbnail", b"{}", request_id="r")
    assert outcome.kind == "function-error"
    assert outcome.describe() == "status 500: ValueError: bad image"
    closed = invoke.Invoker("http://127.0.0.1:9")
    unreachable = closed.invoke("shop", "thumbnail", b"{}", request_id="r", timeout=2)
    assert (unreachable.status, unreachable.kind) == (0, "throttled")
    assert unreachable.describe().startswith("the activator could not be reached")


def test_invocations_from_one_thread_share_a_keep_alive_connection(
    activator: ActivatorStub,
) -> None:
    invoker = invoke.Invoker(activator.url)
    for n in range(3):
        assert invoker.invoke("shop", "thumbnail", b"{}", request_id=str(n)).status == 200
    connection = invoker._local.connection
    assert connection is not None
    assert connection.sock is not None


def test_the_workers_token_is_sent_and_read_again_once_the_kubelet_rotated_it(
    activator: ActivatorStub, tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    now = [0.0]
    token = tokenfile.TokenFile(str(path), clock=lambda: now[0])
    invoker = invoke.Invoker(activator.url, token)
    invoker.invoke("shop", "thumbnail", b"{}", request_id="r-1")
    path.write_text("second")
    os.utime(path, (time.time() + 5, time.time() + 5))
    invoker.invoke("shop", "thumbnail", b"{}", request_id="r-2")  # not looked at yet
    now[0] += tokenfile.RECHECK
    invoker.invoke("shop", "thumbnail", b"{}", request_id="r-3")
    sent = [call.headers["Authorization"] for call in activator.calls]
    assert sent == ["Bearer first", "Bearer first", "Bearer second"]


def test_a_missing_token_file_is_a_failed_attempt_not_a_crash(
    activator: ActivatorStub, tmp_path: pathlib.Path
) -> None:
    invoker = invoke.Invoker(activator.url, tokenfile.TokenFile(str(tmp_path / "none")))
    outcome = invoker.invoke("shop", "thumbnail", b"{}", request_id="r")
    assert outcome.status == 0
    assert b"reading the invoke token" in outcome.body
    assert activator.calls == []


# --- the HTTP/1.1 client under the invoker ---------------------------------------------------


class RawServer:
    """A socket server on 127.0.0.1 answering each request with the next scripted bytes;
    ``close_after`` closes the connection after that many answers."""

    def __init__(self, answers: list[bytes], close_after: int = 0) -> None:
        self.answers = answers
        self.close_after = close_after
        self.requests: list[bytes] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn, conn.makefile("rb") as reader:
                served = 0
                while self.answers:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = reader.readline()
                        if not line:
                            break
                        head += line
                    if not head:
                        break
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    self.requests.append(head + reader.read(length))
                    conn.sendall(self.answers.pop(0))
                    served += 1
                    if served == self.close_after:
                        break

    def close(self) -> None:
        self.listener.close()


def test_chunked_and_interim_answers_are_read_whole() -> None:
    server = RawServer(
        [
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            b"HTTP/1.1 500 Internal Server Error\r\nKfn-Function-Error: Unhandled\r\n"
            b"Content-Length: 2\r\n\r\n{}",
        ]
    )
    invoker = invoke.Invoker(server.url)
    first = invoker.invoke("shop", "fn", b"{}", request_id="a")
    second = invoker.invoke("shop", "fn", b"{}", request_id="b")
    server.close()
    assert (first.status, first.body) == (200, b"hello world")
    assert (second.status, second.function_error) == (500, True)
    assert server.connections == 1


def test_a_connection_the_activator_closed_while_idle_is_replaced_once() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    server = RawServer([answer, answer], close_after=1)
    invoker = invoke.Invoker(server.url)
    assert invoker.invoke("shop", "fn", b"{}", request_id="a").body == b"ok"
    time.sleep(0.1)  # the server has closed the first connection by now
    assert invoker.invoke("shop", "fn", b"{}", request_id="b").body == b"ok"
    server.close()
    assert server.connections == 2
    assert b"Kfn-Request-Id: b" in server.requests[1]


def test_a_large_body_is_sent_whole() -> None:
    server = RawServer([b"HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"])
    invoker = invoke.Invoker(server.url)
    body = b"x" * (8 * 1024 * 1024)
    outcome = invoker.invoke("shop", "fn", body, request_id="big", invocation_type="Event")
    server.close()
    assert outcome.status == 202
    assert server.requests[0].endswith(body)
    assert invoker._local.connection is None  # "Connection: close" is honoured
