"""``kfn.kube.pod_log`` against a stand-in API server on loopback: the query it sends, the text
it returns, and a pod that is gone."""

from __future__ import annotations

import http.server
import threading
import urllib.parse
from collections.abc import Iterator
from typing import ClassVar

import pytest
from kubernetes import client

from kfn import kube

LOG = "kfn runtime: python listening on *:8080\nkfn runtime: init error {}\n"


class _Handler(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, dict[str, list[str]], str]]] = []

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        _Handler.seen.append((url.path, urllib.parse.parse_qs(url.query), self.headers["Accept"]))
        if url.path.endswith("/pods/gone/log"):
            body = b'{"kind":"Status","message":"pods \\"gone\\" not found","code":404}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
        else:
            body = LOG.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def api_server(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[list[tuple[str, dict[str, list[str]], str]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    configuration = client.Configuration(host=f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setattr(kube, "_api", client.ApiClient(configuration))
    _Handler.seen = []
    yield _Handler.seen
    server.shutdown()
    server.server_close()


def test_the_log_tail_of_a_pods_container_is_read_as_text(
    api_server: list[tuple[str, dict[str, list[str]], str]],
) -> None:
    text = kube.pod_log("team", "hello-1", "function", tail_lines=200, limit_bytes=4096)
    assert text == LOG
    [(path, query, accept)] = api_server
    assert path == "/api/v1/namespaces/team/pods/hello-1/log"
    assert query == {"container": ["function"], "tailLines": ["200"], "limitBytes": ["4096"]}
    assert accept == "*/*"


def test_the_log_of_a_pod_that_is_gone_is_empty(
    api_server: list[tuple[str, dict[str, list[str]], str]],
) -> None:
    assert kube.pod_log("team", "gone", "function", tail_lines=10, limit_bytes=100) == ""
