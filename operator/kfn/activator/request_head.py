"""A client's request head as the proxy keeps it, and the head it sends on to the pod.

Headers are filtered while httptools parses them, into one byte string: hop-by-hop
ones are dropped, the few the proxy acts on (framing, ``Expect``, the invocation
type, the caller's request id, ``X-Forwarded-*`` and ``Forwarded``) are noted, and every
other one is kept as it came. No header dict is built. The head sent to the pod is that byte
string plus the runtime contract's ``Kfn-*`` headers and the activator's own
``X-Forwarded-For`` (one entry: the client, :mod:`~kfn.activator.forwarding`),
``X-Forwarded-Proto`` and ``X-Forwarded-Host``; what a client sent in those, and in
``Forwarded``, reaches the pod only as far as a trusted proxy vouches for it.

The caller's ``Authorization`` is noted, and passed on only where it is the application's
own: on a door that checks every token it never is, and a request for a checked route
drops it once routed (:meth:`RequestHead.hide_authorization`), since a function that
received a token kfn accepts could replay it to the activator.
"""

from __future__ import annotations

import re

from kfn.activator import forwarding, router, upstream

# Request headers the proxy handles itself. 0: dropped.
_DROP = 0
_HOST = 1
_CONTENT_LENGTH = 2
_TRANSFER_ENCODING = 3
_EXPECT = 4
_XFF = 5
_XFP = 6
_XFH = 7
_INVOCATION_TYPE = 8
_REQUEST_ID = 9
_AUTHORIZATION = 10
_FORWARDED = 11
# Noted for CORS and passed on as they came.
_ORIGIN = 12
_ACR_METHOD = 13
_ACR_HEADERS = 14
_SPECIAL = {
    **{name: _DROP for name in upstream.HOP_BY_HOP},
    b"host": _HOST,
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"expect": _EXPECT,
    b"x-forwarded-for": _XFF,
    b"x-forwarded-proto": _XFP,
    b"x-forwarded-host": _XFH,
    b"forwarded": _FORWARDED,
    b"origin": _ORIGIN,
    b"access-control-request-method": _ACR_METHOD,
    b"access-control-request-headers": _ACR_HEADERS,
    b"kfn-invocation-type": _INVOCATION_TYPE,
    b"x-amz-invocation-type": _INVOCATION_TYPE,
    b"kfn-request-id": _REQUEST_ID,
    b"authorization": _AUTHORIZATION,
    b"kfn-deadline-ms": _DROP,
    b"kfn-timeout-ms": _DROP,
    b"kfn-function-name": _DROP,
    # Only the activator asks a pod for an invocation's log (Lambda's LogType, lambda_door):
    # a caller of the invoke API or a route cannot read it this way.
    b"kfn-log-type": _DROP,
    # The route's, never the client's (:func:`kfn.activator.router.pod_headers`).
    b"kfn-payload-format": _DROP,
    b"kfn-path-prefix": _DROP,
}

#: A caller's own request id (kept on the invoke API only): what stays one header value.
_GIVEN_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


