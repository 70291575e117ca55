"""Routing: host, longest path prefix on whole segments, methods; the invoke API."""

from __future__ import annotations

import tracemalloc

import pytest

from kfn import stats
from kfn.activator import config, router
from kfn.api import web

API = stats.FunctionKey("default", "api")
USERS = stats.FunctionKey("default", "users")
SITE = stats.FunctionKey("web", "site")
ANY = stats.FunctionKey("default", "any")


def _router() -> router.Router:
    return router.Router(
        [
            router.Route(host="*", path_prefix="/", function=ANY),
            router.Route(host="*", path_prefix="/api", function=API),
            router.Route(
                host="*", path_prefix="/api/users/", function=USERS, methods=frozenset({"GET"})
            ),
            router.Route(host="site.example.com", path_prefix="/", function=SITE),
        ]
    )


def test_longest_prefix_wins() -> None:
    routes = _router()
    assert routes.match(b"x", b"/api/users/7", b"GET") == router.Match(USERS)
    assert routes.match(b"x", b"/api/orders", b"GET") == router.Match(API)
    assert routes.match(b"x", b"/other", b"GET") == router.Match(ANY)


def test_prefix_matches_whole_segments_only() -> None:
    assert _router().match(b"x", b"/apix", b"GET") == router.Match(ANY)
    assert _router().match(b"x", b"/api", b"GET") == router.Match(API)


def test_method_restriction_falls_back_to_a_shorter_prefix() -> None:
    assert _router().match(b"x", b"/api/users/7", b"POST") == router.Match(API)


def test_named_host_wins_over_any_host_and_ignores_port_and_case() -> None:
    routes = _router()
    assert routes.match(b"Site.Example.com:8080", b"/api", b"GET") == router.Match(SITE)


def test_query_string_is_ignored_for_matching() -> None:
    assert _router().match(b"x", b"/api?x=/y", b"GET") == router.Match(API)


def test_no_route_gives_none() -> None:
    routes = router.Router([router.Route(host="a.example", path_prefix="/", function=ANY)])
    assert routes.match(b"b.example", b"/", b"GET") is None


def test_invoke_api_path_names_the_function() -> None:
    match = router.Router().match(b"x", b"/_kfn/functions/team-a/resize/invoke", b"POST")
    assert match == router.Match(stats.FunctionKey("team-a", "resize"), invoke=True)


def test_malformed_invoke_paths_do_not_match() -> None:
    routes = router.Router()
    assert routes.match(b"x", b"/_kfn/functions/only-one/invoke", b"POST") is None
    assert routes.match(b"x", b"/_kfn/functions/a/b/c/invoke", b"POST") is None
    assert routes.match(b"x", b"/_kfn/functions/a/b", b"POST") is None


def test_long_urls_do_not_grow_the_routing_cache() -> None:
    routes = _router()
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    for i in range(300):
        path = b"/api/" + b"a" * (64 * 1024) + b"?%d" % i
        assert routes.match(b"x", path, b"GET") == router.Match(API)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Each URL is 64 KiB: a cache keyed by whole URLs would keep about 19 MiB.
    assert held - before < 1024 * 1024


# --- routes belong to namespaces -------------------------------------------------------------

ORDERS = stats.FunctionKey("team-a", "orders")
TEAM_A_SITE = stats.FunctionKey("team-a", "site")
CATCHALL = stats.FunctionKey("team-b", "catchall")
TEAM_B_API = stats.FunctionKey("team-b", "api")


def _owners(host: str) -> frozenset[str] | None:
    """team-a owns shop.example and every host below team-a.example."""
    if host == "shop.example" or host.endswith(".team-a.example"):
        return frozenset({"team-a"})
    return None


def _tenants() -> router.Router:
    return router.Router(
        [
            router.Route(host="shop.example", path_prefix="/api", function=TEAM_A_SITE),
            router.Route(host="*", path_prefix="/", function=CATCHALL),
        ],
        _owners,
    )


def test_a_host_a_namespace_owns_never_reaches_another_namespaces_route_for_any_host() -> None:
    routes = _tenants()
    assert routes.match(b"shop.example", b"/api/cart", b"GET") == router.Match(TEAM_A_SITE)
    # The host's cookies would go with the request: another namespace's catch-all is no answer.
    assert routes.match(b"shop.example", b"/login", b"GET") is None
    assert routes.match(b"www.team-a.example", b"/", b"GET") is None
    assert routes.match(b"other.example", b"/login", b"GET") == router.Match(CATCHALL)


