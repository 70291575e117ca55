"""Versions and aliases as the activator sees them: qualifiers resolved, limits and pods keyed
by version, qualifiers read from the invoke API's URL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kfn import stats
from kfn.activator import catalog, discovery, qualifiers, router
from kfn.api import function, function_version
from kfn.resources import versions
from tests.unit.apiserver import ApiServer

IMAGE = "registry.example/fn@sha256:" + "a" * 64
HELLO = stats.FunctionKey("team", "hello")


def fn(status: dict[str, Any] | None = None, **spec: Any) -> function.Function:
    body: dict[str, Any] = {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "hello", "namespace": "team", "uid": "u-1"},
        "spec": {"source": {"image": IMAGE}, **spec},
    }
    if status is not None:
        body["status"] = status
    return function.Function.model_validate(body)


def version(of: function.Function, number: int, **changes: Any) -> function_version.FunctionVersion:
    """Version ``number`` of ``of`` as the operator publishes it, its template changed by
    ``changes`` (a field of the spec each)."""
    template = versions.template(of, IMAGE).model_copy(update=changes)
    publication = versions.Publication(number, template, versions.config_hash(template))
    body = versions.build_function_version(of, publication, source_hash=None)
    return function_version.FunctionVersion.model_validate(body)


WEIGHTED = fn(
    aliases=[
        {"name": "live", "version": 2, "additionalVersion": {"version": 3, "weight": 10}},
        {"name": "old", "version": 1},
    ]
)


def targets(of: function.Function, published: range) -> qualifiers.Table:
    return catalog.qualifier_table([of], [version(of, n) for n in published])


# --- resolving a qualifier ----------------------------------------------------------------------


@pytest.mark.parametrize("qualifier", ["", "$LATEST"])
def test_latest_or_no_qualifier_names_the_functions_own_target(qualifier: str) -> None:
    assert qualifiers.resolve(targets(WEIGHTED, range(1, 4)), HELLO, qualifier, 0.5) == HELLO


def test_a_routed_version_number_names_that_versions_target() -> None:
    resolved = qualifiers.resolve(targets(WEIGHTED, range(1, 4)), HELLO, "3", 0.5)
    assert resolved == stats.FunctionKey("team", "hello", "3")
    assert str(resolved) == "team/hello:3"


def test_an_alias_sends_each_request_by_its_weights_from_the_draw() -> None:
    table = targets(WEIGHTED, range(1, 4))
    # version 2 takes [0, 0.9), the additional version 3 takes [0.9, 1).
    chosen = [qualifiers.resolve(table, HELLO, "live", draw) for draw in (0.0, 0.5, 0.8999)]
    assert chosen == [HELLO._replace(version="2")] * 3
    for draw in (0.9, 0.95, 0.9999):
        assert qualifiers.resolve(table, HELLO, "live", draw) == HELLO._replace(version="3")
    assert qualifiers.resolve(table, HELLO, "old", 0.99) == HELLO._replace(version="1")


def test_an_alias_routes_as_its_status_says_once_kfn_moved_it() -> None:
    moving = fn(
        status={
            "aliases": [
                {
                    "name": "live",
                    "routes": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}],
                }
            ]
        },
        aliases=[{"name": "live", "version": 2, "rollout": {}}],
    )
    table = targets(moving, range(1, 3))
    assert qualifiers.resolve(table, HELLO, "live", 0.49) == HELLO._replace(version="1")
    assert qualifiers.resolve(table, HELLO, "live", 0.5) == HELLO._replace(version="2")


def test_an_alias_the_spec_dropped_is_gone_whatever_the_status_still_says() -> None:
    stale = fn(status={"aliases": [{"name": "live", "routes": [{"version": 1, "weight": 100}]}]})
    missing = qualifiers.resolve(targets(stale, range(1, 2)), HELLO, "live", 0.5)
    assert isinstance(missing, qualifiers.NotFound)


@pytest.mark.parametrize(
    ("qualifier", "message"),
    [
        ("7", "Function not found: team/hello:7"),
        ("beta", "Function not found: team/hello:beta (no such version or alias)"),
        (
            "4",
            "Function not found: team/hello:4 (a version runs only while an alias routes to it)",
        ),
    ],
)
def test_a_version_or_alias_that_does_not_run_is_not_found(qualifier: str, message: str) -> None:
    missing = qualifiers.resolve(targets(WEIGHTED, range(1, 5)), HELLO, qualifier, 0.5)
    assert missing == qualifiers.NotFound(HELLO, qualifier, message)


def test_an_alias_naming_a_version_not_published_is_not_found_and_says_so() -> None:
    missing = qualifiers.resolve(targets(WEIGHTED, range(1, 3)), HELLO, "live", 0.95)
    assert isinstance(missing, qualifiers.NotFound)
    assert missing.message == ("Function not found: team/hello:3 (alias live routes to version 3)")


def test_a_function_the_activator_does_not_know_is_not_found_with_any_qualifier() -> None:
    missing = qualifiers.resolve({}, HELLO, "live", 0.5)
    assert missing == qualifiers.NotFound(HELLO, "live", "Function not found: team/hello:live")


# --- limits of each routed version -------------------------------------------------------------


def test_each_routed_version_gets_limits_from_its_own_template() -> None:
    published = [
        version(WEIGHTED, 1, timeout="10s", concurrency=2),
        version(WEIGHTED, 2, timeout="20s"),
        version(WEIGHTED, 3, concurrency=3),
        version(WEIGHTED, 4, timeout="40s"),  # published, but nothing routes to it
    ]
    limits = catalog.limits([WEIGHTED], queue_limit=5, versions=published)
    assert set(limits) == {HELLO, *(HELLO._replace(version=v) for v in "123")}
    assert (
        limits[HELLO._replace(version="1")].timeout_ms,
        limits[HELLO._replace(version="1")].concurrency,
    ) == (10_000, 2)
    assert limits[HELLO._replace(version="2")].timeout_ms == 20_000
    assert limits[HELLO._replace(version="3")].concurrency == 3
    assert limits[HELLO].timeout_ms == 30_000


def test_a_version_of_a_function_the_activator_does_not_know_gets_no_limits() -> None:
    other = fn().model_copy(update={"metadata": fn().metadata.model_copy(update={"name": "x"})})
    limits = catalog.limits([other], queue_limit=5, versions=[version(WEIGHTED, 2)])
    assert set(limits) == {stats.FunctionKey("team", "x")}


# --- pods keyed by version ---------------------------------------------------------------------


def pod(component: str, **labels: str) -> dict[str, Any]:
    return {
        "metadata": {
            "uid": "p-1",
            "namespace": "team",
            "labels": {
                "kfn.dev/function": "hello",
                "app.kubernetes.io/component": component,
                **labels,
            },
        },
        "status": {"podIP": "10.0.0.7"},
    }


def test_a_versions_pods_count_for_that_versions_target_and_latests_for_latest() -> None:
    latest = discovery.view(pod("function"))
    of_three = discovery.view(pod("function-version", **{"kfn.dev/version": "3"}))
    assert latest is not None
    assert of_three is not None
    assert latest.function == HELLO
    assert of_three.function == stats.FunctionKey("team", "hello", "3")


def test_a_version_pod_without_its_number_counts_for_no_target() -> None:
    assert discovery.view(pod("function-version")) is None
    assert discovery.view(pod("function-version", **{"kfn.dev/version": "x"})) is None


def test_the_pod_watch_selects_both_components_and_pool_pods_given_to_a_function() -> None:
    assert discovery.POD_SELECTOR == (
        "kfn.dev/function,app.kubernetes.io/component in (function,function-version,function-pool)"
    )


def test_the_tracker_keeps_the_ready_pods_of_each_version_apart() -> None:
    tracker = discovery.PodTracker()
    for uid, ip, labels in (
        ("a", "10.0.0.1", {}),
        ("b", "10.0.0.2", {"kfn.dev/version": "3"}),
    ):
        body = pod("function-version" if labels else "function", **labels)
        body["metadata"]["uid"] = uid
        body["status"] = {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}
        seen = discovery.view(body)
        assert seen is not None
        tracker.observe(seen)
    assert tracker.ready(HELLO) == {"10.0.0.1:8080"}
    assert tracker.ready(HELLO._replace(version="3")) == {"10.0.0.2:8080"}


# --- the invoke API's qualifier -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "qualifier"),
    [
        (b"/_kfn/functions/team/hello/invoke", ""),
        (b"/_kfn/functions/team/hello:3/invoke", "3"),
        (b"/_kfn/functions/team/hello%3Alive/invoke", "live"),
        (b"/_kfn/functions/team/hello%3alive/invoke", "live"),
        (b"/_kfn/functions/team/hello/invoke?Qualifier=live", "live"),
        (b"/_kfn/functions/team/hello:live/invoke?Qualifier=live", "live"),
        (b"/_kfn/functions/team/hello:$LATEST/invoke", ""),
        (b"/_kfn/functions/team/hello/invoke?Qualifier=%24LATEST", ""),
        (b"/_kfn/functions/team/hello/invoke?other=1", ""),
    ],
)
def test_the_invoke_api_reads_a_qualifier_from_the_name_or_the_query(
    path: bytes, qualifier: str
) -> None:
    match = router.Router().match(b"activator", path, b"POST")
    assert match is not None
    assert (match.invoke, match.function, match.qualifier) == (True, HELLO, qualifier)


@pytest.mark.parametrize(
    "path",
    [
        b"/_kfn/functions/team/hello:/invoke",
        b"/_kfn/functions/team/:3/invoke",
        b"/_kfn/functions/team/hello%ff/invoke",
    ],
)
def test_an_invoke_url_with_a_malformed_or_contradictory_qualifier_matches_nothing(
    path: bytes,
) -> None:
    assert router.Router().match(b"activator", path, b"POST") is None


# --- the catalog watching FunctionVersions ------------------------------------------------------


class Pushed:
    """Stands in for the activator's setters, keeping the last push of each."""

    def __init__(self) -> None:
        self.functions: dict[stats.FunctionKey, object] = {}
        self.targets: qualifiers.Table = {}

    def set_functions(self, functions: dict[stats.FunctionKey, Any]) -> None:
        self.functions = functions

    def set_routes(self, routes: object, owners: object) -> None:
        del routes, owners

    def set_qualifiers(self, table: qualifiers.Table) -> None:
        self.targets = table


