"""The activator's flags for the cluster's edge: Function URLs and trusted proxies.

A malformed value stops the activator at start (exit 2) with a message naming the flag and
what is wrong; each flag falls back to its environment variable, as the others do.
"""

from __future__ import annotations

import ipaddress

import pytest

from kfn.activator import __main__ as main
from kfn.activator import catalog, forwarding
from kfn.api import web


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main.parse_args(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["--function-url-host-template", "{function}.{domain}"],
            "must use both {function} and {namespace}",
            id="a template without the namespace",
        ),
        pytest.param(
            ["--function-url-host-template", "{fn}-{function}-{namespace}.{domain}"],
            "has unknown fields ['fn']",
            id="a template with an unknown field",
        ),
        pytest.param(
            ["--function-url-host-template", "{function}-{namespace}.{domain"],
            "is malformed",
            id="a template with an unbalanced brace",
        ),
        pytest.param(
            ["--function-url-domain", "fn.example.com",
             "--function-url-host-template", "{function}_{namespace}.{domain}"],
            "does not make DNS names",
            id="a template making no DNS name",
        ),
        pytest.param(
            ["--function-url-domain", "Fn.Example..com"],
            "--function-url-domain: 'Fn.Example..com' is not a lower-case DNS name",
            id="a domain that is no DNS name",
        ),
        pytest.param(
            ["--trusted-proxy-cidrs", "10.0.0.0/8,10.0.0.300"],
            "--trusted-proxy-cidrs: '10.0.0.300' is not an IP network",
            id="a trusted CIDR that is none",
        ),
        pytest.param(
            ["--trusted-proxy-pods", "app=envoy"],
            "--trusted-proxy-pods: 'app=envoy' is not NAMESPACE:LABEL_SELECTOR",
            id="trusted pods without a namespace",
        ),
        pytest.param(
            ["--config", "static.json", "--trusted-proxy-pods", "gw:app=envoy"],
            "--trusted-proxy-pods watches the cluster: it needs cluster mode",
            id="trusted pods from a static config",
        ),
    ],
)  # fmt: skip
def test_a_malformed_edge_flag_stops_the_activator_saying_what_is_wrong(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in refused(argv, capsys)


def test_by_default_no_function_url_is_served_and_no_proxy_is_trusted() -> None:
    args = main.parse_args([])
    assert args.function_urls == catalog.NOT_SERVED
    assert args.function_urls.template == web.DEFAULT_HOST_TEMPLATE
    assert args.trusted_proxy_cidrs == ()
    assert args.trusted_proxy_pods is None


def test_the_edge_flags_fall_back_to_their_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KFN_FUNCTION_URL_DOMAIN", "fn.example.com")
    monkeypatch.setenv("KFN_FUNCTION_URL_HOST_TEMPLATE", "{function}.{namespace}.{domain}")
    monkeypatch.setenv("KFN_TRUSTED_PROXY_CIDRS", "10.0.0.0/8, fd00::/8")
    monkeypatch.setenv("KFN_TRUSTED_PROXY_PODS", "envoy-gateway-system:app=envoy")
    args = main.parse_args([])
    assert args.function_urls == catalog.FunctionUrls(
        "fn.example.com", "{function}.{namespace}.{domain}"
    )
    assert args.trusted_proxy_cidrs == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
    )
    assert args.trusted_proxy_pods == forwarding.PodSelector("envoy-gateway-system", "app=envoy")
    # A flag wins over its variable.
    assert main.parse_args(["--function-url-domain", ""]).function_urls.domain == ""
