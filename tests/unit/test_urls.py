"""The URL rules: how a user's URL is shown, and which addresses kfn fetches from (pure)."""

from __future__ import annotations

import ipaddress

import pytest

from kfn import urls

# --- redact: the one way a user's URL is shown ------------------------------------------------

REDACTIONS = [
    pytest.param("https://bucket.s3.amazonaws.com/code.zip?X-Amz-Signature=abc&X-Amz-Credential=k",
                 "https://bucket.s3.amazonaws.com/code.zip", id="a presigned URL loses its query"),
    pytest.param("https://acct.blob.core.windows.net/c/code.zip?sv=1&sig=abc",
                 "https://acct.blob.core.windows.net/c/code.zip", id="a SAS URL loses its query"),
    pytest.param("https://user:secret@host.example/code.zip",
                 "https://host.example/code.zip", id="a login before the host is left out"),
    pytest.param("https://host.example/code.zip#frag", "https://host.example/code.zip",
                 id="a fragment is left out"),
    pytest.param("http://host.example:8080/a/b.tar.gz", "http://host.example:8080/a/b.tar.gz",
                 id="a URL without secrets is shown as it is"),
    pytest.param("https://host.example?token=abc", "https://host.example",
                 id="a query right after the host is left out"),
    pytest.param("https://u:p@[fd00::1]:8443/x?y", "https://[fd00::1]:8443/x",
                 id="an IPv6 host keeps its brackets and port"),
    pytest.param("https://host.example/p@th/code.zip", "https://host.example/p@th/code.zip",
                 id="an @ in the path is not a login"),
]  # fmt: skip


@pytest.mark.parametrize(("url", "shown"), REDACTIONS)
def test_a_url_is_shown_without_its_login_query_and_fragment(url: str, shown: str) -> None:
    assert urls.redact(url) == shown


def test_every_occurrence_of_a_url_in_a_message_is_redacted() -> None:
    url = "https://h.example/c.zip?sig=s3cr3t"
    text = f"downloading {url} failed; retry {url}"
    assert urls.redact_in(text, url) == (
        "downloading https://h.example/c.zip failed; retry https://h.example/c.zip"
    )
    assert urls.redact_in(text, "") == text


# --- host --------------------------------------------------------------------------------------

HOSTS = [
    pytest.param("http://Archive.Example.com/x", "archive.example.com", id="lower-cased"),
    pytest.param("http://archive.example.com:8080/x", "archive.example.com", id="without port"),
    pytest.param("http://u:p@10.0.0.1/x", "10.0.0.1", id="without login"),
    pytest.param("http://[FD00:EC2::254]:80/", "fd00:ec2::254", id="IPv6 without brackets"),
    pytest.param("http://h.example?x=1", "h.example", id="ended by a query"),
]  # fmt: skip


@pytest.mark.parametrize(("url", "host"), HOSTS)
def test_the_host_of_a_url(url: str, host: str) -> None:
    assert urls.host(url) == host


# --- refusal: which addresses are fetched from ------------------------------------------------

NONE: tuple[urls.Network, ...] = ()
CLUSTER = urls.parse_networks(["169.254.0.0/16", "127.0.0.1"])

REFUSALS = [
    pytest.param("10.0.0.1", ["10.0.0.1"], NONE, None, id="a private address is fetched"),
    pytest.param("archive.example", ["93.184.216.34"], NONE, None,
                 id="a public address is fetched"),
    pytest.param("127.0.0.1", ["127.0.0.1"], NONE, "127.0.0.1, a loopback address",
                 id="loopback"),
    pytest.param("127.1.2.3", ["127.1.2.3"], NONE, "127.1.2.3, a loopback address",
                 id="all of 127.0.0.0/8 is loopback"),
    pytest.param("::1", ["::1"], NONE, "::1, a loopback address", id="IPv6 loopback"),
    pytest.param("169.254.1.1", ["169.254.1.1"], NONE, "169.254.1.1, a link-local address",
                 id="IPv4 link-local"),
    pytest.param("fe80::1", ["fe80::1"], NONE, "fe80::1, a link-local address",
                 id="IPv6 link-local"),
    pytest.param("169.254.169.254", ["169.254.169.254"], NONE,
                 "169.254.169.254, a cloud metadata address", id="the metadata address"),
    pytest.param("fd00:ec2::254", ["fd00:ec2::254"], NONE,
                 "fd00:ec2::254, a cloud metadata address", id="AWS's IPv6 metadata address"),
    pytest.param("100.100.100.200", ["100.100.100.200"], NONE,
                 "100.100.100.200, a cloud metadata address", id="Alibaba's metadata address"),
    pytest.param("::ffff:169.254.169.254", ["::ffff:169.254.169.254"], NONE,
                 "::ffff:a9fe:a9fe, a cloud metadata address", id="a metadata address in IPv6"),
    pytest.param("0.0.0.0", ["0.0.0.0"], NONE,  # noqa: S104 - the address refused
                 "0.0.0.0, the unspecified address, which reaches the machine itself",
                 id="the unspecified address"),
    pytest.param("a.example", ["10.0.0.1", "169.254.169.254"], NONE,
                 "a.example resolves to 169.254.169.254, a cloud metadata address",
                 id="one bad address of several refuses the name"),
    pytest.param("metadata.google.internal", [], NONE,
                 "metadata.google.internal is a cloud metadata service",
                 id="the metadata name, unresolved"),
    pytest.param("Metadata.Google.Internal.", ["10.0.0.1"], NONE,
                 "Metadata.Google.Internal. is a cloud metadata service",
                 id="the metadata name in any case, with a trailing dot"),
    pytest.param("169.254.169.254", ["169.254.169.254"], CLUSTER, None,
                 id="an allowed network lets the metadata address through"),
    pytest.param("127.0.0.1", ["127.0.0.1"], CLUSTER, None, id="an allowed loopback address"),
    pytest.param("127.0.0.2", ["127.0.0.2"], CLUSTER, "127.0.0.2, a loopback address",
                 id="an allowed address allows no other"),
    pytest.param("metadata.google.internal", ["169.254.169.254"], CLUSTER, None,
                 id="the metadata name, when every address it resolves to is allowed"),
    pytest.param("metadata.google.internal", [], CLUSTER,
                 "metadata.google.internal is a cloud metadata service",
                 id="the metadata name, unresolved, is not allowed by networks"),
]  # fmt: skip


@pytest.mark.parametrize(("host", "addresses", "allowed", "expected"), REFUSALS)
def test_which_addresses_builds_fetch_from(
    host: str, addresses: list[str], allowed: tuple[urls.Network, ...], expected: str | None
) -> None:
    found = [ipaddress.ip_address(a) for a in addresses]
    assert urls.refusal(host, found, allowed) == expected


def test_allowed_networks_are_cidrs_or_single_addresses() -> None:
    assert urls.parse_networks(["10.0.0.0/8", " fd00::/8", "169.254.169.254"]) == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
        ipaddress.ip_network("169.254.169.254/32"),
    )


def test_a_network_that_is_not_one_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0/33' is not a network in CIDR notation"):
        urls.parse_networks(["10.0.0.0/8", "10.0.0/33"])
