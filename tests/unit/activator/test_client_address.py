"""Who the client is: the peer, or what a trusted proxy says; and what the function's pod hears.

Tables feed a request's headers to :class:`request_head.RequestHead` and read the head the pod
would get; the activator tests then check the same through real sockets, with the trusted set
given by network and by watched pods.
"""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from kfn.activator import forwarding, request_head, trusted_pods
from tests.unit.apiserver import ApiServer

from .conftest import MakeActivator
from .http import Backend, Client

PEER = b"10.0.0.9"  # the TCP peer in every row: a proxy when trusted
PROXIES = forwarding.Trusted.of(forwarding.parse_cidrs("10.0.0.0/8, fd00::/8"))
CLIENT = "198.51.100.7"


def pod_head(
    headers: list[tuple[str, str]], proxied: forwarding.Trusted | None, peer: bytes = PEER
) -> dict[str, list[str]]:
    """The headers of the head sent to the pod, by lower-case name."""
    head = request_head.RequestHead()
    head.method, head.url = b"GET", b"/"
    for name, value in [("Host", "fn.example.com"), *headers]:
        head.on_header(name.encode(), value.encode())
    sent = head.upstream(
        peer=peer, proxied=proxied, request_id=b"r", timeout_ms=1000, invoked=None
    ).decode()
    seen: dict[str, list[str]] = {}
    for line in sent.split("\r\n")[1:]:
        if line:
            name, _, value = line.partition(": ")
            seen.setdefault(name.lower(), []).append(value)
    return seen


# --- whom to believe -------------------------------------------------------------------------

