"""Functions and routes the activator builds from Function and Trigger objects."""

from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from kfn import kube, stats
from kfn.activator import catalog, router
from kfn.activator import config as configs
from kfn.api import function, routes, trigger, web
from tests.unit.apiserver import ApiServer

OPERATOR = pathlib.Path(__file__).resolve().parents[3] / "operator"


def fn(name: str, **spec: Any) -> function.Function:
    return function.Function.model_validate(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": name, "namespace": "team"},
            "spec": {"source": {"image": "registry.example/fn@sha256:" + "a" * 64}, **spec},
        }
    )


def http_trigger(
    name: str, target: str, namespace: str = "team", qualifier: str | None = None, **http: Any
) -> trigger.Trigger:
    return trigger.Trigger.model_validate(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"functionRef": {"name": target, "qualifier": qualifier}, "http": http},
        }
    )


def test_every_function_gets_its_concurrency_and_timeout_as_limits() -> None:
    limits = catalog.limits([fn("a", concurrency=4, timeout="90s"), fn("b")], queue_limit=7)
    assert limits[stats.FunctionKey("team", "a")] == configs.FunctionLimits(
        concurrency=4, timeout_ms=90_000, queue_limit=7, queue_timeout_ms=15_000
    )
    assert limits[stats.FunctionKey("team", "b")].timeout_ms == 30_000


def test_a_timeout_above_the_longest_the_release_serves_is_held_to_it() -> None:
    # The operator refuses to deploy such a Function; until then the activator holds no
    # request longer than its drain is sized for.
    functions = [fn("long", timeout="10m"), fn("short", timeout="30s"), fn("edge", timeout="2m")]
    limits = catalog.limits(functions, queue_limit=7, max_timeout_ms=120_000)
    assert {key.name: value.timeout_ms for key, value in limits.items()} == {
        "long": 120_000,
        "short": 30_000,
        "edge": 120_000,
    }
    unbounded = catalog.limits([fn("long", timeout="15m")], queue_limit=7)
    assert unbounded[stats.FunctionKey("team", "long")].timeout_ms == 900_000


@pytest.mark.parametrize(
    ("spec", "default_ms", "expected_ms"),
    [
        # Unset: the activator's default, which covers Lambda's 10 s init and a pod start.
        ({}, 15_000, 15_000),
        ({}, 30_000, 30_000),
        # Unset with a longer init budget: raised so a slow, allowed init is waited for.
        ({"initTimeout": "60s"}, 15_000, 65_000),
        # Set: the Function's own, shorter or longer, 0s included (refuse at once).
        ({"queueTimeout": "2s", "initTimeout": "60s"}, 15_000, 2_000),
        ({"queueTimeout": "0s"}, 15_000, 0),
        ({"queueTimeout": "5m"}, 15_000, 300_000),
    ],
)
def test_a_functions_queue_timeout_is_its_own_else_the_default_covering_its_init(
    spec: dict[str, str], default_ms: int, expected_ms: int
) -> None:
    limits = catalog.limits([fn("a", **spec)], queue_limit=7, queue_timeout_ms=default_ms)
    assert limits[stats.FunctionKey("team", "a")].queue_timeout_ms == expected_ms


def test_http_triggers_become_routes_and_others_do_not() -> None:
    cron = trigger.Trigger.model_validate(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": "tick", "namespace": "team"},
            "spec": {"functionRef": {"name": "a"}, "cron": {"schedule": "@every 10s"}},
        }
    )
    routes = catalog.routes(
        [http_trigger("web", "a", host="shop.example", pathPrefix="/api", methods=["GET"]), cron],
        {},
    ).routes
    assert routes == (
        router.Route(
            host="shop.example",
            path_prefix="/api",
            methods=frozenset({"GET"}),
            function=stats.FunctionKey("team", "a"),
        ),
    )


