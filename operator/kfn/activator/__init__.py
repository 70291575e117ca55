"""The activator: the HTTP entry point and invoke API in front of function pods.

It routes each request to a function, holds it while the function has no free
capacity (waking the function at zero through the autoscaler), and proxies it to
a ready pod over pooled keep-alive connections. One concern per module:

* :mod:`~kfn.activator.router` — host/path/method (or the invoke API) to a function.
* :mod:`~kfn.activator.throttler` — per-endpoint capacity, least-loaded choice,
  the bounded queue, pokes and cold-start timing.
* :mod:`~kfn.activator.upstream` — endpoints and their keep-alive connections.
* :mod:`~kfn.activator.proxy` — the HTTP/1.1 proxy itself (asyncio.Protocol +
  httptools; runs best on uvloop).
* :mod:`~kfn.activator.async_invoke` and :mod:`~kfn.activator.call` — ``Event``
  invocations with retries and an on-failure destination.
* :mod:`~kfn.activator.metrics` — Prometheus metrics on their own port.
* :mod:`~kfn.activator.stats_reporter` — :mod:`kfn.stats` messages to the autoscaler.
* :mod:`~kfn.activator.endpoints` — where ready endpoints come from.
* :mod:`~kfn.activator.discovery` — ready endpoints in a cluster: function pods,
  watched, and probed by the activator itself for fast cold starts.
* :mod:`~kfn.activator.catalog` — functions and routes from Function and Trigger objects.
* :mod:`~kfn.activator.server` — wiring and graceful shutdown.

Throughput decides the design (see ``bench/README-activator.md``): a framework
proxy reaches about a tenth of nginx on the same core, a bare protocol with
httptools, uvloop and pooled upstream connections most of it.
"""
