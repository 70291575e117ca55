"""Holding and balancing requests for one function (Knative's ``net/throttler.go``).

Each ready endpoint takes at most ``concurrency`` requests at once (the function's
per-pod concurrency, 1 for Lambda's model). A request that finds no free slot waits
in a bounded FIFO queue; past the bound it is refused (the caller answers 503 with
``Retry-After``), so a burst against a function at zero cannot exhaust memory.

The fast path (:meth:`Throttler.try_acquire`) is synchronous and allocation-free:
the least-loaded ready endpoint with a free slot. Only waiting creates a future.

When the first request queues while there is no ready endpoint at all, ``poke`` is
called at once, so the autoscaler scales from zero without waiting for its next
tick, and a :class:`~kfn.activator.cold_start.ColdStart` begins (:attr:`Throttler.cold`):
the requests that waited for it claim it once they have a pod, the first to claim it pays
for it (its answer reports the phases). When endpoints change, waiters are released
immediately; an endpoint that leaves gets no new requests but keeps its in-flight ones
until they finish.

A wake (:meth:`Throttler.wake`, the invoke API's ``/wake``: a caller expecting requests soon)
is counted for the stats period, and at zero calls ``on_wake`` at once, as the first queued
request calls ``poke``: the autoscaler scales the function before its requests arrive, and takes
the wake as activity. It queues nothing and starts no cold start: a request that still finds no
pod pays for the rest of the wait as any request at zero does.

The throttler also keeps the numbers the stats reporter needs: a time-weighted
in-flight average and peak over the reporting period, the queue length and the
requests received.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Iterable

from kfn import stats
from kfn.activator import cold_start, upstream
from kfn.clock import Seconds


class QueueFullError(Exception):
    """The function's queue is at its bound; the request is refused."""


class FunctionGoneError(Exception):
    """The function was removed while the request waited for it.

    An exception rather than a cancelled wait: a cancellation would reach the waiting
    task as its own (the activator's shared ``Event`` delivery workers among them), and a
    task cannot tell it from being stopped.
    """


