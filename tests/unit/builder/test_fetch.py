"""Fetching a user's URL from a build: every resolved address checked, the checked address the
one connected to, redirects checked the same way. A loopback server stands in for the archive
host; resolvers given by the tests stand in for DNS, so nothing leaves the machine."""

from __future__ import annotations

import http.server
import ipaddress
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import ClassVar

import pytest

from kfn import urls
from kfn.builder import fetch
from kfn.builder.config import BuildError

LOOPBACK = urls.parse_networks(["127.0.0.1/32"])


class _Handler(http.server.BaseHTTPRequestHandler):
    #: (path, Host header) of each request the server answered.
    seen: ClassVar[list[tuple[str, str]]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        _Handler.seen.append((self.path, self.headers["Host"]))
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/redirect":
            self._answer(302, location=urllib.parse.parse_qs(url.query)["to"][0])
        elif url.path == "/loop":
            self._answer(307, location="/loop")
        else:
            self._answer(200, b"the archive")

    def _answer(self, status: int, body: bytes = b"", location: str = "") -> None:
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def port() -> Iterator[int]:
    """A loopback HTTP server's port; its requests are in ``_Handler.seen``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Handler.seen = []
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


def _resolver(*answers: Sequence[str]) -> tuple[fetch.Resolver, list[str]]:
    """A resolver giving ``answers`` in turn (the last one again after that), and the hosts
    it was asked for."""
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[urls.Address]:
        answer = answers[min(len(asked), len(answers) - 1)]
        asked.append(host)
        return [ipaddress.ip_address(a) for a in answer]

    return resolve, asked


def _read(url: str, **kw: object) -> bytes:
    with fetch.get(url, timeout=5, **kw) as resp:  # type: ignore[arg-type]
        return resp.read()


# --- what is refused ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "answer", "expected"),
    [
        pytest.param("http://169.254.169.254/latest/meta-data/", ["169.254.169.254"],
                     "169.254.169.254, a cloud metadata address", id="the AWS metadata address"),
        pytest.param("http://[fd00:ec2::254]/latest/", ["fd00:ec2::254"],
                     "fd00:ec2::254, a cloud metadata address", id="AWS's IPv6 metadata address"),
        pytest.param("http://metadata.google.internal/computeMetadata/v1/", ["34.1.2.3"],
                     "metadata.google.internal is a cloud metadata service",
                     id="GCP's metadata name, whatever it resolves to"),
        pytest.param("http://archive.test/code.zip", ["169.254.10.1"],
                     "archive.test resolves to 169.254.10.1, a link-local address",
                     id="a name resolving to a link-local address"),
        pytest.param("http://archive.test/code.zip", ["93.184.216.34", "127.0.0.1"],
                     "archive.test resolves to 127.0.0.1, a loopback address",
                     id="a name with one good and one loopback address"),
        pytest.param("http://archive.test/code.zip", ["::ffff:127.0.0.1"],
                     "archive.test resolves to ::ffff:7f00:1, a loopback address",
                     id="loopback mapped into IPv6"),
        pytest.param("http://0.0.0.0:8080/code.zip", ["0.0.0.0"],  # noqa: S104
                     "0.0.0.0, the unspecified address, which reaches the machine itself",
                     id="the unspecified address"),
    ],
)  # fmt: skip
def test_a_url_whose_host_is_or_resolves_to_a_refused_address_is_refused_before_connecting(
    url: str, answer: list[str], expected: str
) -> None:
    resolve, asked = _resolver(answer)
    with pytest.raises(fetch.RefusedAddressError) as err:
        _read(url, allowed=(), resolver=resolve)
    assert expected in str(err.value)
    assert "builder.archives.allowedCIDRs" in str(err.value)
    assert len(asked) == 1


def test_localhost_by_name_is_refused_by_what_it_resolves_to() -> None:
    with pytest.raises(fetch.RefusedAddressError, match=r"localhost resolves to .*a loopback"):
        _read("http://localhost:1/code.zip", allowed=())


def test_a_refusal_shows_the_url_without_its_login_or_query_string() -> None:
    resolve, _ = _resolver(["127.0.0.1"])
    with pytest.raises(fetch.RefusedAddressError) as err:
        _read("http://u:pw@archive.test/code.zip?sig=s3cr3t#x", allowed=(), resolver=resolve)
    message = str(err.value)
    assert message.startswith("refusing to fetch http://archive.test/code.zip: ")
    assert "s3cr3t" not in message
    assert "pw" not in message


# --- what is fetched, and how ----------------------------------------------------------------


def test_an_address_the_admin_allows_is_fetched(port: int) -> None:
    assert _read(f"http://127.0.0.1:{port}/code.zip", allowed=LOOPBACK) == b"the archive"


def test_the_fetcher_connects_to_the_address_it_checked_and_never_asks_the_resolver_again(
    port: int,
) -> None:
    # A rebinding resolver: the checked answer first, the metadata address to any later lookup.
    resolve, asked = _resolver(["127.0.0.1"], ["169.254.169.254"])
    body = _read(f"http://archive.test:{port}/code.zip", allowed=LOOPBACK, resolver=resolve)
    assert body == b"the archive"
    assert asked == ["archive.test"]
    assert _Handler.seen == [("/code.zip", f"archive.test:{port}")]


def test_a_redirect_to_a_refused_address_is_refused(port: int) -> None:
    to = urllib.parse.quote("http://169.254.169.254/latest/meta-data/iam?token=t0k3n")
    with pytest.raises(fetch.RefusedAddressError) as err:
        _read(f"http://127.0.0.1:{port}/redirect?to={to}", allowed=LOOPBACK)
    assert str(err.value).startswith(
        "refusing to fetch http://169.254.169.254/latest/meta-data/iam: 169.254.169.254, "
        "a cloud metadata address"
    )
    assert [path for path, _ in _Handler.seen] == [f"/redirect?to={to}"]


def test_a_redirect_to_a_name_is_resolved_and_checked_like_the_first_url(port: int) -> None:
    resolve, asked = _resolver(["127.0.0.1"], ["10.1.2.3", "169.254.169.254"])
    to = urllib.parse.quote(f"http://elsewhere.test:{port}/code.zip")
    with pytest.raises(fetch.RefusedAddressError, match=r"elsewhere\.test resolves to 169\.254"):
        _read(f"http://archive.test:{port}/redirect?to={to}", allowed=LOOPBACK, resolver=resolve)
    assert asked == ["archive.test", "elsewhere.test"]


def test_an_allowed_redirect_is_followed(port: int) -> None:
    to = urllib.parse.quote("/code.zip")
    assert _read(f"http://127.0.0.1:{port}/redirect?to={to}", allowed=LOOPBACK) == b"the archive"


def test_endless_redirects_end_the_fetch(port: int) -> None:
    with pytest.raises(BuildError, match="more than 5 redirects"):
        _read(f"http://127.0.0.1:{port}/loop", allowed=LOOPBACK)
    assert len(_Handler.seen) == fetch.MAX_REDIRECTS + 1


def test_a_request_the_http_client_refuses_is_reported_without_its_query_string(
    port: int,
) -> None:
    with pytest.raises(BuildError) as err:
        _read(f"http://127.0.0.1:{port}/code.zip?sig=s3cr3t\x01", allowed=LOOPBACK)
    assert "s3cr3t" not in str(err.value)
    assert f"fetching http://127.0.0.1:{port}/code.zip failed: " in str(err.value)


def test_only_http_and_https_are_fetched() -> None:
    with pytest.raises(BuildError, match="only http:// and https:// URLs"):
        _read("file:///etc/passwd", allowed=())