def test_a_trigger_asking_for_a_service_account_token_becomes_a_checked_route() -> None:
    found = catalog.routes(
        [
            http_trigger("open", "a", pathPrefix="/"),
            http_trigger("admin", "a", pathPrefix="/admin", auth="ServiceAccountToken"),
        ],
        {("team", "open"): JAN, ("team", "admin"): FEB},
    )
    assert {route.path_prefix: route.checked for route in found.routes} == {
        "/": False,
        "/admin": True,
    }
    table = router.Router(found.routes, found.owners)
    checked = table.match(b"any.host", b"/admin/users", b"GET")
    assert checked is not None
    assert checked.checked
    public = table.match(b"any.host", b"/home", b"GET")
    assert public is not None
    assert not public.checked


def test_the_older_of_two_triggers_for_the_same_route_wins() -> None:
    older, newer = (
        http_trigger("old", "a", pathPrefix="/x"),
        http_trigger("new", "b", pathPrefix="/x"),
    )
    created = {("team", "old"): "2024-01-01T00:00:00Z", ("team", "new"): "2024-02-01T00:00:00Z"}
    found = catalog.routes([newer, older], created)
    assert [route.function.name for route in found.routes] == ["a"]
    match = router.Router(found.routes, found.owners).match(b"any.host", b"/x/y", b"GET")
    assert match is not None
    assert match.function == stats.FunctionKey("team", "a")


# --- routes belong to namespaces -----------------------------------------------------------

JAN, FEB, MAR = "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"


Request = tuple[bytes, bytes, bytes, str | None]
"""Host, path, method, and the function (``namespace/name``) that must answer, if any."""

TENANTS = [
    pytest.param(
        routes.OPEN,
        [("team-a", "web", "shop", JAN, {"host": "shop.example", "pathPrefix": "/api"}),
         ("team-b", "web", "thief", FEB, {"host": "shop.example"}),
         ("team-b", "any", "catchall", MAR, {})],
        [(b"shop.example", b"/api/cart", b"GET", "team-a/shop"),
         (b"shop.example", b"/login", b"GET", None),
         (b"other.example", b"/login", b"GET", "team-b/catchall")],
        id="a trigger on a host another namespace uses gets no traffic, nor does a catch-all",
    ),
    pytest.param(
        routes.OPEN,
        [("team-a", "old", "orders", JAN, {"pathPrefix": "/api/orders"}),
         ("team-b", "new", "thief", FEB, {"pathPrefix": "/api/orders/7"})],
        [(b"x", b"/api/orders/7", b"GET", "team-a/orders")],
        id="a trigger on a prefix another namespace claimed first gets no traffic",
    ),
    pytest.param(
        routes.OPEN,
        [("team-a", "get", "orders", JAN, {"pathPrefix": "/api/orders", "methods": ["GET"]}),
         ("team-b", "api", "api", FEB, {"pathPrefix": "/api"})],
        [(b"x", b"/api/orders/7", b"GET", "team-a/orders"),
         (b"x", b"/api/orders/7", b"POST", None),
         (b"x", b"/api/users", b"POST", "team-b/api")],
        id="a later shorter prefix never reaches below an earlier longer one whatever the method",
    ),
    pytest.param(
        routes.policy({"team-a": ["*.team-a.example"]}),
        [("team-b", "web", "thief", JAN, {"host": "www.team-a.example"}),
         ("team-b", "any", "catchall", JAN, {})],
        [(b"www.team-a.example", b"/", b"GET", None),
         (b"new.team-a.example", b"/", b"GET", None)],
        id="a host assigned elsewhere is refused even to the first trigger naming it",
    ),
    pytest.param(
        routes.policy({"team-a": ["*.team-a.example"]}),
        [("team-b", "web", "thief", JAN, {"host": "www.team-a.example"}),
         ("team-a", "web", "site", FEB, {"host": "www.team-a.example"})],
        [(b"www.team-a.example", b"/", b"GET", "team-a/site")],
        id="a host assigned to a namespace is routed to it even when it came last",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("policy", "triggers", "requests"), TENANTS)
def test_a_trigger_whose_route_is_refused_gets_no_traffic(
    policy: routes.HostPolicy,
    triggers: list[tuple[str, str, str, str, dict[str, Any]]],
    requests: list[Request],
) -> None:
    found = catalog.routes(
        [
            http_trigger(name, target, namespace, **http)
            for namespace, name, target, _, http in triggers
        ],
        {(namespace, name): created for namespace, name, _, created, _ in triggers},
        policy,
    )
    table = router.Router(found.routes, found.owners)
    for host, path, method, expected in requests:
        match = table.match(host, path, method)
        routed = None if match is None else f"{match.function.namespace}/{match.function.name}"
        assert routed == expected, (host, path, method)


# --- watching the cluster ------------------------------------------------------------------


def body(kind: str, name: str, created: str, namespace: str = "team", **spec: Any) -> kube.Object:
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
        "spec": spec,
    }


