"""Function URLs' hosts and the CORS decisions the activator applies (kfn.api.web)."""

from __future__ import annotations

import pydantic
import pytest

from kfn.api import function, web

# --- a Function URL's host --------------------------------------------------------------------


def test_the_default_template_puts_a_function_url_one_label_under_the_domain() -> None:
    host = web.url_host(
        web.DEFAULT_HOST_TEMPLATE, function="hello", namespace="shop", domain="fn.example.com"
    )
    assert host == "hello-shop.fn.example.com"


def test_knatives_shape_is_a_template_away() -> None:
    host = web.url_host(
        "{function}.{namespace}.{domain}", function="a", namespace="b", domain="example.com"
    )
    assert host == "a.b.example.com"


def test_a_host_whose_label_would_pass_63_characters_is_none() -> None:
    assert (
        web.url_host(
            web.DEFAULT_HOST_TEMPLATE, function="f" * 40, namespace="n" * 30, domain="example.com"
        )
        is None
    )


@pytest.mark.parametrize(
    ("template", "complaint"),
    [
        ("{function}.{domain}", "both"),
        ("{function}-{ns}.{domain}", "unknown fields"),
        ("{namespace}.{domain}", "both"),
        ("{function}-{namespace}.{domain", "malformed"),
    ],
)
def test_a_template_that_cannot_give_each_function_its_own_host_is_refused(
    template: str, complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        web.check_host_template(template)


# --- the API -----------------------------------------------------------------------------------


def test_an_empty_url_asks_for_a_function_url_with_lambdas_defaults() -> None:
    url = function.FunctionSpec.model_validate(
        {"runtime": "python3.11", "handler": "app.main", "source": {"image": "x"}, "url": {}}
    ).url
    assert url == web.FunctionUrl(auth="None", cors=None, invoke_mode="Buffered")


def test_response_streaming_is_refused_until_the_runtimes_stream() -> None:
    with pytest.raises(pydantic.ValidationError):
        web.FunctionUrl.model_validate({"invokeMode": "ResponseStream"})


def test_credentials_with_any_origin_are_refused_as_browsers_refuse_them() -> None:
    with pytest.raises(pydantic.ValidationError, match="allowCredentials"):
        web.Cors.model_validate({"allowOrigins": ["*"], "allowCredentials": True})


@pytest.mark.parametrize("origin", ["example.com", "https://example.com/path", "ftp://x.y"])
def test_an_origin_is_a_scheme_and_a_host(origin: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        web.Cors.model_validate({"allowOrigins": [origin]})


# --- CORS decisions ---------------------------------------------------------------------------

POLICY = web.CorsPolicy.of(
    web.Cors.model_validate(
        {
            "allowOrigins": ["https://app.example.com", "https://*.example.org"],
            "allowMethods": ["GET", "POST"],
            "allowHeaders": ["content-type", "x-api-key"],
            "exposeHeaders": ["x-request-id"],
            "maxAge": 600,
            "allowCredentials": True,
        }
    )
)


def test_an_allowed_preflight_gets_every_configured_header() -> None:
    answer = POLICY.preflight("https://app.example.com", "POST", ["Content-Type"])
    assert answer == {
        "Access-Control-Allow-Origin": "https://app.example.com",
        "Access-Control-Allow-Methods": "GET, POST",
        "Access-Control-Allow-Headers": "content-type, x-api-key",
        "Access-Control-Max-Age": "600",
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }


@pytest.mark.parametrize(
    ("origin", "method", "headers"),
    [
        ("https://evil.example.net", "GET", []),
        ("https://app.example.com", "DELETE", []),
        ("https://app.example.com", "PUT", []),
        ("https://app.example.com", "GET", ["authorization"]),
        ("http://app.example.com", "GET", []),
    ],
)
def test_a_preflight_outside_the_policy_gets_no_cors_headers(
    origin: str, method: str, headers: list[str]
) -> None:
    assert POLICY.preflight(origin, method, headers) == {}


def test_a_wildcard_subdomain_origin_admits_any_depth_but_not_the_bare_domain() -> None:
    assert POLICY.allows_origin("https://a.b.example.org")
    assert not POLICY.allows_origin("https://example.org")
    assert not POLICY.allows_origin("https://badexample.org")


def test_any_origin_without_credentials_answers_star_without_vary() -> None:
    policy = web.CorsPolicy.of(web.Cors.model_validate({"allowOrigins": ["*"]}))
    assert policy.simple("https://x.test") == {"Access-Control-Allow-Origin": "*"}


def test_a_simple_request_gets_the_origin_the_exposed_headers_and_credentials() -> None:
    assert POLICY.simple("https://app.example.com") == {
        "Access-Control-Allow-Origin": "https://app.example.com",
        "Access-Control-Expose-Headers": "x-request-id",
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }


def test_star_methods_and_headers_echo_what_the_browser_asked() -> None:
    policy = web.CorsPolicy.of(
        web.Cors.model_validate(
            {"allowOrigins": ["*"], "allowMethods": ["*"], "allowHeaders": ["*"]}
        )
    )
    answer = policy.preflight("https://x.test", "PATCH", ["X-One", "X-Two"])
    assert answer["Access-Control-Allow-Methods"] == "PATCH"
    assert answer["Access-Control-Allow-Headers"] == "X-One, X-Two"


def test_only_options_with_origin_and_a_requested_method_is_a_preflight() -> None:
    assert web.is_preflight("OPTIONS", "https://x.test", "GET")
    assert not web.is_preflight("OPTIONS", "https://x.test", "")
    assert not web.is_preflight("OPTIONS", "", "GET")
    assert not web.is_preflight("GET", "https://x.test", "GET")


def test_safelisted_methods_pass_a_preflight_even_when_not_listed() -> None:
    policy = web.CorsPolicy.of(
        web.Cors.model_validate({"allowOrigins": ["*"], "allowHeaders": ["x-api-key"]})
    )
    assert policy.preflight("https://x.test", "GET", ["x-api-key"])
    assert not policy.preflight("https://x.test", "DELETE", [])
