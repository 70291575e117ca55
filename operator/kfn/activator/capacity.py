"""Capacity for one request: a slot on a pod, then a connection to it.

:func:`acquire` is the one way to take a slot from a function's
:class:`~kfn.activator.throttler.Throttler` and wait for one: at once when an
endpoint has room, else in the function's bounded queue (which pokes the autoscaler
when the function is at zero). The proxy, the activator's own ``Event`` deliveries
and the connection retry below all await it. (The proxy first calls the throttler's
synchronous ``try_acquire`` in its parser callback, so a request that finds room and
an idle connection needs no task.)

:func:`connect` opens a connection; one the pod refused (or that timed out) is
retried on another endpoint. Nothing was written yet, so the retry is safe for any
request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from kfn.activator import throttler, upstream

#: Endpoints tried before a request is answered 502.
CONNECT_ATTEMPTS = 3


class ConnectError(Exception):
    """No endpoint took a connection in :data:`CONNECT_ATTEMPTS` tries."""


async def acquire(
    throttle: throttler.Throttler, exclude: Iterable[upstream.Endpoint] = ()
) -> upstream.Endpoint:
    """A slot on the least-loaded endpoint (not one of ``exclude`` unless it must wait).

    Raises :class:`~kfn.activator.throttler.QueueFullError` past the queue's bound.
    Cancelled while queued, it leaves the queue (and gives back a slot it was just
    handed).
    """
    endpoint = throttle.try_acquire(exclude)
    if endpoint is not None:
        return endpoint
    waiter = throttle.wait()
    try:
        return await waiter
    except asyncio.CancelledError:
        throttle.cancel(waiter)
        raise


async def connect(
    throttle: throttler.Throttler, endpoint: upstream.Endpoint
) -> tuple[upstream.Endpoint, upstream.UpstreamConnection]:
    """A new connection to ``endpoint``, or to another one if it is refused.

    The caller holds a slot on ``endpoint``; the slot moves with each retry. On
    success the caller holds the slot of the endpoint returned; on any exception
    (:class:`ConnectError`, ``QueueFullError``, cancellation) it holds none.
    """
    tried: list[upstream.Endpoint] = []
    while True:
        try:
            return endpoint, await endpoint.connect()
        except (OSError, TimeoutError):
            throttle.release(endpoint)
            tried.append(endpoint)
            if len(tried) >= CONNECT_ATTEMPTS:
                raise ConnectError(endpoint.address) from None
        except asyncio.CancelledError:
            throttle.release(endpoint)
            raise
        endpoint = await acquire(throttle, exclude=tried)


async def connection(
    throttle: throttler.Throttler, endpoint: upstream.Endpoint
) -> tuple[upstream.Endpoint, upstream.UpstreamConnection]:
    """An idle pooled connection to ``endpoint``, else a new one (:func:`connect`: on
    another endpoint if the pod refuses it, the slot moving with it)."""
    conn = endpoint.take_idle()
    if conn is not None:
        return endpoint, conn
    return await connect(throttle, endpoint)