IMAGE = {"image": "registry.example/fn@sha256:" + "a" * 64}


class Pushed:
    """Stands in for the activator's two setters, keeping what each push brought."""

    def __init__(self) -> None:
        self.pushes = 0
        self.functions: dict[stats.FunctionKey, configs.FunctionLimits] = {}
        self.routes: tuple[router.Route, ...] = ()
        self.owners: router.HostOwners | None = None

    def set_functions(self, functions: dict[stats.FunctionKey, configs.FunctionLimits]) -> None:
        self.pushes += 1
        self.functions = functions

    def set_routes(self, routes: tuple[router.Route, ...], owners: router.HostOwners) -> None:
        self.pushes += 1
        self.routes = routes
        self.owners = owners

    def routed(self) -> list[stats.FunctionKey]:
        return [route.function for route in self.routes]


@pytest.mark.asyncio
async def test_the_catalog_pushes_every_change_and_is_synced_once_every_kind_was_listed() -> None:
    servers = {"Function": ApiServer(), "Trigger": ApiServer(), "FunctionVersion": ApiServer()}

    def reflect(api_version: str, kind: str, *args: Any, **kwargs: Any) -> None:
        """Each kind from a server of its own, so that each list and event goes to one."""
        servers[kind].reflect(api_version, kind, *args, **kwargs)

    activator = Pushed()
    cluster = catalog.KubeCatalog(
        activator.set_functions, activator.set_routes, queue_limit=5, reflect=reflect
    )
    running = asyncio.create_task(cluster.run())
    a, b = stats.FunctionKey("team", "a"), stats.FunctionKey("team", "b")
    invalid = body("Function", "c", "", source=IMAGE, concurrency=0)

    # Each send returns after the store's listener was scheduled on this loop, which runs
    # it before it resumes this test.
    await asyncio.to_thread(servers["Function"].send, [body("Function", "a", "", source=IMAGE)])
    await asyncio.to_thread(servers["Function"].send, ("ADDED", invalid))
    assert set(activator.functions) == {a}
    assert activator.functions[a].queue_limit == 5
    assert not cluster.synced.is_set()

    newer = body("Trigger", "new", "2024-02-01T00:00:00Z", functionRef={"name": "b"}, http={})
    older = body("Trigger", "old", "2024-01-01T00:00:00Z", functionRef={"name": "a"}, http={})
    await asyncio.to_thread(servers["Trigger"].send, [newer])
    assert not cluster.synced.is_set()  # nor before the FunctionVersions were listed
    await asyncio.to_thread(servers["FunctionVersion"].send, [])
    assert cluster.synced.is_set()
    assert activator.routed() == [b]
    # The older Trigger takes the route it asks for too; when it goes, the newer gets it back.
    await asyncio.to_thread(servers["Trigger"].send, ("ADDED", older))
    assert activator.routed() == [a]
    await asyncio.to_thread(servers["Trigger"].send, ("DELETED", older))
    assert activator.routed() == [b]

    before = activator.pushes
    await asyncio.to_thread(
        servers["Function"].send, ("MODIFIED", body("Function", "b", "", source=IMAGE))
    )
    await asyncio.to_thread(servers["Function"].send, [body("Function", "b", "", source=IMAGE)])
    assert activator.pushes == before + 2
    assert set(activator.functions) == {b}  # relisted: a was deleted meanwhile

    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    for server in servers.values():
        server.hang_up()


