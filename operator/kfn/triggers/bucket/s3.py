"""The little of S3 polling needs: list a bucket, check it exists, signed with SigV4.

Written on the standard library, because two read-only calls do not justify an SDK in the
image. Requests use path-style addressing (``<endpoint>/<bucket>``), which every
S3-compatible store understands. Signing (:func:`authorization`) is pure and checked
against AWS's published test vectors. Secrets never appear in errors, logs or ``repr``.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import http.client
import ssl
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from typing import Final
from urllib import parse

from kfn.clock import Clock, utcnow
from kfn.triggers.bucket import events

ALGORITHM: Final = "AWS4-HMAC-SHA256"
EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()
_NS: Final = "{http://s3.amazonaws.com/doc/2006-03-01/}"
#: Most keys one ListObjectsV2 page returns (S3's own maximum).
PAGE_SIZE: Final = 1000
#: The largest answer read from a store. A full page is 1,000 keys of at most 1,024 bytes
#: each (S3's limits), XML-escaped, with their ETag, size and more: under 8 MiB even with
#: every character escaped, and about 300 KiB for usual keys. An endpoint that sends more is
#: not S3 (or is hostile): the poll fails rather than the worker holding what it sends.
MAX_ANSWER_BYTES: Final = 8 * 1024 * 1024
#: How long reading one answer may take in all (the socket time-out bounds each read only).
ANSWER_DEADLINE: Final = 60.0
_READ_PIECE: Final = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Credentials:
    """An access key pair; the secret is left out of ``repr`` so it cannot leak into logs."""

    access_key: str
    secret_key: str = dataclasses.field(repr=False)
    session_token: str | None = dataclasses.field(default=None, repr=False)


class S3Error(Exception):
    """The store answered with an error (``status`` 0: no answer at all)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}" if status else message)
        self.status = status
        self.code = code
        self.message = message


# --- signing (pure) --------------------------------------------------------------------------


def uri_encode(text: str, *, encode_slash: bool = True) -> str:
    """SigV4's URI encoding: everything but ``A-Za-z0-9-._~`` as upper-case ``%XX``."""
    return parse.quote(text, safe="" if encode_slash else "/")


def canonical_query(params: list[tuple[str, str]]) -> str:
    """The query string as signed: each name and value encoded, sorted by name, then value."""
    encoded = sorted((uri_encode(k), uri_encode(v)) for k, v in params)
    return "&".join(f"{k}={v}" for k, v in encoded)


def _canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    folded: dict[str, str] = {}
    for name, value in headers.items():
        folded[name.lower().strip()] = " ".join(value.split())
    names = sorted(folded)
    return "".join(f"{n}:{folded[n]}\n" for n in names), ";".join(names)


def canonical_request(
    method: str,
    path: str,
    params: list[tuple[str, str]],
    headers: Mapping[str, str],
    payload_hash: str,
) -> tuple[str, str]:
    """The canonical request and the signed header list. ``path`` is already URI-encoded
    (S3 signs the path as sent, without normalising it)."""
    canonical, signed = _canonical_headers(headers)
    text = "\n".join(
        [method, path or "/", canonical_query(params), canonical, signed, payload_hash]
    )
    return text, signed


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """The key derived for one day, region and service."""
    key = ("AWS4" + secret_key).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def authorization(
    *,
    method: str,
    path: str,
    params: list[tuple[str, str]],
    headers: Mapping[str, str],
    payload_hash: str,
    credentials: Credentials,
    region: str,
    service: str,
    amz_date: str,
) -> str:
    """The ``Authorization`` header for a request whose ``headers`` (to be signed) include
    ``host`` and ``x-amz-date`` (= ``amz_date``, ``YYYYMMDDTHHMMSSZ``)."""
    creq, signed = canonical_request(method, path, params, headers, payload_hash)
    day = amz_date[:8]
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    key = signing_key(credentials.secret_key, day, region, service)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )


