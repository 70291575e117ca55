"""Functions and routes from the cluster: the activator's view of Function and Trigger objects.

Every Function is invokable through the invoke API
(``/_kfn/functions/{namespace}/{name}/invoke``) with its ``concurrency`` (per pod) and
``timeout`` as the throttler's limits. Every Trigger with ``spec.http``, and every Function
with ``spec.url`` when the activator serves Function URLs (``--function-url-domain``), whose
route :func:`kfn.api.routes.decide` grants becomes a :class:`~kfn.activator.router.Route`
(host, path prefix, methods → function; a Function URL's host from the host template, ``/``
and every method; checked when it asks for ``auth: ServiceAccountToken``; with its CORS
policy), and the router learns which namespaces own each host. Routes
belong to namespaces: a Trigger refused there (another namespace's host or path prefix,
a host the cluster admin assigned elsewhere, the same route as an older Trigger) gets no
traffic, whether or not the operator has already marked it ``RouteConflict`` by the same
decision.

:func:`limits` and :func:`routes` decide (pure); :class:`KubeCatalog` watches both
kinds (a :class:`kfn.kube.cache.Store` each) and pushes the result into the
:class:`~kfn.activator.server.Activator` on its event loop after every change.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import pydantic

from kfn import kube, stats
from kfn.activator import config as configs
from kfn.activator import lambda_api, qualifiers, router
from kfn.api import function as function_api
from kfn.api import function_version, meta, web
from kfn.api import routes as routes_api
from kfn.api import trigger as trigger_api
from kfn.kube import cache
from kfn.resources import versions as version_rules

logger = logging.getLogger(__name__)

API_VERSION = f"{meta.GROUP}/{meta.VERSION}"

M = TypeVar("M", bound=pydantic.BaseModel)

#: The longest timeout a Function may have at all (its CRD's bound, Lambda's 15 minutes).
MAX_TIMEOUT_MS = 15 * 60 * 1000


#: Beyond a Function's init budget, what a default queue timeout leaves for its pod to start
#: (a pod start is 2.0 s at p99 here, docs/benchmarks.md) and the autoscaler to act.
POD_START_ALLOWANCE_MS = 5_000


def _ms(duration: str) -> int:
    return round(meta.parse_duration(duration).total_seconds() * 1000)


def _queue_timeout_ms(spec: function_api.FunctionSpec, default_ms: int) -> int:
    """How long a request may wait for a pod: the Function's ``queueTimeout``, else the
    activator's default, raised so that a pod loading for its whole ``initTimeout`` is waited
    for (its caller then gets the answer or the init error, not 429)."""
    if spec.queue_timeout is not None:
        return _ms(spec.queue_timeout)
    return max(default_ms, _ms(spec.init_timeout) + POD_START_ALLOWANCE_MS)


def limits(
    functions: Iterable[function_api.Function],
    *,
    queue_limit: int,
    queue_timeout_ms: int = configs.DEFAULT_QUEUE_TIMEOUT_MS,
    max_timeout_ms: int = MAX_TIMEOUT_MS,
    versions: Iterable[function_version.FunctionVersion] = (),
) -> dict[stats.FunctionKey, configs.FunctionLimits]:
    """The throttler limits of each Function's ``$LATEST``, and of each version something
    routes to (from its own template: a version's timeout and concurrency are its own);
    ``queue_timeout_ms`` is the activator's default.

    A timeout above ``max_timeout_ms`` (the release's longest, which the activator's drain
    is sized for) is held to it: the operator refuses to deploy such a Function, and until
    it has said so the activator must not hold a request longer than it can drain.
    """

    def of(spec: function_api.FunctionSpec) -> configs.FunctionLimits:
        return configs.FunctionLimits(
            concurrency=spec.concurrency,
            timeout_ms=min(max_timeout_ms, max(1, _ms(spec.timeout))),
            queue_limit=queue_limit,
            queue_timeout_ms=_queue_timeout_ms(spec, queue_timeout_ms),
        )

    found: dict[stats.FunctionKey, configs.FunctionLimits] = {}
    runs: dict[stats.FunctionKey, set[int]] = {}
    for fn in functions:
        key = stats.FunctionKey(fn.metadata.namespace, fn.metadata.name)
        found[key] = of(fn.spec)
        runs[key] = version_rules.routed(fn)
    for version in versions:
        key = stats.FunctionKey(version.metadata.namespace, version.spec.function)
        if version.spec.version in runs.get(key, ()):
            found[key._replace(version=str(version.spec.version))] = of(version.spec.template)
    return found


def qualifier_table(
    functions: Iterable[function_api.Function],
    versions: Iterable[function_version.FunctionVersion],
) -> dict[stats.FunctionKey, qualifiers.Targets]:
    """What each Function's qualifiers may name (:mod:`~kfn.activator.qualifiers`)."""
    kept = list(functions)
    published: dict[stats.FunctionKey, list[int]] = {}
    for version in versions:
        key = stats.FunctionKey(version.metadata.namespace, version.spec.function)
        published.setdefault(key, []).append(version.spec.version)
    routed = {
        stats.FunctionKey(fn.metadata.namespace, fn.metadata.name): version_rules.routed(fn)
        for fn in kept
    }
    return qualifiers.table(kept, published, routed)


@dataclasses.dataclass(frozen=True)
class FunctionUrls:
    """Where this activator serves Function URLs: hosts from ``template`` under ``domain``;
    an empty domain serves none (:data:`NOT_SERVED`)."""

    domain: str = ""
    template: str = web.DEFAULT_HOST_TEMPLATE


NOT_SERVED = FunctionUrls()


@dataclasses.dataclass(frozen=True)
class Routes:
    """What the router needs: the granted routes, and who owns each host."""

    routes: tuple[router.Route, ...]
    owners: router.HostOwners


def routes(
    triggers: Iterable[trigger_api.Trigger],
    created: Mapping[routes_api.Key, str],
    host_policy: routes_api.HostPolicy = routes_api.OPEN,
    *,
    functions: Iterable[tuple[function_api.Function, str]] = (),
    urls: FunctionUrls = NOT_SERVED,
) -> Routes:
    """The HTTP routes of the Triggers and Function URLs whose claim is granted, Function URLs
    first, then the oldest Trigger first.

    ``created`` maps a Trigger's (namespace, name) to its ``creationTimestamp`` (RFC 3339 in
    UTC, so its text sorts by time); ``functions`` are Functions with theirs.
    """
    targets: dict[routes_api.Key, str] = {}
    #: The version or alias each Trigger's functionRef names ("" for $LATEST).
    qualified: dict[routes_api.Key, str] = {}
    checked: set[routes_api.Key] = set()
    policies: dict[routes_api.Key, web.CorsPolicy] = {}
    #: Each Trigger's payload format and whether it strips its prefix (a Function URL's are
    #: 2.0 and the full path).
    mapping: dict[routes_api.Key, tuple[str, bool]] = {}
    claims = []
    for t in triggers:
        key = (t.metadata.namespace, t.metadata.name)
        claimed = routes_api.claim(t, created.get(key, ""))
        http = t.spec.http
        if claimed is not None and http is not None:
            claims.append(claimed)
            targets[key] = t.spec.function_ref.name
            qualified[key] = t.spec.function_ref.target_qualifier
            if http.auth == web.SERVICE_ACCOUNT_TOKEN:
                checked.add(key)
            if http.cors is not None:
                policies[key] = web.CorsPolicy.of(http.cors)
            mapping[key] = (http.payload_format, http.strip_prefix)
    for fn, fn_created in functions:
        url = fn.spec.url
        claimed = routes_api.url_claim(fn, fn_created, urls.template, urls.domain)
        if claimed is None or url is None:
            continue
        claims.append(claimed)
        targets[claimed.key] = fn.metadata.name
        if url.auth == web.SERVICE_ACCOUNT_TOKEN:
            checked.add(claimed.key)
        if url.cors is not None:
            policies[claimed.key] = web.CorsPolicy.of(url.cors)
    decided = routes_api.decide(claims, host_policy)
    granted = tuple(
        router.Route(
            host=c.host or "*",
            path_prefix=c.path_prefix,
            methods=c.methods,
            function=stats.FunctionKey(c.namespace, targets[c.key]),
            checked=c.key in checked,
            cors=policies.get(c.key),
            payload_format=mapping.get(c.key, _FULL_V2)[0],
            strip_prefix=mapping.get(c.key, _FULL_V2)[1],
            qualifier=qualified.get(c.key, ""),
        )
        for c in decided.granted
    )
    return Routes(granted, decided.answering)


_FULL_V2 = ("2.0", False)


def _parse(model: type[M], body: Mapping[str, Any]) -> M | None:
    try:
        return model.model_validate(dict(body))
    except pydantic.ValidationError as exc:
        name = (body.get("metadata") or {}).get("name")
        logger.warning("ignoring %s %s: %s", model.__name__, name, exc.errors()[:1])
        return None


def _created(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("creationTimestamp") or "")


@dataclasses.dataclass(frozen=True)
class _Trigger:
    """A Trigger as the catalog keeps it: with its ``creationTimestamp``, which orders routes."""

    trigger: trigger_api.Trigger
    created: str


def _trigger(body: kube.Object, previous: _Trigger | None) -> _Trigger | None:
    del previous
    parsed = _parse(trigger_api.Trigger, body)
    return None if parsed is None else _Trigger(parsed, _created(body))


@dataclasses.dataclass(frozen=True)
class _Function:
    """A Function as the catalog keeps it: with its ``creationTimestamp``, which orders
    Function URLs."""

    function: function_api.Function
    created: str

    @property
    def url_facts(self) -> tuple[str, str, str, web.FunctionUrl | None]:
        """What its Function URL's route depends on: a change elsewhere (its status, its
        code) does not route anew."""
        meta = self.function.metadata
        return meta.namespace, meta.name, self.created, self.function.spec.url


def _function(body: kube.Object, previous: _Function | None) -> _Function | None:
    del previous
    parsed = _parse(function_api.Function, body)
    return None if parsed is None else _Function(parsed, _created(body))


def _version(
    body: kube.Object, previous: function_version.FunctionVersion | None
) -> function_version.FunctionVersion | None:
    del previous
    return _parse(function_version.FunctionVersion, body)


class KubeCatalog:
    """Keeps an activator's functions and routes in line with the cluster."""

    def __init__(
        self,
        set_functions: Callable[[dict[stats.FunctionKey, configs.FunctionLimits]], None],
        set_routes: Callable[[tuple[router.Route, ...], router.HostOwners], None],
        *,
        host_policy: routes_api.HostPolicy = routes_api.OPEN,
        queue_limit: int = 1000,
        queue_timeout_ms: int = configs.DEFAULT_QUEUE_TIMEOUT_MS,
        max_timeout_ms: int = MAX_TIMEOUT_MS,
        urls: FunctionUrls = NOT_SERVED,
        set_qualifiers: Callable[[qualifiers.Table], None] | None = None,
        reflect: cache.Reflect = kube.reflect,  # tests pass a fake source of events
    ) -> None:
        self.set_functions = set_functions
        self.set_qualifiers = set_qualifiers
        self.set_routes = set_routes
        self.host_policy = host_policy
        self.queue_limit = queue_limit
        self.queue_timeout_ms = queue_timeout_ms
        self.max_timeout_ms = max_timeout_ms
        self.urls = urls
        self.reflect = reflect
        #: Set once every kind was listed and pushed.
        self.synced = asyncio.Event()
        #: The kinds pushed at least once: the first push of a kind is its first list.
        self._heard: set[str] = set()
        self._functions: cache.Store[_Function] | None = None
        self._triggers: cache.Store[_Trigger] | None = None
        self._versions: cache.Store[function_version.FunctionVersion] | None = None
        #: The Function URL facts the routes were last made from (see _Function.url_facts).
        self._url_facts: list[tuple[str, str, str, web.FunctionUrl | None]] | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        functions = self._functions = cache.Store(
            API_VERSION,
            function_api.KIND,
            _function,
            listener=cache.on_loop(loop, lambda _: self._push_functions()),
            reflect=self.reflect,
        )
        triggers = self._triggers = cache.Store(
            API_VERSION,
            trigger_api.KIND,
            _trigger,
            listener=cache.on_loop(loop, lambda _: self._push_routes()),
            reflect=self.reflect,
        )
        functions.start()
        versions = self._versions = cache.Store(
            API_VERSION,
            function_version.KIND,
            _version,
            listener=cache.on_loop(loop, lambda _: self._push_versions()),
            reflect=self.reflect,
        )
        triggers.start()
        versions.start()
        try:
            await asyncio.Event().wait()
        finally:
            functions.stop()
            triggers.stop()
            versions.stop()

    def describe(self, namespace: str) -> list[lambda_api.Facts]:
        """The facts Lambda's GetFunction and ListFunctions give of a namespace's Functions."""
        if self._functions is None:
            return []
        return [
            lambda_api.facts_of(f.function, f.created)
            for f in self._functions.values()
            if f.function.metadata.namespace == namespace
        ]

    def function(self, namespace: str, name: str) -> function_api.Function | None:
        """A Function as last seen, or None."""
        if self._functions is None:
            return None
        found = self._functions.get((namespace, name))
        return None if found is None else found.function

    def _push_versions(self) -> None:
        """FunctionVersions changed: the targets and the versions' limits follow."""
        self._heard.add(function_version.KIND)
        if function_api.KIND in self._heard:
            self._push_functions()

    def _push_functions(self) -> None:
        assert self._functions is not None
        kept = self._functions.values()
        fns = [f.function for f in kept]
        versions = self._versions.values() if self._versions is not None else []
        self.set_functions(
            limits(
                fns,
                queue_limit=self.queue_limit,
                queue_timeout_ms=self.queue_timeout_ms,
                max_timeout_ms=self.max_timeout_ms,
                versions=versions,
            )
        )
        if self.set_qualifiers is not None:
            self.set_qualifiers(qualifier_table(fns, versions))
        if self.urls.domain:
            facts = sorted((f.url_facts for f in kept if f.function.spec.url), key=lambda f: f[:3])
            # Before the Triggers' first list no routes are pushed: that push takes these in.
            if facts != self._url_facts and trigger_api.KIND in self._heard:
                self._push_routes()
        self._heard_from(function_api.KIND)

    def _push_routes(self) -> None:
        assert self._triggers is not None
        assert self._functions is not None
        table = self._triggers.snapshot()
        functions: list[tuple[function_api.Function, str]] = []
        facts = None
        if self.urls.domain:
            kept = [f for f in self._functions.values() if f.function.spec.url]
            functions = [(f.function, f.created) for f in kept]
            facts = sorted((f.url_facts for f in kept), key=lambda f: f[:3])
        found = routes(
            [t.trigger for t in table.values()],
            {k: t.created for k, t in table.items()},
            self.host_policy,
            functions=functions,
            urls=self.urls,
        )
        self._url_facts = facts
        self.set_routes(found.routes, found.owners)
        self._heard_from(trigger_api.KIND)

    def _heard_from(self, kind: str) -> None:
        # Not Store.synced: its thread sets that after merely scheduling this call.
        self._heard.add(kind)
        if self._heard >= {function_api.KIND, trigger_api.KIND, function_version.KIND}:
            self.synced.set()