@pytest.mark.asyncio
async def test_the_catalog_routes_only_granted_claims_whatever_status_a_trigger_shows() -> None:
    servers = {"Function": ApiServer(), "Trigger": ApiServer(), "FunctionVersion": ApiServer()}

    def reflect(api_version: str, kind: str, *args: Any, **kwargs: Any) -> None:
        servers[kind].reflect(api_version, kind, *args, **kwargs)

    server = servers["Trigger"]
    activator = Pushed()
    policy = routes.policy({"team-a": ["*.team-a.example"]})
    cluster = catalog.KubeCatalog(
        activator.set_functions, activator.set_routes, host_policy=policy, reflect=reflect
    )
    running = asyncio.create_task(cluster.run())
    owner = body("Trigger", "api", JAN, "team-a", functionRef={"name": "api"},
                 http={"pathPrefix": "/api"})  # fmt: skip
    # The operator has not judged the newcomer yet: its status still says nothing is wrong.
    newcomer = body("Trigger", "api", FEB, "team-b", functionRef={"name": "api"},
                    http={"pathPrefix": "/api/v2"})  # fmt: skip
    newcomer["status"] = {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                                          "message": "", "lastTransitionTime": FEB}]}  # fmt: skip
    squatter = body("Trigger", "www", JAN, "team-b", functionRef={"name": "www"},
                    http={"host": "www.team-a.example"})  # fmt: skip
    await asyncio.to_thread(server.send, [newcomer, owner, squatter])
    assert activator.routed() == [stats.FunctionKey("team-a", "api")]
    assert activator.owners is not None
    assert activator.owners("www.team-a.example") == {"team-a"}

    await asyncio.to_thread(server.send, ("DELETED", owner))
    assert activator.routed() == [stats.FunctionKey("team-b", "api")]

    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    for each in servers.values():
        each.hang_up()


def test_the_activator_refuses_to_start_on_a_malformed_host_policy() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kfn.activator", "--host-policy",
         '{"hostAssignments": {"Team": ["x.example"]}}'],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(OPERATOR)},
    )  # fmt: skip
    assert result.returncode == 2
    assert "'Team' is not a namespace name" in result.stderr


# --- Function URLs -----------------------------------------------------------------------------

URLS = catalog.FunctionUrls("fn.example.com")


def url_function(name: str, namespace: str = "team", **url: Any) -> function.Function:
    return function.Function.model_validate(
        {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"source": {"image": "registry.example/fn@sha256:" + "a" * 64}, "url": url},
        }
    )


def test_a_function_url_routes_its_host_every_path_and_method_with_its_auth_and_cors() -> None:
    cors = {"allowOrigins": ["https://app.example.com"], "allowMethods": ["GET"]}
    found = catalog.routes(
        [http_trigger("hello", "other", host="api.example.com")],
        {("team", "hello"): JAN},
        functions=[
            (url_function("hello", auth="ServiceAccountToken", cors=cors), FEB),
            (url_function("open"), FEB),
        ],
        urls=URLS,
    )
    by_host = {route.host: route for route in found.routes}
    hello = by_host["hello-team.fn.example.com"]
    assert (hello.path_prefix, hello.methods, hello.checked) == ("/", frozenset(), True)
    assert hello.function == stats.FunctionKey("team", "hello")
    assert hello.cors == web.CorsPolicy(
        origins=("https://app.example.com",), methods=frozenset({"GET"})
    )
    assert not by_host["open-team.fn.example.com"].checked
    assert by_host["open-team.fn.example.com"].cors is None
    # The Trigger of the same name keeps its own route.
    assert by_host["api.example.com"].function == stats.FunctionKey("team", "other")
    table = router.Router(found.routes, found.owners)
    match = table.match(b"hello-team.fn.example.com:443", b"/any/path?q=1", b"DELETE")
    assert match is not None
    assert (match.function.name, match.checked) == ("hello", True)


def test_function_urls_are_not_routed_without_a_domain() -> None:
    found = catalog.routes([], {}, functions=[(url_function("hello"), JAN)])
    assert found.routes == ()


