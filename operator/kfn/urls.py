"""URLs kfn fetches on a user's behalf: how they are shown, and which addresses they may reach.

Pure, standard library only (no I/O), so that the operator, the pure builders and the build Job
all apply the same two rules:

* :func:`redact` is the one way a user's URL is shown in a condition, an Event or a log. A
  presigned URL carries its credentials in the query string (``X-Amz-Signature``, a SAS
  ``sig``) and a URL may carry a login before its host, so both are left out, and the fragment
  with them: ``https://u:p@host/code.zip?sig=…`` is shown as ``https://host/code.zip``.
* :func:`refusal` says why an address may not be fetched from. Loopback, link-local
  (169.254.0.0/16, fe80::/10), the unspecified address (which reaches the host itself) and the
  cloud metadata services (169.254.169.254, fd00:ec2::254, 100.100.100.200 and the name
  ``metadata.google.internal``) are refused unless the cluster admin allows the address through
  a list of networks (the chart's ``builder.archives.allowedCIDRs``). A host is checked by every
  address it resolves to, so one good address cannot carry a bad one; the fetcher then connects
  to an address it checked (:mod:`kfn.builder.fetch`), never to a second lookup's answer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Final

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Cloud metadata services by address: AWS (IPv4, IPv6), GCP, Azure, OpenStack, Alibaba.
METADATA_ADDRESSES: Final = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
#: Cloud metadata services by name (GCP's; it resolves to 169.254.169.254 there).
METADATA_HOSTS: Final = frozenset({"metadata.google.internal"})


def redact(url: str) -> str:
    """``url`` without its login, query string and fragment: what may be shown anywhere."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    rest = rest.split("#", 1)[0].split("?", 1)[0]
    authority, slash, path = rest.partition("/")
    authority = authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}"


def redact_in(text: str, url: str) -> str:
    """``text`` with every occurrence of ``url`` shown as :func:`redact` shows it."""
    return text.replace(url, redact(url)) if url else text


def host(url: str) -> str:
    """The host a URL names, lower-cased, without brackets, port or login ("" if none)."""
    rest = url.partition("://")[2]
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
    if authority.startswith("["):
        return authority[1:].partition("]")[0].lower()
    name, colon, port = authority.rpartition(":")
    return (name if colon and port.isdigit() else authority).lower()


def literal_address(name: str) -> Address | None:
    """The address a host names literally (``10.0.0.1``, ``::1``), None for a name to resolve."""
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """The networks of CIDR strings (``10.0.0.0/8``, ``fd00::/8``, a bare address for one).

    Raises ValueError naming the first entry that is not one.
    """
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a network in CIDR notation: {exc}") from exc
    return tuple(networks)


def _plain(address: Address) -> Address:
    """An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) as the IPv4 address it carries."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def kind_of(address: Address) -> str | None:
    """What makes an address one kfn does not fetch from, or None for an ordinary address."""
    address = _plain(address)
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "the unspecified address, which reaches the machine itself"
    return None


def allowed_by(address: Address, allowed: Sequence[Network]) -> bool:
    address = _plain(address)
    return any(address in network for network in allowed)


def refusal(name: str, addresses: Sequence[Address], allowed: Sequence[Network]) -> str | None:
    """Why ``name``, resolved to ``addresses``, may not be fetched from; None when it may.

    Every address must pass: an ordinary one, or one inside ``allowed``. A metadata service's
    name is refused unless every address it resolves to is allowed.
    """
    for address in addresses:
        if allowed_by(address, allowed):
            continue
        kind = kind_of(address)
        if kind is not None:
            shown = "" if literal_address(name) == address else f"{name} resolves to "
            return f"{shown}{address}, {kind}"
    metadata = name.lower().rstrip(".") in METADATA_HOSTS
    if metadata and not (addresses and all(allowed_by(a, allowed) for a in addresses)):
        return f"{name} is a cloud metadata service"
    return None


#: What every refusal goes on to say: why, and who can change it.
ADVICE: Final = (
    "builds fetch nothing from loopback, link-local or cloud metadata addresses; a cluster "
    "admin can allow a network with the chart value builder.archives.allowedCIDRs"
)