def amz_date(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


# --- listing (pure parsing) ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    """One object of a listing."""

    key: str
    etag: str
    size: int
    #: Its ``LastModified``; None when the store gave none (or one that is not a time).
    modified: datetime.datetime | None = None


@dataclasses.dataclass(frozen=True)
class Page:
    objects: list[ObjectInfo]
    next_token: str | None


def _find(element: ET.Element, name: str) -> str:
    found = element.find(_NS + name)
    if found is None:
        found = element.find(name)
    return (found.text or "") if found is not None else ""


def parse_list_page(body: bytes) -> Page:
    """One ListObjectsV2 answer: its objects and the token of the next page, if any."""
    try:
        root = ET.fromstring(body)  # noqa: S314 - the store's answer, no entity expansion
    except ET.ParseError as exc:
        raise S3Error(0, "InvalidResponse", f"the listing is not XML: {exc}") from None
    contents = root.findall(_NS + "Contents") or root.findall("Contents")
    objects = [
        ObjectInfo(
            key=_find(item, "Key"),
            etag=_find(item, "ETag").strip('"'),
            size=int(_find(item, "Size") or 0),
            modified=events.parse_time(_find(item, "LastModified").strip()),
        )
        for item in contents
    ]
    truncated = _find(root, "IsTruncated").lower() == "true"
    token = _find(root, "NextContinuationToken") if truncated else ""
    return Page(objects, token or None)


def parse_error(status: int, body: bytes) -> S3Error:
    """The store's XML error (``<Error><Code>..</Code><Message>..</Message></Error>``)."""
    code, message = http.client.responses.get(status, "Error").replace(" ", ""), ""
    try:
        root = ET.fromstring(body)  # noqa: S314
        code = _find(root, "Code") or code
        message = _find(root, "Message")
    except ET.ParseError:
        pass
    return S3Error(status, code, message or code)


# --- the client --------------------------------------------------------------------------------


class Client:
    """ListObjectsV2 and HeadBucket against one endpoint; one connection per call."""

    def __init__(
        self,
        endpoint: str,
        region: str,
        credentials: Credentials | None,
        *,
        timeout: float = 10.0,
        clock: Clock = utcnow,
        max_answer: int = MAX_ANSWER_BYTES,
        answer_deadline: float = ANSWER_DEADLINE,
    ) -> None:
        url = parse.urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"the endpoint must be an http(s) URL: {endpoint!r}")
        self.scheme = url.scheme
        self.netloc = url.netloc
        self.base_path = url.path.rstrip("/")
        self.region = region
        self.credentials = credentials
        self.timeout = timeout
        self.clock = clock
        self.max_answer = max_answer
        self.answer_deadline = answer_deadline

    def _connection(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(
                self.netloc, timeout=self.timeout, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self.netloc, timeout=self.timeout)

    def request(self, method: str, bucket: str, params: list[tuple[str, str]]) -> tuple[int, bytes]:
        """Sends a signed request without a body to the bucket; the status and the body."""
        path = uri_encode(f"{self.base_path}/{bucket}", encode_slash=False)
        now = self.clock()
        headers = {
            "host": self.netloc,
            "x-amz-content-sha256": EMPTY_SHA256,
            "x-amz-date": amz_date(now),
        }
        if self.credentials is not None:
            if self.credentials.session_token:
                headers["x-amz-security-token"] = self.credentials.session_token
            headers["authorization"] = authorization(
                method=method,
                path=path,
                params=params,
                headers=headers,
                payload_hash=EMPTY_SHA256,
                credentials=self.credentials,
                region=self.region,
                service="s3",
                amz_date=headers["x-amz-date"],
            )
        query = canonical_query(params)
        target = f"{path}?{query}" if query else path
        connection = self._connection()
        try:
            connection.request(method, target, headers=headers)
            response = connection.getresponse()
            return response.status, self._read(response)
        except (OSError, http.client.HTTPException) as exc:
            raise S3Error(0, "ConnectionFailed", f"{self.scheme}://{self.netloc}: {exc}") from None
        finally:
            connection.close()

    def _read(self, response: http.client.HTTPResponse) -> bytes:
        """The answer's body, at most :attr:`max_answer` bytes read within
        :attr:`answer_deadline`; raises :class:`S3Error` past either."""
        where = f"{self.scheme}://{self.netloc}"
        declared = response.getheader("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_answer:
            raise S3Error(
                response.status,
                "AnswerTooLarge",
                f"{where} announced an answer of {int(declared)} bytes, more than the "
                f"{self.max_answer} a listing page can take; is the endpoint an S3 store?",
            )
        deadline = time.monotonic() + self.answer_deadline
        body = bytearray()
        while piece := response.read1(_READ_PIECE):
            body += piece
            if len(body) > self.max_answer:
                raise S3Error(
                    response.status,
                    "AnswerTooLarge",
                    f"{where} sent more than {self.max_answer} bytes in one answer, more than "
                    "a listing page can take; is the endpoint an S3 store?",
                )
            if time.monotonic() > deadline:
                raise S3Error(
                    0,
                    "AnswerTooSlow",
                    f"{where} took more than {self.answer_deadline:.0f} s to send one answer",
                )
        return bytes(body)

    def head_bucket(self, bucket: str) -> None:
        """Returns when the bucket exists and the credentials may use it; raises
        :class:`S3Error` otherwise."""
        status, body = self.request("HEAD", bucket, [])
        if not 200 <= status < 300:
            raise parse_error(status, body)

    def list_objects(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under ``prefix``, page after page."""
        token: str | None = None
        while True:
            params = [("list-type", "2"), ("max-keys", str(PAGE_SIZE))]
            if prefix:
                params.append(("prefix", prefix))
            if token:
                params.append(("continuation-token", token))
            status, body = self.request("GET", bucket, params)
            if not 200 <= status < 300:
                raise parse_error(status, body)
            page = parse_list_page(body)
            yield from page.objects
            if page.next_token is None:
                return
            token = page.next_token
