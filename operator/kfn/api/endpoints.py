"""Credentials follow their owner: the endpoints a Secret's owner lets kfn send it to.

A Trigger names a Secret of its namespace (``credentialsSecretRef`` of a stream, a bucket or
an onFailure destination) and the endpoints kfn sends its credentials to: NATS servers, Kafka
brokers, an S3 endpoint. Whoever may write Triggers may name any Secret of the namespace and
any endpoint, without being allowed to read Secrets; were kfn to connect wherever the Trigger
says, it would hand them the Secret. So kfn sends a Secret only to the endpoints the Secret
itself lists in the annotation :data:`ANNOTATION`, which only someone who may write the
Secret can set: its owner decides. :func:`decide` is that rule (pure); the trigger workers
read the Secret and ask it before they open any connection that carries the credentials.

The annotation lists entries separated by commas or white space, each one of

* ``scheme://host[:port]``: that scheme only, on the port given or else the scheme's default
  (:data:`DEFAULT_PORTS`: nats and tls 4222, ws and http 80, wss and https 443, kafka 9092);
* ``host:port``: any scheme on that host and port.

``host`` is a DNS name, compared as written but for case (``nats.team-a``,
``nats.team-a.svc.cluster.local`` and ``nats.team-a.svc.cluster.local.`` are three entries:
list each spelling Triggers use); ``*.`` and a domain, for every name below the domain at
any depth but not the domain itself (as in the chart's ``routes.hostAssignments``); an IPv4
address; or an IPv6 address in brackets. Addresses are compared as addresses and match no
wildcard. An entry names no user, path or query. Kafka brokers have the scheme ``kafka``
(their ``bootstrapServers`` have none).

An endpoint whose host kfn cannot tell for certain (a user part with more than one ``@``, a
name with characters DNS names do not have) is allowed by no entry, so no client library can
read a host out of it that the rule did not compare.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Final

ANNOTATION: Final = "kfn.dev/allowed-endpoints"
"""The Secret annotation that lists where kfn may send the Secret."""

DEFAULT_PORTS: Final[Mapping[str, int]] = {
    "nats": 4222,
    "tls": 4222,
    "ws": 80,
    "wss": 443,
    "http": 80,
    "https": 443,
    "kafka": 9092,
}
"""The schemes kfn's clients use, with the port each connects to when a URL names none."""

WILDCARD: Final = "*."

_LABEL: Final = r"[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?"
_NAME: Final = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$")
_SEPARATORS: Final = re.compile(r"[,\s]+")
#: How many endpoints or entries a message lists before it says how many more there are.
_LISTED: Final = 3


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a client of kfn connects with a Secret's credentials.

    ``host`` is lower-case (an IP address in its short form), and empty when kfn cannot tell
    it for certain, which no entry allows.
    """

    scheme: str
    host: str
    port: int
    shown: str
    """How messages name it: ``scheme://host:port`` (``host:port`` for Kafka), never with
    the user part of a URL, which may hold a password."""


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One entry of the annotation."""

    scheme: str | None
    """None: any scheme."""
    host: str
    """A lower-case name, ``*.`` and a domain, or an IP address in its short form."""
    port: int

    def allows(self, endpoint: Endpoint) -> bool:
        if not endpoint.host or endpoint.port != self.port:
            return False
        if self.scheme is not None and endpoint.scheme != self.scheme:
            return False
        if self.host.startswith(WILDCARD):
            return _ip(endpoint.host) is None and endpoint.host.endswith(self.host[1:])
        return endpoint.host == self.host

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}" if self.scheme else f"{host}:{self.port}"


class AnnotationError(ValueError):
    """An entry of the annotation kfn cannot read; the message names it and says why."""


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    """Why kfn does not send a Secret where a Trigger asks: a message a user can act on."""

    message: str


# --- the endpoints a Trigger names -----------------------------------------------------------


def nats(servers: Sequence[str]) -> tuple[Endpoint, ...]:
    """The endpoints of a Trigger's NATS ``servers`` (``nats://[user@]host[:port]``)."""
    return tuple(_url(server) for server in servers)


def kafka(bootstrap_servers: Sequence[str]) -> tuple[Endpoint, ...]:
    """The endpoints of a Trigger's Kafka ``bootstrapServers`` (``host:port``)."""
    return tuple(_with_scheme("kafka", server) for server in bootstrap_servers)


def s3(endpoint: str) -> tuple[Endpoint, ...]:
    """The endpoint of a bucket Trigger (``http(s)://host[:port][/path]``). The S3 client
    connects to the URL's whole authority, so one with a user part is not read at all."""
    scheme, _, rest = endpoint.partition("://")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        return (_unknown(scheme, authority),)
    return (_with_scheme(scheme, authority),)


def _url(url: str) -> Endpoint:
    scheme, _, rest = url.partition("://")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if authority.count("@") > 1:
        return _unknown(scheme, authority)
    return _with_scheme(scheme, authority.rpartition("@")[2])


def _with_scheme(scheme: str, authority: str) -> Endpoint:
    scheme = scheme.lower()
    default = DEFAULT_PORTS.get(scheme)
    parsed = _host_port(authority)
    if default is None or parsed is None:
        return _unknown(scheme, authority)
    host, port = parsed
    port = default if port is None else port
    shown_host = f"[{host}]" if ":" in host else host
    shown = f"{shown_host}:{port}" if scheme == "kafka" else f"{scheme}://{shown_host}:{port}"
    return Endpoint(scheme, host, port, shown)


