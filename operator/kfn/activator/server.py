"""Wiring the activator: proxy, throttlers, async invoker, metrics, stats, endpoints.

:class:`Activator` owns the pieces and the lifecycle. Its inputs — routes,
per-function limits and ready endpoints — are pushed in by whoever knows them (a
static config here; a Kubernetes watcher in a cluster).

Graceful shutdown: stop accepting, tell idle keep-alive connections to close and
busy ones to close after their response (``Connection: close``), wait for
in-flight requests (queued ones included: they are served while the drain can still
serve them whole, then refused with 429, :mod:`~kfn.activator.waiting`) and accepted
events up to a drain timeout (a durable event store takes back the events not started,
for another activator), then stop. The drain timeout is sized so that it never
cuts a request sent to a pod within its function's timeout (docs/architecture.md,
"Rolling the activator"); the process stops as soon as the last connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Iterable, Mapping

from kfn import stats
from kfn.activator import (
    access,
    async_invoke,
    call,
    cold_start,
    context,
    endpoints,
    event_record,
    forwarding,
    metrics,
    pools,
    proxy,
    qualifiers,
    router,
    stats_reporter,
    throttler,
    watchdog,
)
from kfn.activator import bounds as client_bounds
from kfn.activator import config as configs
from kfn.activator import event_store as event_stores

logger = logging.getLogger(__name__)


class Activator:
    """One activator process's state and lifecycle."""

    def __init__(
        self,
        *,
        routes: Iterable[router.Route] = (),
        functions: Mapping[stats.FunctionKey, configs.FunctionLimits] | None = None,
        activator_id: str = "activator",
        stats_sink: stats_reporter.StatsSink | None = None,
        destination: async_invoke.Destination | None = None,
        event_store: event_stores.Store | None = None,
        event_capacity: int = 10_000,
        event_workers: int = 64,
        event_workers_per_function: int = 16,
        event_retry_delays: tuple[float, ...] = (60.0, 120.0),
        event_throttle_backoff: tuple[float, float] = (1.0, 300.0),
        event_missing_grace: float = event_record.MISSING_GRACE,
        bounds: client_bounds.Bounds | None = None,
        trusted_networks: Iterable[forwarding.Network] = (),
    ) -> None:
        self.metrics = metrics.Metrics(
            lambda: self.throttlers,
            self._held_bytes,
            lambda: self.specialiser.outcomes if self.specialiser is not None else {},
        )
        #: Each function pod's instants (written by discovery), for cold starts' phases.
        self.pods = cold_start.PodInstants()
        self.reporter = (
            stats_reporter.StatsReporter(
                activator_id,
                lambda: self.throttlers,
                stats_sink,
                figures_of=lambda: self.metrics.functions,
            )
            if stats_sink is not None
            else None
        )
        self.invoker = async_invoke.AsyncInvoker(
            self._deliver,
            destination or async_invoke.LoggingDestination(),
            event_store or event_stores.MemoryStore(event_capacity),
            workers=event_workers,
            per_function=event_workers_per_function,
            retry_delays=event_retry_delays,
            throttle_backoff=event_throttle_backoff,
            missing_grace=event_missing_grace,
            counters=self.metrics,
        )
        self.ctx = context.Context(router.Router(routes), self.invoker, bounds)
        #: The proxies trusted by address (``--trusted-proxy-cidrs``), beside the pods.
        self.trusted_networks = tuple(trusted_networks)
        self.set_trusted_pods(frozenset())
        #: The latest endpoints pushed for every function, known or not (yet): a function
        #: (re)added later starts from them, as sources push only changes.
        self._endpoints: dict[stats.FunctionKey, frozenset[str]] = {}
        #: Serves functions at zero from warm pools (kfn.activator.pools), when turned on.
        self.specialiser: pools.Specialiser | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.set_functions(functions or {})

    # --- inputs -------------------------------------------------------------------------

    @property
    def throttlers(self) -> dict[stats.FunctionKey, throttler.Throttler]:
        return {key: entry.throttler for key, entry in self.ctx.functions.items()}

    def set_routes(
        self, routes: Iterable[router.Route], owners: router.HostOwners | None = None
    ) -> None:
        """Route by these routes from now on; ``owners`` says which namespaces own a host."""
        self.ctx.router = router.Router(routes, owners)

    def set_qualifiers(self, table: qualifiers.Table) -> None:
        """Resolve qualifiers (versions, aliases) by this table from now on."""
        self.ctx.qualifiers = table

    def set_trusted_pods(self, addresses: frozenset[forwarding.Address]) -> None:
        """Trust these pod IPs (``--trusted-proxy-pods``) beside the trusted networks; each
        connection decides again whether its peer is a trusted proxy at its next request."""
        self.ctx.trusted = forwarding.Trusted.of(self.trusted_networks, addresses)

    def set_functions(self, functions: Mapping[stats.FunctionKey, configs.FunctionLimits]) -> None:
        """Add, update and remove functions; removed ones fail their queued requests."""
        current = self.ctx.functions
        for key in list(current):
            if key not in functions:
                current.pop(key).throttler.close()
                self.metrics.forget(key)
        for key, limits in functions.items():
            entry = current.get(key)
            if entry is None:
                throttle = throttler.Throttler(
                    key,
                    concurrency=limits.concurrency,
                    queue_limit=limits.queue_limit,
                    poke=self._poke,
                    on_wake=self._wake,
                    on_cold_start=self.metrics.cold_start,
                    pods=self.pods,
                )
                current[key] = context.FunctionEntry(key, limits, throttle, self.metrics.of(key))
                known = self._endpoints.get(key)
                if known is not None:
                    throttle.update_endpoints(known)
            elif entry.limits != limits:
                entry.throttler.concurrency = limits.concurrency
                entry.throttler.queue_limit = limits.queue_limit
                current[key] = context.FunctionEntry(key, limits, entry.throttler, entry.metrics)

    def update_endpoints(self, function: stats.FunctionKey, addresses: frozenset[str]) -> None:
        """The ready endpoints of a function changed (an ``EndpointSource`` update)."""
        if addresses:
            self._endpoints[function] = addresses
        else:
            self._endpoints.pop(function, None)
        entry = self.ctx.functions.get(function)
        if entry is not None:
            entry.throttler.update_endpoints(addresses)

    def _poke(self, function: stats.FunctionKey) -> None:
        """The function's first request queued with no pod: a warm pool's pod is specialised
        for it if one can be, and the autoscaler is told once that ended (the specialiser's
        note says why); else at once."""
        if self.specialiser is not None and self.specialiser.start(
            function, lambda: self._tell_autoscaler(function)
        ):
            return
        self._tell_autoscaler(function)

    def _tell_autoscaler(self, function: stats.FunctionKey) -> None:
        if self.reporter is not None:
            self.reporter.poke(function)

    def _wake(self, function: stats.FunctionKey) -> None:
        if self.reporter is not None:
            self.reporter.wake(function)

    async def _deliver(
        self, function: stats.FunctionKey, request_id: str, payload: bytes
    ) -> async_invoke.Outcome:
        entry = self.ctx.functions.get(function)
        if entry is None:
            raise async_invoke.FunctionMissingError(str(function))
        try:
            reply = await call.call(
                entry.throttler,
                function.name,
                request_id,
                payload,
                timeout_s=entry.timeout,
                queue_timeout_s=entry.queue_timeout,
            )
        except throttler.FunctionGoneError:
            raise async_invoke.FunctionMissingError(str(function)) from None
        reply.record(entry.metrics)
        return reply.outcome

    def _held_bytes(self) -> int:
        """Request and response bytes held now: bodies of requests waiting for a pod, and
        answers written but not yet taken by their clients' sockets."""
        ctx = self.ctx
        return ctx.budget.used + sum(c.write_backlog() for c in list(ctx.connections))

    # --- lifecycle ----------------------------------------------------------------------

    def keep(self, task: asyncio.Task[None]) -> None:
        """Own a background task (a watcher feeding the inputs): cancelled at shutdown."""
        self._tasks.append(task)

    async def start(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        invoke_port: int | None = None,
        checks: access.Access | None = None,
        metrics_port: int | None = None,
        endpoint_source: endpoints.EndpointSource | None = None,
    ) -> None:
        """Listen on ``port``: the public door (HTTP Trigger routes) with ``invoke_port``
        the invoke door (the invoke API, tokens checked by ``checks``, as they are on the
        public door for routes that ask for it); without it, one door serving both,
        unchecked (:class:`~kfn.activator.context.Door`)."""
        loop = asyncio.get_running_loop()
        ctx = self.ctx
        doors = [(port, context.SINGLE)]
        if invoke_port is not None:
            doors = [
                (port, context.public_door(checks)),
                (invoke_port, context.invoke_door(checks)),
            ]
        elif checks is not None:
            raise ValueError("checking invoke tokens needs an invoke door of its own")
        for number, door in doors:
            server = await loop.create_server(
                functools.partial(proxy.ClientProtocol, ctx, door), host, number, backlog=2048
            )
            self._servers.append(server)
        if metrics_port is not None:
            self._servers.append(await metrics.serve(self.metrics, host, metrics_port))
        self.invoker.start()
        guard = watchdog.Watchdog(lambda: ctx.connections, ctx.bounds)
        self._tasks.append(loop.create_task(guard.run()))
        if self.reporter is not None:
            self._tasks.append(loop.create_task(self.reporter.run()))
        if endpoint_source is not None:
            self._tasks.append(loop.create_task(endpoint_source.run(self.update_endpoints)))

    @property
    def ports(self) -> list[int]:
        """The bound ports: the proxy's first, then the invoke door's and the metrics port
        if any."""
        return [s.sockets[0].getsockname()[1] for s in self._servers if s.sockets]

    async def shutdown(self, drain_timeout: float = 30.0) -> None:
        """Stop accepting, let in-flight requests and accepted events finish, then stop."""
        ctx = self.ctx
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout
        ctx.draining = True
        ctx.stops = deadline
        for server in self._servers:
            server.close()
        for connection in list(ctx.connections):
            connection.drain()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_timeout):
                await ctx.all_closed.wait()
        for connection in list(ctx.connections):
            connection.abort()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                await self.invoker.drain()
        await self.invoker.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for entry in ctx.functions.values():
            entry.throttler.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