CHAINS = [
    pytest.param([], PEER.decode(), id="a trusted peer saying nothing is the client"),
    pytest.param([("X-Forwarded-For", CLIENT)], CLIENT, id="a trusted proxy names the client"),
    pytest.param(
        [("X-Forwarded-For", f"6.6.6.6, {CLIENT}")],
        CLIENT,
        id="what the client sent left of the proxy's entry is not believed",
    ),
    pytest.param(
        [("X-Forwarded-For", f"6.6.6.6, {CLIENT}, 10.1.1.1, 10.2.2.2")],
        CLIENT,
        id="trusted hops are walked past from the right",
    ),
    pytest.param(
        [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", f"{CLIENT}, 10.1.1.1")],
        CLIENT,
        id="repeated headers are one chain in order",
    ),
    pytest.param(
        [("X-Forwarded-For", "10.1.1.1, 10.2.2.2")],
        "10.1.1.1",
        id="a chain of trusted hops ends at its first",
    ),
    pytest.param(
        [("X-Forwarded-For", "6.6.6.6, unknown, 10.2.2.2")],
        "10.2.2.2",
        id="an entry that is no address stops the walk at the last address believed",
    ),
    pytest.param(
        [("X-Forwarded-For", "garbage")], PEER.decode(), id="a chain of garbage leaves the peer"
    ),
    pytest.param(
        [("X-Forwarded-For", f"{CLIENT}:55123")], CLIENT, id="a port after an IPv4 address"
    ),
    pytest.param(
        [("X-Forwarded-For", "[2001:DB8::7]:443, fd00::1")],
        "2001:db8::7",
        id="a bracketed IPv6 address with a port, normalised, past a trusted IPv6 hop",
    ),
    pytest.param(
        [("Forwarded", f"for={CLIENT};proto=https;by=10.0.0.9")],
        CLIENT,
        id="RFC 7239 for=",
    ),
    pytest.param(
        [("Forwarded", 'for="[2001:db8:cafe::17]:4711"')],
        "2001:db8:cafe::17",
        id="RFC 7239 quoted IPv6 with a port",
    ),
    pytest.param(
        [("Forwarded", f'for=6.6.6.6, For="{CLIENT}", for=10.1.1.1')],
        CLIENT,
        id="RFC 7239 elements walked from the right, names in any case",
    ),
    pytest.param(
        [("Forwarded", 'for=6.6.6.6, for="unterminated, for=10.1.1.1')],
        "10.1.1.1",
        id="RFC 7239 with a broken element stops there",
    ),
    pytest.param(
        [("Forwarded", 'for="6.6.6.6;x", for=_hidden')],
        PEER.decode(),
        id="RFC 7239 obfuscated identifier leaves the peer",
    ),
    pytest.param(
        [("Forwarded", "for=6.6.6.6"), ("X-Forwarded-For", CLIENT)],
        CLIENT,
        id="X-Forwarded-For when both are sent",
    ),
]


@pytest.mark.parametrize(("headers", "client"), CHAINS)
def test_a_trusted_peers_forwarding_headers_name_the_client(
    headers: list[tuple[str, str]], client: str
) -> None:
    assert pod_head(headers, PROXIES)["x-forwarded-for"] == [client]


@pytest.mark.parametrize(("headers", "client"), CHAINS)
def test_an_untrusted_peer_is_the_client_whatever_it_sends(
    headers: list[tuple[str, str]], client: str
) -> None:
    del client
    assert pod_head(headers, None)["x-forwarded-for"] == [PEER.decode()]


def test_the_pod_hears_one_client_and_no_forwarded_header_from_anyone() -> None:
    sent = [("X-Forwarded-For", f"6.6.6.6, {CLIENT}"), ("Forwarded", "for=6.6.6.6")]
    for proxied in (PROXIES, None):
        seen = pod_head(sent, proxied)
        assert len(seen["x-forwarded-for"]) == 1
        assert "," not in seen["x-forwarded-for"][0]
        assert "forwarded" not in seen


@pytest.mark.parametrize(
    ("headers", "proxied", "proto", "host"),
    [
        pytest.param([], None, "http", "fn.example.com", id="the activator's own view"),
        pytest.param(
            [("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.example")],
            None,
            "http",
            "fn.example.com",
            id="an untrusted peer's claims are replaced",
        ),
        pytest.param(
            [("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "api.example.com")],
            PROXIES,
            "https",
            "api.example.com",
            id="a trusted proxy's are passed on",
        ),
        pytest.param(
            [("Forwarded", f"for={CLIENT};proto=https;host=api.example.com, for=10.1.1.1")],
            PROXIES,
            "https",
            "api.example.com",
            id="from the Forwarded element that named the client",
        ),
        pytest.param([], PROXIES, "http", "fn.example.com", id="a trusted proxy saying nothing"),
    ],
)
def test_the_scheme_and_host_the_pod_hears(
    headers: list[tuple[str, str]], proxied: forwarding.Trusted | None, proto: str, host: str
) -> None:
    seen = pod_head(headers, proxied)
    assert (seen["x-forwarded-proto"], seen["x-forwarded-host"]) == ([proto], [host])


# --- the trusted set -------------------------------------------------------------------------


def test_single_addresses_are_kept_in_a_set_and_networks_apart() -> None:
    trusted = forwarding.Trusted.of(
        forwarding.parse_cidrs("192.0.2.7, 10.0.0.0/8, 2001:db8::1/128"),
        [ipaddress.ip_address("192.0.2.8")],
    )
    assert trusted.addresses == {
        ipaddress.ip_address(a) for a in ("192.0.2.7", "192.0.2.8", "2001:db8::1")
    }
    assert trusted.networks == (ipaddress.ip_network("10.0.0.0/8"),)
    assert trusted.holds(ipaddress.ip_address("10.200.0.1"))
    assert not trusted.holds(ipaddress.ip_address("11.0.0.1"))
    assert not forwarding.NOBODY


def test_an_ipv4_peer_of_a_dual_stack_socket_is_its_ipv4_address() -> None:
    assert forwarding.peer_address(b"::ffff:10.0.0.1") == ipaddress.ip_address("10.0.0.1")
    assert forwarding.peer_address(b"unknown") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.0/33", "'10.0.0.0/33' is not an IP network"),
        ("10.0.0.1/8", "'10.0.0.1/8' is not an IP network"),
        ("10.0.0.0/8, envoy", "'envoy' is not an IP network"),
    ],
)
def test_a_malformed_trusted_cidr_is_refused_naming_it(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        forwarding.parse_cidrs(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("envoy-gateway-system", "is not NAMESPACE:LABEL_SELECTOR"),
        (":app=envoy", "is not NAMESPACE:LABEL_SELECTOR"),
        ("gw:", "is not NAMESPACE:LABEL_SELECTOR"),
        ("Bad_NS:app=envoy", "'Bad_NS' is not a namespace name"),
    ],
)
def test_a_malformed_trusted_pod_selector_is_refused_saying_what_is_wrong(
    text: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        forwarding.parse_pod_selector(text)


def test_a_pod_selector_splits_at_the_first_colon() -> None:
    selector = forwarding.parse_pod_selector("gw:gateway.envoyproxy.io/owning-gateway-name=kfn")
    assert selector == forwarding.PodSelector("gw", "gateway.envoyproxy.io/owning-gateway-name=kfn")
    assert forwarding.parse_pod_selector("") is None


def test_a_pods_addresses_are_trusted_until_it_ends() -> None:
    running = {"status": {"phase": "Running", "podIP": "10.1.0.5",
                          "podIPs": [{"ip": "10.1.0.5"}, {"ip": "fd00::5"}]}}  # fmt: skip
    assert trusted_pods.addresses(running) == {
        ipaddress.ip_address("10.1.0.5"),
        ipaddress.ip_address("fd00::5"),
    }
    assert trusted_pods.addresses({"status": {"phase": "Pending"}}) == frozenset()
    assert trusted_pods.addresses({"status": {"phase": "Failed", "podIP": "10.1.0.5"}}) is None


# --- through the activator -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_activator_believes_a_trusted_network_and_nobody_else(
    backend: Backend, make_activator: MakeActivator
) -> None:
    forged = {"X-Forwarded-For": f"6.6.6.6, {CLIENT}", "X-Forwarded-Proto": "https"}
    untrusting = await make_activator(endpoints=frozenset({backend.address}))
    client = await Client.connect(untrusting.ports[0])
    seen = (await client.request("GET", "/", headers=forged)).json()["headers"]
    assert (seen["x-forwarded-for"], seen["x-forwarded-proto"]) == ("127.0.0.1", "http")
    await client.close()

    trusting = await make_activator(
        endpoints=frozenset({backend.address}),
        trusted_networks=forwarding.parse_cidrs("127.0.0.0/8"),
    )
    client = await Client.connect(trusting.ports[0])
    seen = (await client.request("GET", "/", headers=forged)).json()["headers"]
    assert (seen["x-forwarded-for"], seen["x-forwarded-proto"]) == (CLIENT, "https")
    await client.close()


@pytest.mark.asyncio
async def test_watched_proxy_pods_are_trusted_while_they_exist_even_on_an_open_connection(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    server = ApiServer()
    selector = forwarding.PodSelector("gw", "app=envoy")
    pods = trusted_pods.TrustedPods(selector, activator.set_trusted_pods, reflect=server.reflect)
    running = asyncio.create_task(pods.run())
    envoy = {"metadata": {"namespace": "gw", "name": "envoy-1"},
             "status": {"phase": "Running", "podIP": "127.0.0.1"}}  # fmt: skip
    elsewhere = {"metadata": {"namespace": "other", "name": "envoy-2"},
                 "status": {"phase": "Running", "podIP": "127.0.0.2"}}  # fmt: skip
    client = await Client.connect(activator.ports[0])
    forged = {"X-Forwarded-For": CLIENT}

    seen = (await client.request("GET", "/", headers=forged)).json()["headers"]
    assert seen["x-forwarded-for"] == "127.0.0.1"
    await asyncio.to_thread(server.send, [envoy, elsewhere])
    assert pods.synced.is_set()
    assert server.calls[0][2] == "app=envoy"
    seen = (await client.request("GET", "/", headers=forged)).json()["headers"]
    assert seen["x-forwarded-for"] == CLIENT
    await asyncio.to_thread(server.send, ("DELETED", envoy))
    seen = (await client.request("GET", "/", headers=forged)).json()["headers"]
    assert seen["x-forwarded-for"] == "127.0.0.1"

    await client.close()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    server.hang_up()


def test_resolved_chains_are_kept_per_trusted_set_within_a_bound() -> None:
    trusted = forwarding.Trusted.of(forwarding.parse_cidrs("10.0.0.0/8"))
    first = forwarding.client(PEER, CLIENT.encode(), b"", trusted)
    assert forwarding.client(PEER, CLIENT.encode(), b"", trusted) is first
    long_chain = ", ".join(["10.1.1.1"] * 40).encode()
    forwarding.client(PEER, long_chain, b"", trusted)
    assert (PEER, long_chain, b"") not in trusted.resolved  # long chains are not kept
    for i in range(forwarding._CACHE_LIMIT + 5):
        forwarding.client(PEER, f"198.51.{i // 256}.{i % 256}".encode(), b"", trusted)
    assert len(trusted.resolved) <= forwarding._CACHE_LIMIT
    # A new set starts empty: what the old one believed is not carried over.
    assert forwarding.Trusted.of(trusted.networks).resolved == {}