def test_a_host_with_bytes_outside_ascii_still_falls_under_its_owners_suffix() -> None:
    assert _tenants().match(b"\xff.team-a.example", b"/", b"GET") is None


@pytest.mark.parametrize(
    ("shorter", "post_below"),
    [
        # team-a claimed /api/orders first: team-b's later /api never answers below it.
        pytest.param(TEAM_B_API, None, id="another namespace's shorter prefix is fenced off"),
        pytest.param(TEAM_A_SITE, TEAM_A_SITE, id="the namespace's own shorter prefix answers"),
    ],
)
def test_the_longest_prefix_holding_a_path_fences_it_from_other_namespaces_whatever_the_method(
    shorter: stats.FunctionKey, post_below: stats.FunctionKey | None
) -> None:
    routes = router.Router(
        [
            router.Route(host="*", path_prefix="/api/orders", function=ORDERS,
                         methods=frozenset({"GET"})),
            router.Route(host="*", path_prefix="/api", function=shorter),
        ]
    )  # fmt: skip
    assert routes.match(b"x", b"/api/orders/7", b"GET") == router.Match(ORDERS)
    below = routes.match(b"x", b"/api/orders/7", b"POST")
    assert below == (None if post_below is None else router.Match(post_below))
    assert routes.match(b"x", b"/api/users", b"POST") == router.Match(shorter)


def test_a_static_configs_route_may_ask_for_a_service_account_token() -> None:
    parsed = config.parse(
        {
            "routes": [
                {"path_prefix": "/open", "function": "default/a"},
                {"path_prefix": "/admin", "function": "default/a", "auth": "ServiceAccountToken"},
            ]
        }
    )
    assert [route.checked for route in parsed.routes] == [False, True]
    with pytest.raises(ValueError, match="None or ServiceAccountToken"):
        config.parse({"routes": [{"function": "default/a", "auth": "AWS_IAM"}]})


def test_a_static_configs_route_may_carry_a_cors_policy() -> None:
    parsed = config.parse(
        {
            "routes": [
                {"path_prefix": "/open", "function": "default/a"},
                {"path_prefix": "/app", "function": "default/a",
                 "cors": {"allowOrigins": ["http://localhost:3000"], "maxAge": 60}},
            ]
        }
    )  # fmt: skip
    assert parsed.routes[0].cors is None
    assert parsed.routes[1].cors == web.CorsPolicy(origins=("http://localhost:3000",), max_age=60)
    table = router.Router(parsed.routes)
    match = table.match(b"x", b"/app/x", b"GET")
    assert match is not None
    assert match.cors is parsed.routes[1].cors


def test_a_static_configs_route_may_name_a_payload_format_and_strip_its_prefix() -> None:
    parsed = config.parse(
        {
            "routes": [
                {"path_prefix": "/open", "function": "default/a"},
                {"path_prefix": "/rest", "function": "default/a", "payload_format": "1.0",
                 "strip_prefix": True},
            ]
        }
    )  # fmt: skip
    assert [(r.payload_format, r.strip_prefix) for r in parsed.routes] == [
        ("2.0", False),
        ("1.0", True),
    ]
    with pytest.raises(ValueError, match=r"2\.0, 1\.0 or alb"):
        config.parse({"routes": [{"function": "default/a", "payload_format": "3.0"}]})


def test_a_route_naming_a_version_or_alias_gives_its_matches_that_qualifier() -> None:
    table = router.Router(
        [
            router.Route(host="*", path_prefix="/", function=ANY),
            router.Route(host="*", path_prefix="/api", function=API, qualifier="live"),
            router.Route(host="*", path_prefix="/v3", function=API, qualifier="3"),
            router.Route(host="*", path_prefix="/new", function=API, qualifier="$LATEST"),
        ]
    )
    assert table.match(b"x", b"/api/orders", b"GET") == router.Match(API, qualifier="live")
    assert table.match(b"x", b"/v3", b"POST") == router.Match(API, qualifier="3")
    assert table.match(b"x", b"/new/x", b"GET") == router.Match(API)
    assert table.match(b"x", b"/other", b"GET") == router.Match(ANY)
    invoked = table.match(b"x", b"/_kfn/functions/default/api/invoke", b"POST")
    assert invoked == router.Match(API, invoke=True)
