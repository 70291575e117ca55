"""Fetching a user's URL from a build, only from addresses the URL rules allow.

``urllib.request.urlopen`` resolves a host when it connects and follows redirects by itself, so
a check made before it could be undone by a second DNS answer (rebinding) or by a redirect to
``169.254.169.254``. This fetcher takes each step itself, for the URL and for every redirect:

1. resolve the host once and check every address it resolves to (:func:`kfn.urls.refusal`):
   one refused address refuses the URL;
2. connect to one of those checked addresses, never to the name again, and check the address
   the socket is connected to once more;
3. speak HTTP over that connection, or TLS with the URL's host for SNI and the certificate;
4. follow a redirect (at most :data:`MAX_REDIRECTS`) by the same steps.

Every message shows the URL as :func:`kfn.urls.redact` does: a presigned URL's query string
carries its credentials.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from typing import Final

from kfn import urls
from kfn.builder.config import BuildError

MAX_REDIRECTS: Final = 5
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_PORTS: Final = {"http": 80, "https": 443}

#: Resolves a host and port to the addresses to check and connect to.
Resolver = Callable[[str, int], Sequence[urls.Address]]


class RefusedAddressError(BuildError):
    """A URL whose host is, or resolves to, an address builds may not fetch from."""


def resolve(host: str, port: int) -> list[urls.Address]:
    """Every address ``host`` resolves to, in the resolver's order, each once."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise BuildError(f"cannot resolve the host {host}: {exc}") from exc
    found: list[urls.Address] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]))
        if address not in found:
            found.append(address)
    return found


def _check(
    url: str, host: str, addresses: Sequence[urls.Address], allowed: Sequence[urls.Network]
) -> None:
    problem = urls.refusal(host, addresses, allowed)
    if problem is not None:
        raise RefusedAddressError(f"refusing to fetch {urls.redact(url)}: {problem}; {urls.ADVICE}")


def _connect(
    url: str,
    host: str,
    *,
    port: int,
    addresses: Sequence[urls.Address],
    allowed: Sequence[urls.Network],
    timeout: float,
) -> socket.socket:
    """A connection to the first checked address that answers, its peer checked again."""
    failure: OSError | None = None
    for address in addresses:
        try:
            sock = socket.create_connection((str(address), port), timeout=timeout)
        except OSError as exc:
            failure = exc
            continue
        try:
            peer = ipaddress.ip_address(str(sock.getpeername()[0]))
            _check(url, host, [peer], allowed)
        except BaseException:
            sock.close()
            raise
        return sock
    raise BuildError(f"cannot connect to {urls.redact(url)}: {failure or 'no address'}")


@contextlib.contextmanager
def get(
    url: str,
    *,
    allowed: Sequence[urls.Network],
    timeout: float,
    resolver: Resolver = resolve,  # tests give a resolver of their own
) -> Iterator[http.client.HTTPResponse]:
    """The answer to ``GET url`` (status 200), its body not yet read.

    Anything else raises :class:`BuildError`: a refused address (:class:`RefusedAddressError`),
    a failed connection or TLS handshake, too many redirects, another status.
    """
    for _ in range(MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme not in _PORTS or not host:
            raise BuildError(f"cannot fetch {urls.redact(url)}: only http:// and https:// URLs")
        try:
            port = parts.port or _PORTS[parts.scheme]
        except ValueError as exc:
            raise BuildError(f"cannot fetch {urls.redact(url)}: {exc}") from exc
        addresses = list(resolver(host, port))
        _check(url, host, addresses, allowed)
        sock = _connect(url, host, port=port, addresses=addresses, allowed=allowed, timeout=timeout)
        conn = _connection(url, parts.scheme, host, port=port, sock=sock, timeout=timeout)
        try:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            try:
                conn.request("GET", target, headers={"User-Agent": "kfn-builder"})
                resp = conn.getresponse()
            except http.client.InvalidURL as exc:  # its message quotes the query string
                raise BuildError(
                    f"fetching {urls.redact(url)} failed: the URL holds characters a request "
                    "cannot carry"
                ) from exc
            except (OSError, http.client.HTTPException) as exc:
                raise BuildError(f"fetching {urls.redact(url)} failed: {exc}") from exc
            location = resp.getheader("Location")
            if resp.status in _REDIRECTS and location:
                url = urllib.parse.urljoin(url, location)
                continue
            if resp.status != 200:
                raise BuildError(
                    f"fetching {urls.redact(url)} failed: HTTP {resp.status} {resp.reason}"
                )
            yield resp
            return
        finally:
            conn.close()
    raise BuildError(f"fetching {urls.redact(url)} failed: more than {MAX_REDIRECTS} redirects")


def _connection(
    url: str, scheme: str, host: str, *, port: int, sock: socket.socket, timeout: float
) -> http.client.HTTPConnection:
    """An HTTP connection over ``sock``, which is already connected to a checked address."""
    if scheme == "https":
        try:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise BuildError(f"TLS with {urls.redact(url)} failed: {exc}") from exc
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=timeout)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.sock = sock  # connected here, so http.client never resolves the name itself
    return conn
