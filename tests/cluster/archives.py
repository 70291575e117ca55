"""Archives served to builds from the node's address: pods reach it, nothing off the machine
does. ``test_builds`` fetches code archives from it and ``test_layers`` layer archives."""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator

from kfncluster import config


@dataclasses.dataclass
class Served:
    """The server's base URL, the files it serves by path, and how often each was fetched."""

    url: str
    files: dict[str, bytes] = dataclasses.field(default_factory=dict)
    hits: dict[str, int] = dataclasses.field(default_factory=dict)


@contextlib.contextmanager
def serving() -> Iterator[Served]:
    """An HTTP server on the node IP for the block's length; fill ``files`` to serve them."""
    served = Served("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.hits[self.path] = served.hits.get(self.path, 0) + 1
            body = served.files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((config.NODE_IP, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    served.url = f"http://{config.NODE_IP}:{server.server_address[1]}"
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()


def zipped(files: dict[str, str]) -> bytes:
    """A zip archive of ``files`` (name → text)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return buf.getvalue()