@pytest.mark.asyncio
async def test_the_catalog_serves_a_version_once_both_its_function_and_it_are_listed() -> None:
    servers = {"Function": ApiServer(), "Trigger": ApiServer(), "FunctionVersion": ApiServer()}

    def reflect(api_version: str, kind: str, *args: Any, **kwargs: Any) -> None:
        servers[kind].reflect(api_version, kind, *args, **kwargs)

    pushed = Pushed()
    cluster = catalog.KubeCatalog(
        pushed.set_functions,
        pushed.set_routes,
        set_qualifiers=pushed.set_qualifiers,
        reflect=reflect,
    )
    running = asyncio.create_task(cluster.run())
    live = fn(aliases=[{"name": "live", "version": 2}])
    as_body = live.model_dump(mode="json", by_alias=True, exclude_none=True)
    two = version(live, 2).model_dump(mode="json", by_alias=True, exclude_none=True)
    try:
        await asyncio.to_thread(servers["FunctionVersion"].send, [two])
        assert pushed.functions == {}  # no Function listed yet: nothing is served
        await asyncio.to_thread(servers["Function"].send, [as_body])
        assert set(pushed.functions) == {HELLO, HELLO._replace(version="2")}
        assert qualifiers.resolve(pushed.targets, HELLO, "live", 0.5) == HELLO._replace(version="2")
        # The version goes: the alias names nothing that runs, and its entry is gone.
        await asyncio.to_thread(servers["FunctionVersion"].send, ("DELETED", two))
        assert set(pushed.functions) == {HELLO}
        assert isinstance(
            qualifiers.resolve(pushed.targets, HELLO, "live", 0.5), qualifiers.NotFound
        )
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        for server in servers.values():
            server.hang_up()


def test_an_invoke_url_naming_two_different_qualifiers_is_refused_as_lambda_does() -> None:
    path = b"/_kfn/functions/team/hello:3/invoke?Qualifier=4"
    match = router.Router().match(b"activator", path, b"POST")
    assert match == router.Match(
        HELLO,
        invoke=True,
        conflict="The derived qualifier from the function name '3' does not match the "
        "specified qualifier '4'.",
    )
