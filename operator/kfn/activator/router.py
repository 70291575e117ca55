"""Which function a request is for: host, longest path prefix, method; or the invoke API.

Two kinds of request reach the activator:

* The invoke API, ``POST /_kfn/functions/{namespace}/{name}/invoke``, used by
  triggers and clients. ``{name}`` may carry a qualifier as Lambda's ``FunctionName`` does,
  ``{name}:{qualifier}`` (the colon as is or ``%3A``), or the query ``?Qualifier=`` may
  (both, naming different qualifiers: a match saying so, refused as Lambda does); the match
  names it for :mod:`~kfn.activator.qualifiers`, with ``$LATEST`` as none. The header
  ``Kfn-Invocation-Type`` (or Lambda's ``X-Amz-Invocation-Type``) chooses
  ``RequestResponse`` (default) or ``Event``. It is proxied to the pod's ``POST /_kfn/invoke``.
  ``POST /_kfn/functions/{namespace}/{name}/wake`` (a qualifier as the invoke's) is its
  sibling: it runs nothing, and asks for the function's pods before requests come
  (:meth:`kfn.activator.throttler.Throttler.wake`).
* HTTP-trigger and Function URL requests, matched against :class:`Route`s and proxied
  unchanged, to the version or alias the route's Trigger names if any (its match carries
  the qualifier, resolved per request as the invoke API's); a route whose Trigger or
  Function URL asks for ``auth: ServiceAccountToken`` is ``checked``: its requests need a
  bearer token RBAC lets invoke the function, as the invoke API does. A route with
  ``cors`` has its preflights answered by the activator and its answers'
  ``Access-Control-*`` headers set by its policy (:mod:`~kfn.activator.exchange`).

Routes for a named host win over routes for any host (``""`` or ``"*"``); within
those, the longest path prefix wins, matched on whole segments (``/api`` matches
``/api`` and ``/api/x`` but not ``/apix``). Routes belong to namespaces
(:mod:`kfn.api.routes`, which decides which Triggers become routes at all): a request
for a host some namespaces own is answered only from their routes, and a path is
answered only from the namespace of the longest prefix holding it, whatever the method,
so a shorter prefix of another namespace never takes what a longer claim fences off.
Lookups of short URLs are cached, so the hot path is one dict access. The cache is
bounded in bytes, not only in entries: a URL longer than :data:`_CACHED_URL_LIMIT` is
routed without being kept, so clients sending long or ever-changing URLs cannot make it
hold more than about ``_CACHE_LIMIT x _CACHED_URL_LIMIT`` (1 MiB of keys).
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Callable, Iterable

from kfn import stats
from kfn.api import web

INVOKE_PREFIX = b"/_kfn/functions/"
INVOKE_SUFFIX = b"/invoke"
WAKE_SUFFIX = b"/wake"
#: Where a pod serves invocations (the runtime contract).
POD_INVOKE_PATH = b"/_kfn/invoke"

_CACHE_LIMIT = 4096
#: Longest host + URL whose route is cached.
_CACHED_URL_LIMIT = 256


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """An HTTP trigger or a Function URL (its host, ``/``, every method): requests for
    ``host`` under ``path_prefix`` go to ``function``."""

    host: str
    path_prefix: str
    function: stats.FunctionKey
    methods: frozenset[str] = frozenset()
    #: Its requests need a bearer token RBAC lets invoke ``function`` (``auth:
    #: ServiceAccountToken``), which is kfn's to read and never reaches the pod.
    checked: bool = False
    #: Its CORS policy (``cors``): preflights answered here, answers' headers set by it.
    cors: web.CorsPolicy | None = None
    #: The event its handler receives (``payloadFormat``), and whether it sees the path
    #: below ``path_prefix`` (``stripPrefix``): told to the pod in request headers.
    payload_format: str = "2.0"
    strip_prefix: bool = False
    #: The version or alias its Trigger's ``functionRef`` names ("" for ``$LATEST``),
    #: resolved per request as the invoke API's (:mod:`~kfn.activator.qualifiers`).
    qualifier: str = ""

    def __post_init__(self) -> None:
        if not self.path_prefix.startswith("/"):
            raise ValueError(f"a path prefix starts with '/': {self.path_prefix!r}")


HostOwners = Callable[[str], frozenset[str] | None]
"""The namespaces whose routes may answer a request for a host (lower case, no port); None
for a host nobody owns (:meth:`kfn.api.routes.Ownership.answering`)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Match:
    """The outcome of routing: the function, whether this is the invoke API, whether a
    route's caller must show a token (:attr:`Route.checked`), and its CORS policy."""

    function: stats.FunctionKey
    invoke: bool = False
    checked: bool = False
    cors: web.CorsPolicy | None = None
    #: The runtime contract's headers saying how the pod maps the request
    #: (:func:`pod_headers`), computed once per route: CRLF-terminated lines, or empty.
    pod_headers: bytes = b""
    #: The invoke API's or the route's qualifier (a version or an alias); "" for
    #: ``$LATEST``.
    qualifier: str = ""
    #: Why the invoke API's URL names no one qualifier (its name's and its query's differ).
    conflict: str = ""
    #: The invoke API's wake (``.../wake``): run nothing, ask for pods.
    wake: bool = False


