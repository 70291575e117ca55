"""Who the client is: the TCP peer, or what a trusted proxy in front says it is.

The activator's public door is reached directly (inside the cluster) or through the cluster's
edge (the Gateway's Envoy pods). A proxy says whom it serves in ``X-Forwarded-For`` (each
proxy appends its own peer) or RFC 7239's ``Forwarded`` (``for=``); anyone can send either,
so they are read only when the TCP peer is a *trusted proxy* (:class:`Trusted`: the
``--trusted-proxy-cidrs`` and the pods ``--trusted-proxy-pods`` selects). Then the chain is
walked from the right, past every trusted address, and the first one not trusted is the
client (:func:`client`); with an untrusted peer the peer is the client, whatever the request
says. ``X-Forwarded-For`` is read when the request has it, else ``Forwarded``: a trusted proxy
appends to ``X-Forwarded-For`` (Envoy does), or, writing only ``Forwarded``, drops a client's
``X-Forwarded-For``.

The function's pod hears the outcome as one ``X-Forwarded-For`` entry, the client (so the
runtime's ``sourceIp`` is never an address a client made up), with ``X-Forwarded-Proto`` and
``X-Forwarded-Host`` as the trusted proxy gave them (else the activator's own view: ``http``
and ``Host``); a client's ``Forwarded`` is not passed on (:mod:`~kfn.activator.request_head`).

Pure, and cheap on the hot path: a connection decides once whether its peer is trusted
(again only when the trusted set is replaced), only a trusted peer's requests read a chain,
and a chain seen before is looked up rather than parsed (parsing addresses costs more than
the rest of a request's head).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import Final

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


#: Clients resolved and kept per trusted set (a proxy's requests name the same clients over
#: and over; parsing an address costs more than the rest of a request's head): at most this
#: many, of chains up to :data:`_CACHED_CHAIN_LIMIT` bytes, so at most about 256 KiB of keys.
_CACHE_LIMIT: Final = 1024
_CACHED_CHAIN_LIMIT: Final = 256


@dataclasses.dataclass(frozen=True, slots=True)
class Trusted:
    """The proxies whose forwarding headers are believed: single addresses in a frozenset
    (one lookup), wider networks in a tuple (usually none or a few)."""

    addresses: frozenset[Address] = frozenset()
    networks: tuple[Network, ...] = ()
    #: What :func:`client` found for (peer, X-Forwarded-For, Forwarded) under this set.
    resolved: dict[tuple[bytes, bytes, bytes], Client] = dataclasses.field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    def holds(self, address: Address) -> bool:
        if address in self.addresses:
            return True
        return any(address in network for network in self.networks)

    def __bool__(self) -> bool:
        return bool(self.addresses or self.networks)

    @classmethod
    def of(cls, networks: Iterable[Network], addresses: Iterable[Address] = ()) -> Trusted:
        """``networks`` and ``addresses`` together; a network of one address is kept as one."""
        single = set(addresses)
        wide = []
        for network in networks:
            if network.num_addresses == 1:
                single.add(network.network_address)
            else:
                wide.append(network)
        return cls(frozenset(single), tuple(wide))


NOBODY: Final = Trusted()
"""No proxy is trusted: the peer is always the client (the default)."""


def parse_cidrs(text: str) -> tuple[Network, ...]:
    """``--trusted-proxy-cidrs``: CIDRs or addresses, comma-separated; ValueError names the
    one that is not."""
    networks = []
    for part in text.split(","):
        cidr = part.strip()
        if not cidr:
            continue
        try:
            networks.append(ipaddress.ip_network(cidr, strict=True))
        except ValueError as exc:
            raise ValueError(
                f"--trusted-proxy-cidrs: {cidr!r} is not an IP network such as 10.0.0.0/8, "
                f"fd00::/8 or 192.0.2.7 ({exc})"
            ) from None
    return tuple(networks)


@dataclasses.dataclass(frozen=True)
class PodSelector:
    """``--trusted-proxy-pods``: the pods of one namespace a label selector picks."""

    namespace: str
    label_selector: str


def parse_pod_selector(text: str) -> PodSelector | None:
    """``NAMESPACE:LABEL_SELECTOR`` (empty: none); ValueError says what is wrong."""
    if not text.strip():
        return None
    namespace, sep, selector = text.strip().partition(":")
    if not sep or not namespace or not selector.strip():
        raise ValueError(
            f"--trusted-proxy-pods: {text!r} is not NAMESPACE:LABEL_SELECTOR, such as "
            "envoy-gateway-system:gateway.envoyproxy.io/owning-gateway-name=kfn"
        )
    if not all(c.isalnum() or c == "-" for c in namespace) or len(namespace) > 63:
        raise ValueError(f"--trusted-proxy-pods: {namespace!r} is not a namespace name")
    return PodSelector(namespace, selector.strip())


def address(text: str) -> Address | None:
    """One address as proxies write it: ``192.0.2.7``, ``192.0.2.7:443``, ``2001:db8::1``,
    ``[2001:db8::1]:443``; None for anything else (``unknown``, ``_hidden``, garbage). An
    IPv4 address mapped into IPv6 (a dual-stack socket's peer) is the IPv4 address."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        found = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


def peer_address(peer: bytes) -> Address | None:
    """The TCP peer, parsed once per connection (None: not an IP peer, never trusted)."""
    return address(peer.decode("latin-1"))


@dataclasses.dataclass(frozen=True, slots=True)
class Client:
    """What a trusted proxy said of the request: the client, and the scheme and host it
    was asked for when it said so (empty: not said)."""

    address: bytes
    proto: bytes = b""
    host: bytes = b""


def client(peer: bytes, xff: bytes, forwarded: bytes, trusted: Trusted) -> Client:
    """The client of a request from a trusted peer: the chain walked from the right past
    trusted addresses. A chain made only of trusted addresses, or broken by an entry that is
    no address, ends at the last address believed (the peer itself when that is the first).
    Kept in ``trusted`` for chains that are short (bounded, as the router's cache)."""
    key = (peer, xff, forwarded)
    cache = trusted.resolved
    found = cache.get(key)
    if found is None:
        found = _resolve(peer, xff, forwarded, trusted)
        if len(xff) + len(forwarded) <= _CACHED_CHAIN_LIMIT:
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[key] = found
    return found


def _resolve(peer: bytes, xff: bytes, forwarded: bytes, trusted: Trusted) -> Client:
    if xff:
        return Client(_walk(peer, xff.decode("latin-1").split(","), trusted)[0])
    if forwarded:
        elements = _forwarded(forwarded.decode("latin-1"))
        found, index = _walk(peer, [e.get("for", "") for e in elements], trusted)
        if index is None:
            return Client(found)
        element = elements[index]
        return Client(
            found, element.get("proto", "").encode("latin-1"), element.get("host", "").encode()
        )
    return Client(peer)


def _walk(peer: bytes, entries: Sequence[str], trusted: Trusted) -> tuple[bytes, int | None]:
    """The address believed, and the index of its entry (None: the peer)."""
    found, index = peer, None
    for i in range(len(entries) - 1, -1, -1):
        hop = address(entries[i])
        if hop is None:
            break
        found, index = str(hop).encode(), i
        if not trusted.holds(hop):
            break
    return found, index


_PAIR: Final = re.compile(
    r"""\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,"\s]*)\s*([;,]|$)"""
)
_ESCAPE: Final = re.compile(r"\\(.)")


def _forwarded(text: str) -> list[dict[str, str]]:
    """RFC 7239 elements, left to right: ``;``-separated pairs, names lower-cased, quoted
    values unquoted. A malformed element is kept as an empty one, so that a walk from the
    right stops there rather than reading what lies left of it."""
    elements: list[dict[str, str]] = []
    pairs: dict[str, str] = {}
    pos = 0
    while text[pos:].strip():
        found = _PAIR.match(text, pos)
        if found is None:
            elements.append({})
            pairs = {}
            comma = text.find(",", pos)
            if comma < 0:
                return elements
            pos = comma + 1
            continue
        name, value, separator = found.groups()
        if value.startswith('"'):
            value = _ESCAPE.sub(r"\1", value[1:-1])
        pairs.setdefault(name.lower(), value)
        pos = found.end()
        if separator != ";":
            elements.append(pairs)
            pairs = {}
    if pairs:
        elements.append(pairs)
    return elements