def test_a_trigger_of_another_namespace_on_a_function_url_host_gets_no_traffic() -> None:
    found = catalog.routes(
        [http_trigger("squat", "mine", namespace="other", host="hello-team.fn.example.com")],
        {("other", "squat"): JAN},
        functions=[(url_function("hello"), FEB)],
        urls=URLS,
    )
    assert [route.function for route in found.routes] == [stats.FunctionKey("team", "hello")]
    assert found.owners("hello-team.fn.example.com") == {"team"}


@pytest.mark.asyncio
async def test_the_catalog_routes_function_urls_anew_only_when_one_changes() -> None:
    servers = {"Function": ApiServer(), "Trigger": ApiServer(), "FunctionVersion": ApiServer()}

    def reflect(api_version: str, kind: str, *args: Any, **kwargs: Any) -> None:
        servers[kind].reflect(api_version, kind, *args, **kwargs)

    activator = Pushed()
    cluster = catalog.KubeCatalog(
        activator.set_functions, activator.set_routes, urls=URLS, reflect=reflect
    )
    running = asyncio.create_task(cluster.run())
    hello = body("Function", "hello", JAN, source=IMAGE, url={})
    await asyncio.to_thread(servers["Function"].send, [hello])
    assert activator.routes == ()  # the Triggers are not listed yet
    await asyncio.to_thread(servers["Trigger"].send, [])
    assert [route.host for route in activator.routes] == ["hello-team.fn.example.com"]

    routed = activator.routes
    hello["status"] = {"replicas": 1}
    await asyncio.to_thread(servers["Function"].send, ("MODIFIED", hello))
    assert activator.routes is routed  # a status change routes nothing anew

    hello["spec"]["url"] = {"auth": "ServiceAccountToken"}
    await asyncio.to_thread(servers["Function"].send, ("MODIFIED", hello))
    assert [route.checked for route in activator.routes] == [True]
    await asyncio.to_thread(servers["Function"].send, ("DELETED", hello))
    assert activator.routes == ()

    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    for server in servers.values():
        server.hang_up()


def test_a_triggers_payload_format_and_strip_prefix_reach_its_route() -> None:
    found = catalog.routes(
        [
            http_trigger("plain", "a", pathPrefix="/"),
            http_trigger("rest", "a", pathPrefix="/api", payloadFormat="1.0", stripPrefix=True),
            http_trigger("lb", "a", pathPrefix="/lb", payloadFormat="alb"),
        ],
        {("team", "plain"): JAN, ("team", "rest"): FEB, ("team", "lb"): FEB},
    )
    assert {r.path_prefix: (r.payload_format, r.strip_prefix) for r in found.routes} == {
        "/": ("2.0", False),
        "/api": ("1.0", True),
        "/lb": ("alb", False),
    }


def test_a_triggers_qualifier_reaches_its_route_and_the_match_for_its_requests() -> None:
    found = catalog.routes(
        [
            http_trigger("live", "a", qualifier="live", pathPrefix="/live"),
            http_trigger("pinned", "a", qualifier="3", pathPrefix="/pinned"),
            http_trigger("latest", "a", qualifier="$LATEST", pathPrefix="/latest"),
            http_trigger("plain", "a", pathPrefix="/"),
        ],
        {("team", "live"): JAN, ("team", "pinned"): FEB, ("team", "latest"): FEB},
    )
    assert {r.path_prefix: r.qualifier for r in found.routes} == {
        "/live": "live",
        "/pinned": "3",
        "/latest": "",
        "/": "",
    }
    table = router.Router(found.routes)
    asked = {
        path: table.match(b"x", path.encode(), b"GET")
        for path in ("/live/cart", "/pinned", "/latest/x", "/other")
    }
    assert {path: m.qualifier if m else None for path, m in asked.items()} == {
        "/live/cart": "live",
        "/pinned": "3",
        "/latest/x": "",
        "/other": "",
    }
    assert {m.function if m else None for m in asked.values()} == {stats.FunctionKey("team", "a")}