class Throttler:
    """Per-function breaker: capacity per endpoint, least-loaded choice, bounded queue."""

    def __init__(
        self,
        function: stats.FunctionKey,
        *,
        concurrency: int,
        queue_limit: int = 1000,
        poke: Callable[[stats.FunctionKey], None] | None = None,
        on_cold_start: Callable[[stats.FunctionKey, cold_start.Phases | None, bool], None]
        | None = None,
        pods: cold_start.PodInstants | None = None,
        clock: Seconds = time.monotonic,
        on_wake: Callable[[stats.FunctionKey], None] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.function = function
        self.concurrency = concurrency
        self.queue_limit = queue_limit
        self.poke = poke
        self.on_wake = on_wake
        self.on_cold_start = on_cold_start
        self.clock = clock
        #: The instants of the function's pods (from discovery), for cold starts' phases.
        self.pods = pods
        self.endpoints: dict[str, upstream.Endpoint] = {}
        self._ready: list[upstream.Endpoint] = []
        self._waiters: collections.deque[asyncio.Future[upstream.Endpoint]] = collections.deque()
        self.in_flight = 0
        #: The latest cold start (its ``ready_at`` set once an endpoint became ready).
        self.cold: cold_start.ColdStart | None = None
        # Reporting period: time-weighted in-flight area, peak and request count.
        self._period_start = clock()
        self._last_change = self._period_start
        self._area = 0.0
        self._peak = 0
        self.requests = 0
        self.wakes = 0

    # --- capacity ------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @property
    def ready_endpoints(self) -> int:
        return len(self._ready)

    def try_acquire(self, exclude: Iterable[upstream.Endpoint] = ()) -> upstream.Endpoint | None:
        """A slot on the least-loaded ready endpoint, or None (then :meth:`wait`).

        Requests queued earlier go first: while anyone waits, newcomers wait too.
        """
        if self._waiters:
            return None
        endpoint = self._pick(exclude)
        if endpoint is not None:
            endpoint.in_flight += 1  # _admit, inline: every request passes here
            self._change(1)
        return endpoint

    def wait(self) -> asyncio.Future[upstream.Endpoint]:
        """Join the queue; the future resolves to an endpoint whose slot is already taken.

        Raises :class:`QueueFullError` past the bound. A caller that gives up calls
        :meth:`cancel` with the future.
        """
        if len(self._waiters) >= self.queue_limit:
            raise QueueFullError(str(self.function))
        future: asyncio.Future[upstream.Endpoint] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        if len(self._waiters) == 1 and not self._ready:
            if self.cold is None or self.cold.ready_at is not None:
                self.cold = cold_start.ColdStart(self.clock(), self.pods, self._report)
            if self.poke is not None:
                self.poke(self.function)
        self._dispatch()
        return future

    def cancel(self, future: asyncio.Future[upstream.Endpoint]) -> None:
        """Leave the queue; if the slot was already handed over, give it back.

        The future may be cancelled already (a task awaiting it was cancelled): it
        still leaves the queue, so the queue's length counts only live waiters.
        """
        if future.done() and not future.cancelled():
            if future.exception() is None:
                self.release(future.result())
            return
        future.cancel()
        with contextlib.suppress(ValueError):
            self._waiters.remove(future)

    def release(self, endpoint: upstream.Endpoint) -> None:
        """A request on ``endpoint`` finished; hand its slot to the next waiter."""
        self._change(-1)
        endpoint.in_flight -= 1
        if self._waiters:
            self._dispatch()

    def _pick(self, exclude: Iterable[upstream.Endpoint] = ()) -> upstream.Endpoint | None:
        best: upstream.Endpoint | None = None
        limit = self.concurrency
        for endpoint in self._ready:
            load = endpoint.in_flight
            if load < limit and (best is None or load < best.in_flight):
                if exclude and endpoint in exclude:
                    continue
                best = endpoint
                if load == 0:
                    break
        return best

    def _admit(self, endpoint: upstream.Endpoint) -> None:
        endpoint.in_flight += 1
        self._change(1)

    def _dispatch(self) -> None:
        waiters = self._waiters
        while waiters:
            if waiters[0].done():
                waiters.popleft()
                continue
            endpoint = self._pick()
            if endpoint is None:
                return
            self._admit(endpoint)
            waiters.popleft().set_result(endpoint)

    # --- endpoints -------------------------------------------------------------------

    def update_endpoints(self, addresses: Iterable[str]) -> None:
        """Set the ready endpoints (from discovery); releases waiters at once."""
        wanted = set(addresses)
        was_ready = bool(self._ready)
        for address, endpoint in list(self.endpoints.items()):
            if address not in wanted:
                self._retire(endpoint)
            elif endpoint.draining:
                endpoint.draining = False
        for address in wanted:
            if address not in self.endpoints:
                self.endpoints[address] = upstream.Endpoint(address)
        self._ready = [e for e in self.endpoints.values() if not e.draining]
        cold = self.cold
        if not was_ready and self._ready and cold is not None and cold.ready_at is None:
            cold.ready_at = self.clock()
        self._dispatch()

    def set_draining(self, address: str, draining: bool = True) -> None:
        """Stop (or resume) routing to one endpoint without forgetting it."""
        endpoint = self.endpoints.get(address)
        if endpoint is None:
            return
        endpoint.draining = draining
        self._ready = [e for e in self.endpoints.values() if not e.draining]
        if not draining:
            self._dispatch()

    def _retire(self, endpoint: upstream.Endpoint) -> None:
        # No new requests; idle connections close now, busy ones when their request
        # finishes (a closed endpoint takes no connection back).
        endpoint.draining = True
        endpoint.close()
        del self.endpoints[endpoint.address]

    def close(self) -> None:
        """The function is gone: fail waiters and close every endpoint's connections."""
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(FunctionGoneError(str(self.function)))
        self._waiters.clear()
        for endpoint in self.endpoints.values():
            endpoint.close()
        self.endpoints.clear()
        self._ready = []

    # --- reporting -------------------------------------------------------------------

    def _report(self, decided: cold_start.Phases | None, count: bool) -> None:
        if self.on_cold_start is not None:
            self.on_cold_start(self.function, decided, count)

    def wake(self) -> bool:
        """A caller expects requests soon: counted for the period, and at zero (no ready
        endpoint) the autoscaler is poked at once. Returns whether it was poked."""
        self.wakes += 1
        if self._ready:
            return False
        if self.on_wake is not None:
            self.on_wake(self.function)
        return True

    def take_wakes(self) -> int:
        """The wakes since the last call; resets."""
        wakes, self.wakes = self.wakes, 0
        return wakes

    def note_request(self) -> None:
        """Count a request received for this function (for the stats period)."""
        self.requests += 1

    def _change(self, delta: int) -> None:
        now = self.clock()
        self._area += self.in_flight * (now - self._last_change)
        self._last_change = now
        in_flight = self.in_flight + delta
        self.in_flight = in_flight
        if in_flight > self._peak:  # noqa: PLR1730 - max() is a call, on every request
            self._peak = in_flight

    def take_period(self) -> tuple[float, int, int, int]:
        """(average in-flight, peak in-flight, queued, requests) since the last call; resets."""
        now = self.clock()
        area = self._area + self.in_flight * (now - self._last_change)
        elapsed = now - self._period_start
        average = area / elapsed if elapsed > 0 else float(self.in_flight)
        result = (average, self._peak, self.queued, self.requests)
        self._period_start = now
        self._last_change = now
        self._area = 0.0
        self._peak = self.in_flight
        self.requests = 0
        return result
