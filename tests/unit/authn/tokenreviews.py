"""A stand-in for the API server's TokenReview, on loopback, behind the real ``kfn.kube``.

Tests point :mod:`kfn.kube`'s client at it (:func:`serving`, the ``token_reviews``
fixture); it answers ``POST /apis/authentication.k8s.io/v1/tokenreviews`` from a table of the
tokens it knows, each valid for the audiences listed with it, and counts the reviews it was
asked. ``hold``
keeps answers back until it is set; ``refuse`` answers 403 as an API server does when kfn's
own ServiceAccount may not create TokenReviews.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import threading
from collections.abc import Iterator

import pytest
from kubernetes import client

from kfn import kube

PATH = "/apis/authentication.k8s.io/v1/tokenreviews"


@dataclasses.dataclass
class Known:
    """A token the stand-in accepts: whom it names and the audiences it was made for."""

    username: str
    audiences: tuple[str, ...]


class TokenReviewServer:
    def __init__(self) -> None:
        self.known: dict[str, Known] = {}
        #: (token, audiences asked) of each review, in order.
        self.asked: list[tuple[str, tuple[str, ...]]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.refuse = False
        self.lock = threading.Lock()

    def review(self, token: str, audiences: tuple[str, ...]) -> tuple[int, dict[str, object]]:
        with self.lock:
            self.asked.append((token, audiences))
        self.hold.wait(10)
        if self.refuse:
            return 403, {"kind": "Status", "message": "tokenreviews is forbidden"}
        known = self.known.get(token)
        if known is None or not set(audiences) & set(known.audiences):
            status: dict[str, object] = {"authenticated": False, "error": "invalid bearer token"}
        else:
            status = {
                "authenticated": True,
                "user": {"username": known.username, "groups": ["system:serviceaccounts"]},
                "audiences": sorted(set(audiences) & set(known.audiences)),
            }
        return 201, {"kind": "TokenReview", "status": status}

    def serve(self) -> Iterator[str]:
        reviews = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                if self.path != PATH:
                    code, doc = 404, {"message": "not found"}
                else:
                    spec = body["spec"]
                    code, doc = reviews.review(spec["token"], tuple(spec.get("audiences") or ()))
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            self.hold.set()
            server.shutdown()
            server.server_close()


def serving(monkeypatch: pytest.MonkeyPatch) -> Iterator[TokenReviewServer]:
    """The stand-in, with :mod:`kfn.kube` talking to it (a fixture's body)."""
    fake = TokenReviewServer()
    served = fake.serve()
    url = next(served)
    monkeypatch.setattr(kube, "_api", client.ApiClient(client.Configuration(host=url)))
    yield fake
    next(served, None)
