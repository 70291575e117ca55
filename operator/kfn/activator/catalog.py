"""Functions and routes from the cluster: the activator's view of Function and Trigger objects.

Every Function is invokable through the invoke API
(``/_kfn/functions/{namespace}/{name}/invoke``) with its ``concurrency`` (per pod) and
``timeout`` as the throttler's limits. Every Trigger with ``spec.http`` becomes a
:class:`~kfn.activator.router.Route` (host, path prefix, methods → function).

When two HTTP Triggers claim the same host, path prefix and methods, the older one
(by ``creationTimestamp``, then namespace and name) keeps the route; the operator
marks the newer one ``RouteConflict``. The router keeps the first of equal routes,
so ordering the routes is all this takes.

:func:`limits` and :func:`routes` decide (pure); :class:`KubeCatalog` watches both
kinds (in threads, see :func:`kfn.kube.reflect`) and pushes the result into the
:class:`~kfn.activator.server.Activator` on its event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import pydantic

from kfn import kube, stats
from kfn.activator import config as configs
from kfn.activator import router
from kfn.api import function as function_api
from kfn.api import meta
from kfn.api import trigger as trigger_api

logger = logging.getLogger(__name__)

API_VERSION = f"{meta.GROUP}/{meta.VERSION}"

M = TypeVar("M", bound=pydantic.BaseModel)


def limits(
    functions: Iterable[function_api.Function], *, queue_limit: int
) -> dict[stats.FunctionKey, configs.FunctionLimits]:
    """The throttler limits of each Function."""
    return {
        stats.FunctionKey(fn.metadata.namespace, fn.metadata.name): configs.FunctionLimits(
            concurrency=fn.spec.concurrency,
            timeout_ms=max(1, int(meta.parse_duration(fn.spec.timeout).total_seconds() * 1000)),
            queue_limit=queue_limit,
        )
        for fn in functions
    }


def routes(
    triggers: Iterable[trigger_api.Trigger], created: Mapping[tuple[str, str], str]
) -> tuple[router.Route, ...]:
    """The HTTP routes of the Triggers that have one, oldest Trigger first.

    ``created`` maps (namespace, name) to ``creationTimestamp`` (RFC 3339 in UTC, so
    its text sorts by time).
    """
    http = [t for t in triggers if t.spec.http is not None]
    http.sort(key=lambda t: _age(t, created))
    result = []
    for t in http:
        spec = t.spec.http
        assert spec is not None
        result.append(
            router.Route(
                host=spec.host or "*",
                path_prefix=spec.path_prefix,
                methods=frozenset(spec.methods),
                function=stats.FunctionKey(t.metadata.namespace, t.spec.function_ref.name),
            )
        )
    return tuple(result)


def _age(t: trigger_api.Trigger, created: Mapping[tuple[str, str], str]) -> tuple[str, str, str]:
    namespace, name = t.metadata.namespace, t.metadata.name
    return created.get((namespace, name), ""), namespace, name


def _parse(model: type[M], body: Mapping[str, Any]) -> M | None:
    try:
        return model.model_validate(dict(body))
    except pydantic.ValidationError as exc:
        name = (body.get("metadata") or {}).get("name")
        logger.warning("ignoring %s %s: %s", model.__name__, name, exc.errors()[:1])
        return None


def _key(body: Mapping[str, Any]) -> tuple[str, str]:
    meta_ = body.get("metadata") or {}
    return str(meta_.get("namespace", "")), str(meta_.get("name", ""))


def _created(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("creationTimestamp") or "")


class _Kind(Generic[M]):
    """The parsed objects of one kind, kept current by a reflector thread."""

    def __init__(
        self,
        model: type[M],
        loop: asyncio.AbstractEventLoop,
        changed: Callable[[], None],
    ) -> None:
        self.model = model
        self.loop = loop
        self.changed = changed
        self.objects: dict[tuple[str, str], M] = {}
        self.created: dict[tuple[str, str], str] = {}
        self.synced = False

    # Called in the reflector's thread: hand over to the loop.
    def replace(self, objects: list[kube.Object]) -> None:
        self.loop.call_soon_threadsafe(self._replace, objects)

    def change(self, kind: str, obj: kube.Object) -> None:
        self.loop.call_soon_threadsafe(self._change, kind, obj)

    def _replace(self, objects: list[kube.Object]) -> None:
        parsed = {_key(o): self._parse(o) for o in objects}
        self.objects = {k: v for k, v in parsed.items() if v is not None}
        self.created = {_key(o): _created(o) for o in objects}
        self.synced = True
        self.changed()

    def _change(self, kind: str, obj: kube.Object) -> None:
        key = _key(obj)
        parsed = None if kind == "DELETED" else self._parse(obj)
        if parsed is None:
            self.objects.pop(key, None)
            self.created.pop(key, None)
        else:
            self.objects[key] = parsed
            self.created[key] = _created(obj)
        self.changed()

    def _parse(self, obj: kube.Object) -> M | None:
        return _parse(self.model, obj)


class KubeCatalog:
    """Keeps an activator's functions and routes in line with the cluster."""

    def __init__(
        self,
        set_functions: Callable[[dict[stats.FunctionKey, configs.FunctionLimits]], None],
        set_routes: Callable[[tuple[router.Route, ...]], None],
        *,
        queue_limit: int = 1000,
    ) -> None:
        self.set_functions = set_functions
        self.set_routes = set_routes
        self.queue_limit = queue_limit
        #: Set once both kinds were listed and pushed.
        self.synced = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        functions = _Kind(function_api.Function, loop, lambda: self._push_functions(functions))
        triggers = _Kind(trigger_api.Trigger, loop, lambda: self._push_routes(triggers))
        self._kinds = (functions, triggers)
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=kube.reflect,
                args=(API_VERSION, kind, into, stop),
                name=f"{kind.lower()}-watch",
                daemon=True,
            )
            for kind, into in (("Function", functions), ("Trigger", triggers))
        ]
        for thread in threads:
            thread.start()
        try:
            await asyncio.Event().wait()
        finally:
            stop.set()

    def _push_functions(self, kind: _Kind[function_api.Function]) -> None:
        self.set_functions(limits(kind.objects.values(), queue_limit=self.queue_limit))
        self._check_synced()

    def _push_routes(self, kind: _Kind[trigger_api.Trigger]) -> None:
        self.set_routes(routes(kind.objects.values(), kind.created))
        self._check_synced()

    def _check_synced(self) -> None:
        if all(kind.synced for kind in self._kinds):
            self.synced.set()
