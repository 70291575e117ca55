"""An S3 stand-in on 127.0.0.1 for the bucket worker's tests: it lists and pages bucket ``bkt``."""

from __future__ import annotations

import dataclasses
import http.server
import threading
import urllib.parse
from collections.abc import Iterator, Mapping

import pytest


def listing_xml(
    keys: list[tuple[str, str, int]], token: str | None, modified: Mapping[str, str] | None = None
) -> bytes:
    """A ListObjectsV2 answer as S3 writes it (with ``LastModified`` for the keys in
    ``modified``)."""
    times = modified or {}
    items = "".join(
        f"<Contents><Key>{key}</Key>"
        + (f"<LastModified>{times[key]}</LastModified>" if key in times else "")
        + f"<ETag>&quot;{etag}&quot;</ETag><Size>{size}</Size></Contents>"
        for key, etag, size in keys
    )
    more = f"<IsTruncated>true</IsTruncated><NextContinuationToken>{token}</NextContinuationToken>"
    tail = more if token else "<IsTruncated>false</IsTruncated>"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<Name>bkt</Name>{items}{tail}</ListBucketResult>"
    ).encode()


@dataclasses.dataclass
class Store:
    """The stand-in's state: edit ``objects`` ({key: (etag, size)}) to change the bucket."""

    url: str = ""
    objects: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)
    seen: list[tuple[str, str, dict[str, str]]] = dataclasses.field(default_factory=list)
    page_size: int = 2
    refuse: bool = False
    #: ``LastModified`` of the keys that have one, as the store writes it.
    modified: dict[str, str] = dataclasses.field(default_factory=dict)


def _handler(store: Store) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            store.seen.append(("HEAD", self.path, dict(self.headers)))
            self._send(200 if self.path == "/bkt" else 404, b"")

        def do_GET(self) -> None:
            store.seen.append(("GET", self.path, dict(self.headers)))
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            if store.refuse:
                body = (
                    b"<Error><Code>InvalidAccessKeyId</Code><Message>unknown key</Message></Error>"
                )
                self._send(403, body)
                return
            if url.path != "/bkt":
                self._send(404, b"<Error><Code>NoSuchBucket</Code><Message>gone</Message></Error>")
                return
            prefix = query.get("prefix", "")
            keys = sorted((k, *v) for k, v in store.objects.items() if k.startswith(prefix))
            start = int(query.get("continuation-token", "0"))
            end = start + store.page_size
            token = str(end) if end < len(keys) else None
            self._send(200, listing_xml(keys[start:end], token, store.modified))

    return Handler


@pytest.fixture
def store() -> Iterator[Store]:
    state = Store(objects={"in/a": ("e1", 1), "in/b": ("e2", 2), "in/c": ("e3", 3), "x": ("e4", 4)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