class Router:
    """Immutable routing table; build a new one when routes change."""

    def __init__(self, routes: Iterable[Route] = (), owners: HostOwners | None = None) -> None:
        by_host: dict[bytes, list[tuple[bytes, frozenset[bytes], str, Match]]] = {}
        for route in routes:
            host = b"" if route.host in ("", "*") else route.host.lower().encode()
            prefix = route.path_prefix.rstrip("/").encode()
            methods = frozenset(m.upper().encode() for m in route.methods)
            match = Match(
                route.function,
                checked=route.checked,
                cors=route.cors,
                pod_headers=pod_headers(route),
                qualifier="" if route.qualifier == LATEST else route.qualifier,
            )
            entry = (prefix, methods, route.function.namespace, match)
            by_host.setdefault(host, []).append(entry)
        for entries in by_host.values():
            entries.sort(key=lambda entry: len(entry[0]), reverse=True)
        self._by_host = by_host
        self._owners = owners
        self._cache: dict[tuple[bytes, bytes, bytes], Match | None] = {}

    def match(self, host: bytes, path: bytes, method: bytes) -> Match | None:
        """Route a request; ``path`` may carry a query string, ``host`` a port."""
        key = (host, path, method)
        cache = self._cache
        try:
            return cache[key]
        except KeyError:
            pass
        result = self._match(host, path, method)
        if len(host) + len(path) <= _CACHED_URL_LIMIT:
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[key] = result
        return result

    def _match(self, host: bytes, path: bytes, method: bytes) -> Match | None:
        path, _, query = path.partition(b"?")
        if path.startswith(INVOKE_PREFIX):
            return _invoke_match(path, query)
        name = host.rsplit(b":", 1)[0] if not host.endswith(b"]") else host
        name = name.lower()
        # Any byte decodes in latin-1: a host with others still ends in an assigned suffix.
        allowed = self._owners(name.decode("latin-1")) if self._owners is not None else None
        owner: str | None = None
        for candidates in (self._by_host.get(name), self._by_host.get(b"")):
            if not candidates:
                continue
            for prefix, methods, namespace, match in candidates:
                if prefix and path != prefix and not path.startswith(prefix + b"/"):
                    continue
                if allowed is not None and namespace not in allowed:
                    continue
                if owner is None:
                    owner = namespace  # the longest prefix holding the path fences it
                elif namespace != owner:
                    continue
                if methods and method not in methods:
                    continue
                return match
        return None


def pod_headers(route: Route) -> bytes:
    """The lines telling the pod the route's payload format and the prefix it strips.

    Nothing for the default (payload 2.0, full path), so a Function URL's requests and most
    Triggers' carry no extra header. A prefix of ``/`` strips nothing.
    """
    lines = b""
    if route.payload_format != "2.0":
        lines += b"Kfn-Payload-Format: " + route.payload_format.encode("ascii") + b"\r\n"
    prefix = route.path_prefix.rstrip("/")
    if route.strip_prefix and prefix:
        lines += b"Kfn-Path-Prefix: " + prefix.encode() + b"\r\n"
    return lines


def _invoke_match(path: bytes, query: bytes = b"") -> Match | None:
    if path.endswith(INVOKE_SUFFIX):
        suffix, wake = INVOKE_SUFFIX, False
    elif path.endswith(WAKE_SUFFIX):
        suffix, wake = WAKE_SUFFIX, True
    else:
        return None
    parts = path[len(INVOKE_PREFIX) : -len(suffix)].split(b"/")
    if len(parts) != 2 or not all(parts):
        return None
    try:
        namespace, name = (part.decode("ascii") for part in parts)
    except UnicodeDecodeError:
        return None
    if not query and "%" not in name and ":" not in name:
        return Match(stats.FunctionKey(namespace, name), invoke=True, wake=wake)
    match = _qualified_match(namespace, name, query)
    return dataclasses.replace(match, wake=True) if match is not None and wake else match


def _qualified_match(namespace: str, name: str, query: bytes) -> Match | None:
    """An invoke naming a qualifier in its name (``name:q``, ``name%3Aq``) or its query
    (``?Qualifier=q``)."""
    try:
        name = urllib.parse.unquote(name, errors="strict")
        asked = urllib.parse.parse_qs(query.decode("ascii"), errors="strict").get("Qualifier")
    except (UnicodeDecodeError, ValueError):
        return None
    name, colon, from_name = name.partition(":")
    if not name or (colon and not from_name):
        return None
    from_query = asked[-1] if asked else ""
    if from_name and from_query and from_name != from_query:
        conflict = (
            f"The derived qualifier from the function name {from_name!r} does not match the "
            f"specified qualifier {from_query!r}."
        )
        return Match(stats.FunctionKey(namespace, name), invoke=True, conflict=conflict)
    qualifier = from_name or from_query
    if qualifier == LATEST:
        qualifier = ""
    return Match(stats.FunctionKey(namespace, name), invoke=True, qualifier=qualifier)


#: The qualifier of the newest code, which names no version: the same as none.
LATEST = "$LATEST"
