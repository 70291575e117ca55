"""kfn.registry_auth.server: the endpoint's bounds, over real loopback connections."""

from __future__ import annotations

import datetime
import http.client
import json
import pathlib
import socket
import ssl
import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from kfn.registry_auth import jwt, policy, server, tokens
from tests.unit import registries

SETTINGS = tokens.Settings(
    issuer="i",
    service="s",
    signing_key=jwt.SigningKey(ec.generate_private_key(ec.SECP256R1())),
    robot_key=b"r" * 32,
    admin_password="pw",
    policy=policy.Policy(("kfn/",)),
    ttl=datetime.timedelta(minutes=5),
)


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, int]]:
    """The service over plain HTTP, reading requests for at most half a second and taking
    at most three connections at once."""
    monkeypatch.setattr(server.Handler, "timeout", 0.5)
    monkeypatch.setattr(server, "MAX_CONNECTIONS", 3)
    srv, thread = server.serve(("127.0.0.1", 0), SETTINGS)
    try:
        yield "127.0.0.1", srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def _raw(address: tuple[str, int], data: bytes) -> tuple[int, bytes]:
    """Sends ``data`` as is; the status and body of the answer."""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_the_token_endpoint_answers_json_and_closes_the_connection(
    service: tuple[str, int],
) -> None:
    conn = http.client.HTTPConnection(*service, timeout=5)
    conn.request("GET", "/token?service=s&scope=repository:kfn/base:pull")
    resp = conn.getresponse()
    doc = json.loads(resp.read())
    assert resp.status == 200
    assert resp.getheader("Connection") == "close"
    assert resp.getheader("Cache-Control") == "no-store"
    assert set(doc) == {"token", "access_token", "expires_in", "issued_at", "scope"}
    conn.close()


def test_health_unknown_paths_and_other_methods(service: tuple[str, int]) -> None:
    assert _raw(service, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200
    assert _raw(service, b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 404
    assert _raw(service, b"DELETE /token HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 405
    assert _raw(service, b"POST /v2/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n")[0] == 404


def test_wrong_credentials_are_answered_401_with_a_basic_challenge(
    service: tuple[str, int],
) -> None:
    conn = http.client.HTTPConnection(*service, timeout=5)
    conn.request("GET", "/token?service=s", headers={"Authorization": "Basic YWRtaW46bm8="})
    resp = conn.getresponse()
    assert resp.status == 401
    assert resp.getheader("WWW-Authenticate", "").startswith("Basic ")
    assert json.loads(resp.read())["errors"][0]["code"] == "UNAUTHORIZED"
    conn.close()


def test_a_request_line_too_long_is_refused(service: tuple[str, int]) -> None:
    line = b"GET /token?scope=" + b"x" * server.MAX_REQUEST_LINE + b" HTTP/1.1\r\n\r\n"
    assert _raw(service, line)[0] == 414


def test_a_request_head_too_large_is_refused(service: tuple[str, int]) -> None:
    headers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"y" * 1000) for i in range(20))
    assert _raw(service, b"GET /token HTTP/1.1\r\n" + headers + b"\r\n")[0] == 431


def test_a_request_body_is_refused(service: tuple[str, int]) -> None:
    request = b"GET /token HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
    assert _raw(service, request)[0] == 413
    chunked = b"GET /token HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert _raw(service, chunked)[0] == 413


FORM = "application/x-www-form-urlencoded"


def _form(address: tuple[str, int], body: bytes, kind: str = FORM) -> tuple[int, dict[str, str]]:
    head = f"POST /token HTTP/1.1\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n\r\n"
    status, answer = _raw(address, head.encode() + body)
    return status, json.loads(answer)


def test_the_oauth2_password_grant_containerd_sends_gets_a_token(
    service: tuple[str, int],
) -> None:
    form = b"grant_type=password&username=admin&password=pw&service=s&client_id=containerd-client"
    status, doc = _form(service, form + b"&scope=repository%3Afn%2Fa%2Fapp%3Apull")
    assert status == 200
    assert doc["access_token"] == doc["token"]
    assert doc["scope"] == "repository:fn/a/app:pull"


def test_a_wrong_password_in_the_form_is_refused(service: tuple[str, int]) -> None:
    status, doc = _form(service, b"grant_type=password&username=admin&password=no&service=s")
    assert status == 401
    assert doc["errors"][0]["code"] == "UNAUTHORIZED"


def test_a_refresh_token_grant_is_refused_as_unsupported(service: tuple[str, int]) -> None:
    status, doc = _form(service, b"grant_type=refresh_token&refresh_token=x&service=s")
    assert (status, doc["error"]) == (400, "unsupported_grant_type")


def test_a_form_too_large_or_of_another_type_is_refused(service: tuple[str, int]) -> None:
    assert _form(service, b"x" * (server.MAX_FORM + 1))[0] == 413
    assert _form(service, b"{}", kind="application/json")[0] == 415


def test_a_silent_client_is_dropped_after_the_read_timeout(service: tuple[str, int]) -> None:
    with socket.create_connection(service, timeout=5) as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""
        assert time.monotonic() - started < 3


def test_connections_past_the_cap_are_closed_at_once_and_service_resumes(
    service: tuple[str, int],
) -> None:
    # The listener accepts in order, so the three idle connections hold the slots by the
    # time the fourth is accepted.
    idle = [socket.create_connection(service, timeout=5) for _ in range(3)]
    try:
        with socket.create_connection(service, timeout=5) as extra:
            started = time.monotonic()
            assert extra.recv(1) == b""
            assert time.monotonic() - started < 0.4, "closed before the idle ones time out"
    finally:
        for sock in idle:
            sock.close()
    # The slots come back as the idle connections' threads see them closed.
    deadline = time.monotonic() + 2
    while True:
        try:
            assert _raw(service, b"GET /healthz HTTP/1.1\r\n\r\n")[0] == 200
            break
        except (IndexError, ValueError):
            if time.monotonic() > deadline:
                raise


def test_over_tls_a_stalled_handshake_does_not_hold_up_other_clients(
    tmp_path: pathlib.Path,
) -> None:
    pki = registries.make_pki(tmp_path)
    tls = server.tls_context(str(pki.cert_file), str(pki.key_file))
    srv, thread = server.serve(("127.0.0.1", 0), SETTINGS, tls)
    port = srv.server_address[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            context = ssl.create_default_context(cafile=str(pki.ca_file))
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=context)
            conn.request("GET", "/healthz")
            assert conn.getresponse().status == 200
            conn.close()
        untrusted = http.client.HTTPSConnection("127.0.0.1", port, timeout=2)
        with pytest.raises(ssl.SSLCertVerificationError):
            untrusted.request("GET", "/healthz")
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)
