"""Function URLs are route claims: their hosts belong to their functions' namespaces.

The same decision as HTTP Triggers' (``test_route_ownership``), with Function URL claims in it:
judged before every Trigger, keyed apart from Triggers of the same name, and colliding with one
another only through the cluster's host template.
"""

from __future__ import annotations

from typing import Any

import pytest

from kfn.api import function, routes, web

DOMAIN = "fn.example.com"
TEMPLATE = web.DEFAULT_HOST_TEMPLATE


def u(key: str, day: int, template: str = TEMPLATE) -> routes.Claim:
    """The claim of Function ``namespace/name``'s URL, created on day ``day`` of January 2024."""
    claim = routes.url_claim(fn(key), f"2024-01-{day:02d}T00:00:00Z", template, DOMAIN)
    assert claim is not None
    return claim


def t(key: str, day: int, prefix: str = "/", host: str = "") -> routes.Claim:
    namespace, name = key.split("/")
    return routes.Claim(namespace, name, f"2024-01-{day:02d}T00:00:00Z", host, prefix)


def fn(key: str, url: dict[str, Any] | None = None) -> function.Function:
    namespace, name = key.split("/")
    spec: dict[str, Any] = {
        "runtime": "python3.11",
        "handler": "app.handler",
        "source": {"inline": {"files": [{"name": "app.py", "content": "x"}]}},
        "url": {} if url is None else url,
    }
    return function.Function.model_validate(
        {"metadata": {"name": name, "namespace": namespace}, "spec": spec}
    )


def holders(decided: routes.Ownership) -> dict[routes.Key, routes.Key | None]:
    return {key: refusal.holder for key, refusal in decided.refused.items()}


# --- the claim -------------------------------------------------------------------------------


def test_a_function_url_claims_its_templated_host_with_every_path_and_method() -> None:
    claim = u("shop/hello", 1)
    assert (claim.host, claim.path_prefix, claim.methods) == (
        f"hello-shop.{DOMAIN}",
        "/",
        frozenset(),
    )
    assert claim.key == routes.FunctionUrlKey("shop", "hello")
    assert claim.kind == routes.FUNCTION_URL


def test_no_url_no_domain_or_a_host_too_long_for_dns_claim_nothing() -> None:
    without = function.Function.model_validate(
        {"metadata": {"name": "a", "namespace": "b"}, "spec": fn("b/a").spec.model_dump(
            by_alias=True, exclude={"url"}, exclude_none=True)}
    )  # fmt: skip
    assert routes.url_claim(without, "", TEMPLATE, DOMAIN) is None
    assert routes.url_claim(fn("b/a"), "", TEMPLATE, "") is None
    assert routes.url_claim(fn(f"{'n' * 40}/{'f' * 40}"), "", TEMPLATE, DOMAIN) is None


def test_a_trigger_and_a_function_of_the_same_name_have_keys_that_never_clash() -> None:
    url, trigger = u("a/web", 1), t("a/web", 1, "/", "shop.example.com")
    assert url.key != trigger.key
    decided = routes.decide([url, trigger])
    assert {c.key for c in decided.granted} == {url.key, ("a", "web")}


# --- the decision ----------------------------------------------------------------------------


def test_a_trigger_of_another_namespace_naming_a_function_url_host_is_refused_even_first() -> None:
    squatter = t("b/squat", 1, "/", f"hello-a.{DOMAIN}")
    decided = routes.decide([squatter, u("a/hello", 2)])
    assert holders(decided) == {("b", "squat"): routes.FunctionUrlKey("a", "hello")}
    message = decided.refused["b", "squat"].message
    assert "the Function URL of Function a/hello" in message
    assert "belongs, with every path, to its function's namespace (a)" in message
    assert decided.answering(f"hello-a.{DOMAIN}") == frozenset({"a"})


def test_a_trigger_of_the_same_namespace_may_route_a_longer_prefix_on_its_url_host() -> None:
    host = f"hello-a.{DOMAIN}"
    decided = routes.decide(
        [t("a/api", 1, "/api", host), t("a/root", 1, "/", host), u("a/hello", 2)]
    )
    assert holders(decided) == {("a", "root"): routes.FunctionUrlKey("a", "hello")}
    assert "routes every path and method of host" in decided.refused["a", "root"].message
    assert [c.key for c in decided.granted] == [routes.FunctionUrlKey("a", "hello"), ("a", "api")]


def test_two_function_urls_collide_only_through_the_template_and_the_older_keeps_it() -> None:
    older, newer = u("b-c/a", 1), u("c/a-b", 2)
    assert older.host == newer.host == f"a-b-c.{DOMAIN}"
    decided = routes.decide([newer, older])
    assert holders(decided) == {newer.key: older.key}
    message = decided.refused[newer.key].message
    assert "also the Function URL host of Function b-c/a, which is older and keeps it" in message
    assert "{function}.{namespace}.{domain}" in message
    dotted = "{function}.{namespace}.{domain}"
    assert routes.decide([u("b-c/a", 1, dotted), u("c/a-b", 2, dotted)]).refused == {}


def test_function_urls_leave_the_default_host_and_other_hosts_to_triggers() -> None:
    decided = routes.decide([u("a/hello", 2), t("b/web", 1, "/"), t("b/shop", 1, "/", "shop.io")])
    assert decided.refused == {}
    assert decided.answering("shop.io") == frozenset({"b"})


@pytest.mark.parametrize(
    ("policy", "fragment"),
    [
        pytest.param(
            routes.policy({"b": [f"*.{DOMAIN}"]}),
            "the Function URL's host hello-a.fn.example.com is assigned by the cluster admin "
            "to namespace b",
            id="an admin's assignment of the URL domain to another namespace",
        ),
        pytest.param(
            routes.policy({}, [f"hello-a.{DOMAIN}"]),
            "the Function URL host hello-a.fn.example.com is the shared default host",
            id="a default host",
        ),
    ],
)
def test_the_admins_host_policy_binds_function_urls_as_it_binds_triggers(
    policy: routes.HostPolicy, fragment: str
) -> None:
    decided = routes.decide([u("a/hello", 1)], policy)
    assert holders(decided) == {routes.FunctionUrlKey("a", "hello"): None}
    assert fragment in decided.refused[routes.FunctionUrlKey("a", "hello")].message


def test_a_trigger_refused_by_a_shared_hosts_function_url_prefix_names_the_url() -> None:
    shared = routes.policy({"a": [f"*.{DOMAIN}"], "b": [f"*.{DOMAIN}"]})
    decided = routes.decide([t("b/web", 1, "/api", f"hello-a.{DOMAIN}"), u("a/hello", 2)], shared)
    assert holders(decided) == {("b", "web"): routes.FunctionUrlKey("a", "hello")}
    assert (
        "the Function URL of Function a/hello claimed / first"
        in decided.refused["b", "web"].message
    )
