"""SigV4 signing against AWS's published vectors, and the S3 calls polling makes.

The vectors: the ``aws-sig-v4-test-suite`` (service ``service``, 2015-08-30) and the
examples of the S3 documentation's "Signature Calculations for the Authorization Header"
(bucket ``examplebucket``, 2013-05-24). The client is checked against a small S3 stand-in
on 127.0.0.1 that pages its listing.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import socket
import threading
import time

import pytest

from kfn.triggers.bucket import s3
from tests.unit.triggers.bucket.conftest import Store, listing_xml

SUITE = s3.Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SUITE_DATE = "20150830T123600Z"
S3_DOCS = s3.Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
S3_DATE = "20130524T000000Z"
S3_HOST = "examplebucket.s3.amazonaws.com"


def signature(header: str) -> str:
    return header.rsplit("Signature=", 1)[1]


@pytest.mark.parametrize(
    ("name", "method", "params", "extra", "expected"),
    [
        ("get-vanilla", "GET", [], {},
         "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        ("get-vanilla-query-order-key-case", "GET", [("Param2", "value2"), ("Param1", "value1")],
         {}, "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
        ("post-vanilla", "POST", [], {},
         "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
        ("post-header-value-case", "POST", [], {"My-Header1": "VALUE1"},
         "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"),
    ],
)  # fmt: skip
def test_the_signer_reproduces_the_aws_sigv4_test_suite(
    name: str, method: str, params: list[tuple[str, str]], extra: dict[str, str], expected: str
) -> None:
    del name
    headers = {"Host": "example.amazonaws.com", "X-Amz-Date": SUITE_DATE, **extra}
    header = s3.authorization(
        method=method, path="/", params=params, headers=headers, payload_hash=s3.EMPTY_SHA256,
        credentials=SUITE, region="us-east-1", service="service", amz_date=SUITE_DATE,
    )  # fmt: skip
    assert header.startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
    )
    assert signature(header) == expected


def s3_headers(**extra: str) -> dict[str, str]:
    return {"host": S3_HOST, "x-amz-date": S3_DATE, **extra}


def test_the_signer_reproduces_the_s3_documentation_examples() -> None:
    def sign(method: str, path: str, params: list[tuple[str, str]], headers: dict[str, str],
             payload: str) -> str:  # fmt: skip
        return signature(
            s3.authorization(
                method=method,
                path=path,
                params=params,
                headers=headers,
                payload_hash=payload,
                credentials=S3_DOCS,
                region="us-east-1",
                service="s3",
                amz_date=S3_DATE,
            )
        )

    empty = s3.EMPTY_SHA256
    get_object = s3_headers(range="bytes=0-9", **{"x-amz-content-sha256": empty})
    assert sign("GET", "/test.txt", [], get_object, empty) == (
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )
    body = hashlib.sha256(b"Welcome to Amazon S3.").hexdigest()
    put_object = s3_headers(
        date="Fri, 24 May 2013 00:00:00 GMT",
        **{"x-amz-storage-class": "REDUCED_REDUNDANCY", "x-amz-content-sha256": body},
    )
    put_path = s3.uri_encode("/test$file.text", encode_slash=False)
    assert sign("PUT", put_path, [], put_object, body) == (
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
    )
    listing = s3_headers(**{"x-amz-content-sha256": empty})
    assert sign("GET", "/", [("prefix", "J"), ("max-keys", "2")], listing, empty) == (
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
    )
    assert sign("GET", "/", [("lifecycle", "")], listing, empty) == (
        "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
    )


def test_the_signing_key_changes_with_day_region_and_service() -> None:
    base = s3.signing_key("secret", "20260101", "us-east-1", "s3")
    assert base != s3.signing_key("secret", "20260102", "us-east-1", "s3")
    assert base != s3.signing_key("secret", "20260101", "eu-west-1", "s3")
    assert base != s3.signing_key("secret", "20260101", "us-east-1", "sts")


def test_credentials_never_show_their_secret() -> None:
    credentials = s3.Credentials("AKID", "very-secret", "token-secret")
    assert "very-secret" not in repr(credentials)
    assert "token-secret" not in repr(credentials)


# --- listings ----------------------------------------------------------------------------------


def test_a_listing_page_gives_keys_unquoted_etags_sizes_and_the_next_token() -> None:
    page = s3.parse_list_page(listing_xml([("a &amp; b.txt", "e1", 3)], "t2"))
    assert page.objects == [s3.ObjectInfo("a & b.txt", "e1", 3)]
    assert page.next_token == "t2"
    assert s3.parse_list_page(listing_xml([], None)) == s3.Page([], None)


def test_a_store_error_is_read_from_its_xml() -> None:
    body = b"<Error><Code>InvalidAccessKeyId</Code><Message>no such key</Message></Error>"
    error = s3.parse_error(403, body)
    assert (error.status, error.code, error.message) == (403, "InvalidAccessKeyId", "no such key")
    assert s3.parse_error(404, b"").code == "NotFound"


def fixed_clock() -> datetime.datetime:
    return datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def test_listing_follows_continuation_tokens_and_signs_each_page(store: Store) -> None:
    client = s3.Client(store.url, "us-east-1", s3.Credentials("AKID", "secret"), clock=fixed_clock)
    found = list(client.list_objects("bkt", "in/"))
    assert [o.key for o in found] == ["in/a", "in/b", "in/c"]
    assert [o.etag for o in found] == ["e1", "e2", "e3"]
    gets = [s for s in store.seen if s[0] == "GET"]
    assert len(gets) == 2
    for _, path, headers in gets:
        assert "list-type=2" in path
        assert headers["x-amz-date"] == "20260102T030405Z"
        assert headers["authorization"].startswith(
            "AWS4-HMAC-SHA256 Credential=AKID/20260102/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="
        )
        assert "secret" not in headers["authorization"]


def test_without_credentials_requests_go_unsigned(store: Store) -> None:
    client = s3.Client(store.url, "us-east-1", None)
    assert len(list(client.list_objects("bkt"))) == 4
    assert all("authorization" not in {k.lower() for k in s[2]} for s in store.seen)


def test_a_missing_bucket_and_an_unreachable_store_raise_s3_errors(store: Store) -> None:
    client = s3.Client(store.url, "us-east-1", None)
    client.head_bucket("bkt")
    with pytest.raises(s3.S3Error) as missing:
        list(client.list_objects("nope"))
    assert (missing.value.status, missing.value.code) == (404, "NoSuchBucket")
    with pytest.raises(s3.S3Error) as head:
        client.head_bucket("nope")
    assert head.value.status == 404
    port = unused_port()
    with pytest.raises(s3.S3Error) as unreachable:
        s3.Client(f"http://127.0.0.1:{port}", "us-east-1", None, timeout=2).head_bucket("bkt")
    assert unreachable.value.status == 0


def unused_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RawEndpoint:
    """An endpoint on 127.0.0.1 that answers any request with the bytes ``answer`` yields,
    pausing ``pause`` seconds between pieces."""

    def __init__(self, pieces: list[bytes], pause: float = 0.0) -> None:
        self.pieces = pieces
        self.pause = pause
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sent = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            conn, _ = self.listener.accept()
            with conn:
                conn.recv(65536)
                for piece in self.pieces:
                    conn.sendall(piece)
                    self.sent += len(piece)
                    time.sleep(self.pause)

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=5)


def test_an_answer_announcing_more_than_a_listing_page_fails_the_poll_unread() -> None:
    endpoint = RawEndpoint([b"HTTP/1.1 200 OK\r\nContent-Length: 9000000000\r\n\r\n<x>"])
    try:
        with pytest.raises(s3.S3Error) as caught:
            list(s3.Client(endpoint.url, "us-east-1", None, timeout=5).list_objects("bkt"))
    finally:
        endpoint.close()
    assert caught.value.code == "AnswerTooLarge"
    assert "announced an answer of 9000000000 bytes" in caught.value.message


def test_an_endless_chunked_answer_is_read_only_up_to_the_bound() -> None:
    chunk = b"x" * 65536
    piece = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    endpoint = RawEndpoint([head] + [piece] * 64)  # 4 MiB offered
    try:
        client = s3.Client(endpoint.url, "us-east-1", None, timeout=5, max_answer=256 * 1024)
        with pytest.raises(s3.S3Error) as caught:
            list(client.list_objects("bkt"))
    finally:
        endpoint.close()
    assert caught.value.code == "AnswerTooLarge"
    assert "sent more than 262144 bytes in one answer" in caught.value.message


def test_an_answer_dripping_in_past_its_deadline_fails_the_poll() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    endpoint = RawEndpoint([head] + [b"1\r\nx\r\n"] * 100, pause=0.05)
    try:
        client = s3.Client(endpoint.url, "us-east-1", None, timeout=5, answer_deadline=0.3)
        started = time.monotonic()
        with pytest.raises(s3.S3Error) as caught:
            list(client.list_objects("bkt"))
        took = time.monotonic() - started
    finally:
        endpoint.close()
    assert caught.value.code == "AnswerTooSlow"
    assert 0.3 <= took < 1.0