def _unknown(scheme: str, authority: str) -> Endpoint:
    visible = authority.rpartition("@")[2][:100]
    return Endpoint(scheme.lower(), "", 0, f"{scheme}://{visible}" if scheme else visible)


def _host_port(authority: str) -> tuple[str, int | None] | None:
    """The host (lower-case; an IP address in its short form) and port of ``host[:port]``
    or ``[v6][:port]``; None when either is not plainly one."""
    if authority.startswith("["):
        inside, bracket, after = authority[1:].partition("]")
        address = _ip(inside)
        if not bracket or not isinstance(address, ipaddress.IPv6Address):
            return None
        host, port_text, has_port = str(address), after.removeprefix(":"), after != ""
        if has_port and not after.startswith(":"):
            return None
    else:
        host, colon, port_text = authority.partition(":")
        has_port = bool(colon)
        host = host.lower()
        if _ip(host) is None and not _NAME.match(host):
            return None
    if not has_port or port_text == "":
        return host, None
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return host, int(port_text)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


# --- the annotation --------------------------------------------------------------------------


def parse(text: str) -> tuple[Entry, ...]:
    """The entries of the annotation; :class:`AnnotationError` names the first it cannot
    read."""
    return tuple(_entry(item) for item in _SEPARATORS.split(text.strip()) if item)


def _entry(item: str) -> Entry:
    scheme: str | None = None
    rest = item
    if "://" in item:
        scheme, _, rest = item.partition("://")
        scheme = scheme.lower()
        if scheme not in DEFAULT_PORTS:
            known = ", ".join(DEFAULT_PORTS)
            raise AnnotationError(f"entry {item!r}: unknown scheme {scheme!r} (one of {known})")
        if rest.endswith("/"):
            rest = rest[:-1]
    if any(mark in rest for mark in "@/?#"):
        raise AnnotationError(f"entry {item!r}: an entry is [scheme://]host[:port], no path")
    wildcard = rest.startswith(WILDCARD)
    parsed = _host_port(rest.removeprefix("*.") if wildcard else rest)
    if parsed is None:
        raise AnnotationError(
            f"entry {item!r}: not a host (a DNS name, '*.' and a domain, an IPv4 address or an "
            "IPv6 address in brackets) with an optional port from 1 to 65535"
        )
    host, port = parsed
    if wildcard:
        if _ip(host) is not None:
            raise AnnotationError(f"entry {item!r}: '*.' goes before a domain, not an address")
        host = WILDCARD + host
    if port is None:
        if scheme is None:
            raise AnnotationError(
                f"entry {item!r}: without a scheme it needs a port ({item}:<port>, or "
                f"<scheme>://{item} for the scheme's default port)"
            )
        port = DEFAULT_PORTS[scheme]
    return Entry(scheme, host, port)


# --- the rule --------------------------------------------------------------------------------


def decide(
    namespace: str,
    name: str,
    annotations: Mapping[str, str],
    endpoints: Sequence[Endpoint],
    *,
    require_opt_in: bool = True,
) -> Refusal | None:
    """None when Secret ``namespace/name``, with these annotations, may be sent to every one
    of ``endpoints``; else why not.

    Without the annotation the Secret goes nowhere, unless ``require_opt_in`` is False (the
    chart's ``triggerCredentials.requireEndpointOptIn``, for an upgrade): then a Secret
    without it goes anywhere, as before kfn asked, while one with it is held to it.
    """
    text = annotations.get(ANNOTATION)
    if text is None and (not require_opt_in or not endpoints):
        return None
    secret = f"Secret {namespace}/{name}"
    unknown = [e for e in endpoints if not e.host]
    if unknown:
        return Refusal(
            f"kfn sends {secret} to no endpoint whose host and port it cannot tell for certain: "
            f"{_listing(unknown)}; write it as scheme://host:port, with at most one '@' and a "
            "DNS name or an IP address as the host"
        )
    if text is not None:
        return _against(secret, text, endpoints)
    return Refusal(
        f"{secret} does not allow {_listing(endpoints)}: it has no annotation {ANNOTATION} "
        f"listing where it may be sent; if the Secret's owner agrees, they annotate it "
        f'{ANNOTATION}="{" ".join(e.shown for e in endpoints)}"'
    )


def _against(secret: str, text: str, endpoints: Sequence[Endpoint]) -> Refusal | None:
    """Whether the annotation ``text`` allows every one of ``endpoints``."""
    try:
        entries = parse(text)
    except AnnotationError as exc:
        return Refusal(
            f"{secret} goes nowhere until its owner corrects its annotation {ANNOTATION}: {exc}"
        )
    refused = [e for e in endpoints if not any(entry.allows(e) for entry in entries)]
    if not refused:
        return None
    allowed = _listing(entries) if entries else "nothing"
    return Refusal(
        f"{secret} does not allow {_listing(refused)}; add it to the annotation {ANNOTATION} "
        f"if the Secret's owner agrees (it allows {allowed})"
    )


def _listing(items: Sequence[Endpoint | Entry]) -> str:
    shown = [item.shown if isinstance(item, Endpoint) else str(item) for item in items]
    more = len(shown) - _LISTED
    return ", ".join(shown[:_LISTED]) + (f" and {more} more" if more > 0 else "")
