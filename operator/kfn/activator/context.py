"""What every client connection of one activator shares.

The routes, each function's entry (limits, throttler, metrics), the submitter of
``Event`` invocations, the writes waiting for the end of the loop's round and the drain
flag. :mod:`~kfn.activator.server` builds and
updates it; :mod:`~kfn.activator.proxy`'s connections and the exchanges they run
read it.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import typing

from kfn import stats
from kfn.activator import (
    access,
    answers,
    budget,
    events,
    exits,
    forwarding,
    lambda_api,
    metrics,
    outbox,
    qualifiers,
    router,
    throttler,
    waiting,
    watchdog,
)
from kfn.activator import bounds as limits
from kfn.activator import config as configs


@dataclasses.dataclass(frozen=True, slots=True)
class Door:
    """What one listener of the activator serves, and how it checks bearer tokens.

    The cluster's activator has two: the public door serves HTTP Trigger routes, the invoke
    door the invoke API. Neither serves the other's requests. ``access`` checks a bearer
    token by RBAC: on the invoke door every request's, on the public door the requests of
    routes whose Trigger asks for ``auth: ServiceAccountToken`` (the others are public by
    design, like a Function URL without auth, and their ``Authorization`` header is the
    application's own: it reaches the pod). A door without ``access`` serves checked routes
    to nobody. One door serving both, without auth, is for an activator run alone (tests,
    benchmarks, development).
    """

    routes: bool
    invoke: bool
    access: access.Access | None = None
    #: Whether every caller's ``Authorization`` is kfn's to read, never passed on (a
    #: checked route's is too, :attr:`router.Route.checked`): on a door without routes.
    private: bool = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        # A field, not a property: every request reads it.
        object.__setattr__(self, "private", not self.routes)


PUBLIC = Door(routes=True, invoke=False)
#: One door serving routes and the invoke API without auth (see :class:`Door`).
SINGLE = Door(routes=True, invoke=True)


def public_door(checks: access.Access | None) -> Door:
    return Door(routes=True, invoke=False, access=checks)


def invoke_door(checks: access.Access | None) -> Door:
    return Door(routes=False, invoke=True, access=checks)


class LambdaService(typing.Protocol):
    """Serves AWS Lambda's API on the invoke door (:class:`kfn.activator.lambda_door.LambdaApi`)."""

    async def serve(
        self, ctx: Context, checks: access.Access | None, request: lambda_api.Request
    ) -> answers.Answer: ...


class Connection(watchdog.Watched, typing.Protocol):
    """What shutting down and the watchdog need of a client connection (a
    ``proxy.ClientProtocol``)."""

    def drain(self) -> None: ...
    def abort(self) -> None: ...
    def write_backlog(self) -> int: ...


class FunctionEntry:
    """What the proxy needs of one function, gathered in one object."""

    __slots__ = (
        "executed_version",
        "key",
        "limits",
        "metrics",
        "name_bytes",
        "queue_timeout",
        "served_bound",
        "throttler",
        "timeout",
    )

    def __init__(
        self,
        key: stats.FunctionKey,
        limits: configs.FunctionLimits,
        throttler: throttler.Throttler,
        metrics: metrics.FunctionMetrics,
    ) -> None:
        self.key = key
        self.limits = limits
        self.throttler = throttler
        self.metrics = metrics
        self.name_bytes = key.name.encode()
        #: The header line naming the version that ran, on every answer of an invocation.
        self.executed_version = executed_version_header(key)
        self.timeout = limits.timeout_ms / 1000
        self.queue_timeout = limits.queue_timeout_ms / 1000
        #: How long a request sent to a pod may take (:func:`waiting.served_bound`).
        self.served_bound = waiting.served_bound(self.timeout)


def executed_version_header(key: stats.FunctionKey) -> bytes:
    """``X-Amz-Executed-Version: N`` (or ``$LATEST``) with its CRLF."""
    return b"X-Amz-Executed-Version: %s\r\n" % (key.version or lambda_api.LATEST).encode()


class Context:
    """State shared by all client connections of one activator."""

    def __init__(
        self,
        routes: router.Router,
        invoker: events.Submitter | None = None,
        bounds: limits.Bounds | None = None,
    ) -> None:
        self.router = routes
        self.functions: dict[stats.FunctionKey, FunctionEntry] = {}
        #: What each function's qualifiers name (versions, aliases); replaced whole.
        self.qualifiers: qualifiers.Table = {}
        self.invoker = invoker
        self.bounds = bounds or limits.Bounds()
        #: Request bytes held by waiting requests, across all functions.
        self.budget = budget.ByteBudget(self.bounds.max_buffered_bytes)
        self.draining = False
        #: When the drain of a stopping activator ends (the loop's clock); ``None`` before.
        self.stops: float | None = None
        self.connections: set[Connection] = set()
        #: Set while no client connection is open (graceful shutdown waits on it).
        self.all_closed = asyncio.Event()
        self.all_closed.set()
        self.tasks: set[asyncio.Task[None]] = set()
        #: Function pods' container exits, when pods are watched: why a process died.
        self.exits: exits.Exits | None = None
        #: Writes held until the end of the loop's current round (both sides' sockets).
        self.outbox = outbox.Outbox()
        #: The proxies whose forwarding headers are believed; replaced whole when it changes.
        self.trusted: forwarding.Trusted = forwarding.NOBODY
        #: AWS Lambda's API (``/2015-03-31/...``) on the invoke door, when served.
        self.lambda_service: LambdaService | None = None

    def spawn(
        self, coroutine: collections.abc.Coroutine[object, object, None]
    ) -> asyncio.Task[None]:
        """Run a coroutine as a task kept until it ends."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task