class RequestHead:
    """One request's head: what the proxy acts on, and the rest of its headers as bytes."""

    __slots__ = (
        "acr_headers",
        "acr_method",
        "authorization",
        "authorization_lines",
        "chunked",
        "content_length",
        "everything",
        "expect_continue",
        "forwarded",
        "given_request_id",
        "headers",
        "host",
        "http11",
        "invocation_type",
        "method",
        "origin",
        "private",
        "url",
        "xff",
        "xfh",
        "xfp",
    )

    def __init__(self, *, private: bool = False) -> None:
        #: The caller's ``Authorization``, and whether it is kfn's alone (the invoke
        #: door's: then it never reaches the pod, which could replay it).
        self.authorization = b""
        self.private = private
        #: Where ``headers`` holds the ``Authorization`` lines passed on, if any.
        self.authorization_lines: list[tuple[int, int]] | None = None
        self.url = b""
        self.method = b""
        self.http11 = True
        #: The headers passed on unchanged, as CRLF-terminated lines.
        self.headers = bytearray()
        self.host = b""
        #: What the request says of its client, scheme and host: believed only from a
        #: trusted proxy (:mod:`~kfn.activator.forwarding`), never passed on as they came.
        self.xff = b""
        self.forwarded = b""
        self.xfp = b""
        self.xfh = b""
        self.content_length = -1
        self.chunked = False
        self.expect_continue = False
        self.invocation_type = b""
        self.given_request_id = b""
        #: A cross-origin request's ``Origin`` and a preflight's
        #: ``Access-Control-Request-Method`` and ``-Headers`` (passed on too).
        self.origin = b""
        self.acr_method = b""
        self.acr_headers = b""
        #: Every header as it came, in order: kept only for a Lambda API request, whose
        #: signature covers headers the proxy otherwise drops or rewrites.
        self.everything: list[tuple[bytes, bytes]] | None = None

    def on_header(self, name: bytes, value: bytes) -> None:
        """One header as parsed: noted, kept, or dropped."""
        if self.everything is not None:
            self.everything.append((name, value))
        code = _SPECIAL.get(name.lower())
        if code is not None:
            if code == _DROP:
                return
            if code == _HOST:
                self.host = value
            elif code == _CONTENT_LENGTH:
                self.content_length = int(value) if value.isdigit() else -1
            elif code == _ORIGIN:
                self.origin = value
            elif code == _ACR_METHOD:
                self.acr_method = value
            elif code == _ACR_HEADERS:
                self.acr_headers = (
                    value if not self.acr_headers else self.acr_headers + b"," + value
                )
            elif code == _AUTHORIZATION:
                self.authorization = value
                if self.private:
                    return
                self._note_authorization(len(self.headers), len(name) + len(value) + 4)
            else:
                self._note(code, value)
                return
        # Appended in place: no temporary byte strings per header.
        headers = self.headers
        headers += name
        headers += b": "
        headers += value
        headers += b"\r\n"

    def _note_authorization(self, start: int, length: int) -> None:
        lines = self.authorization_lines
        if lines is None:
            self.authorization_lines = [(start, start + length)]
        else:
            lines.append((start, start + length))

    def hide_authorization(self) -> None:
        """The caller's ``Authorization`` is kfn's to read from now on (a checked route's
        request): the lines kept to pass on are dropped."""
        self.private = True
        lines, self.authorization_lines = self.authorization_lines, None
        for start, end in reversed(lines or ()):
            del self.headers[start:end]

    def _note(self, code: int, value: bytes) -> None:
        """A header the proxy acts on and does not pass on as it came."""
        if code == _TRANSFER_ENCODING:
            self.chunked = value.lower().endswith(b"chunked")
        elif code == _EXPECT:
            self.expect_continue = value.lower() == b"100-continue"
        elif code == _XFF:
            self.xff = value if not self.xff else self.xff + b", " + value
        elif code == _FORWARDED:
            self.forwarded = value if not self.forwarded else self.forwarded + b", " + value
        elif code == _XFP:
            self.xfp = value
        elif code == _XFH:
            self.xfh = value
        elif code == _INVOCATION_TYPE:
            self.invocation_type = value
        elif code == _REQUEST_ID and _GIVEN_REQUEST_ID.match(value):
            self.given_request_id = value

    def upstream(
        self,
        *,
        peer: bytes,
        proxied: forwarding.Trusted | None = None,
        request_id: bytes,
        timeout_ms: int,
        invoked: bytes | None,
        route_headers: bytes = b"",
    ) -> bytes:
        """The head to send to the pod.

        ``proxied``: the trusted proxies, when the peer is one of them (then the request's
        ``X-Forwarded-*`` and ``Forwarded`` say who the client is and what it asked for);
        None when the peer is the client.
        ``invoked``: the function's name when this came through the invoke API (then
        it goes to the pod's invoke path, with the contract's ``Kfn-Function-Name``).
        ``timeout_ms``: the function's timeout, which the runtime counts from its handler's start.
        ``route_headers``: the route's contract lines (payload format, stripped prefix).
        """
        if proxied is None:
            client, scheme, host = peer, b"http", self.host
        else:
            said = forwarding.client(peer, self.xff, self.forwarded, proxied)
            client = said.address
            scheme = self.xfp or said.proto or b"http"
            host = self.xfh or said.host or self.host
        parts: list[bytes | bytearray] = [
            self.method,
            b" ",
            router.POD_INVOKE_PATH if invoked is not None else self.url,
            b" HTTP/1.1\r\n",
            self.headers,
            b"X-Forwarded-For: ",
            client,
            b"\r\nX-Forwarded-Proto: ",
            scheme,
            b"\r\nKfn-Request-Id: ",
            request_id,
            b"\r\nKfn-Timeout-Ms: %d\r\n" % timeout_ms,
        ]
        if host:
            parts += (b"X-Forwarded-Host: ", host, b"\r\n")
        if invoked is not None:
            parts += (
                b"Kfn-Function-Name: ",
                invoked,
                b"\r\nKfn-Invocation-Type: RequestResponse\r\n",
            )
        if route_headers:
            parts.append(route_headers)
        if self.chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)
