"""The activator: the HTTP entry point and invoke API in front of function pods.

It routes each request to a function, holds it while the function has no free
capacity (waking the function at zero through the autoscaler), and proxies it to
a ready pod over pooled keep-alive connections. One concern per module:

* :mod:`~kfn.activator.router` — host/path/method (or the invoke API) to a function.
* :mod:`~kfn.activator.throttler` — per-endpoint capacity, least-loaded choice,
  the bounded queue, pokes and cold-start timing.
* :mod:`~kfn.activator.upstream` — endpoints and their keep-alive connections.
* :mod:`~kfn.activator.capacity` — the one way to take a slot (waiting if need
  be), and connecting with a refused connection retried elsewhere.
* :mod:`~kfn.activator.proxy` — the HTTP/1.1 proxy's client connections
  (asyncio.Protocol + httptools; runs best on uvloop).
* :mod:`~kfn.activator.context` — the state all client connections share.
* :mod:`~kfn.activator.exchange` — one request's life, orchestrated; its steps:
  :mod:`~kfn.activator.request_head` (header filtering, the pod's request head),
  :mod:`~kfn.activator.invoke_api` (the invoke API's gate and request ids),
  :mod:`~kfn.activator.events` (``Event`` invocations accepted),
  :mod:`~kfn.activator.request_body` (the body held, streamed, kept to resend),
  :mod:`~kfn.activator.relay` (the response streamed back),
  :mod:`~kfn.activator.refusal` (a runtime's refusal recognised) and
  :mod:`~kfn.activator.answers` (the activator's own responses).
* :mod:`~kfn.activator.async_invoke` and :mod:`~kfn.activator.call` — ``Event``
  invocations delivered with retries and an on-failure destination, fairly between
  functions (:mod:`~kfn.activator.lanes`), from a store
  (:mod:`~kfn.activator.event_store`: memory, or NATS JetStream in
  :mod:`~kfn.activator.event_jetstream`, its stream and consumers decided in
  :mod:`~kfn.activator.event_stream`; headers and rules in
  :mod:`~kfn.activator.event_record`).
* :mod:`~kfn.activator.metrics` — Prometheus metrics on their own port, and each
  answer's error kind (:func:`~kfn.activator.metrics.classify`).
* :mod:`~kfn.activator.cold_start` — a cold start's phases from the instants its sources
  saw, and the ``Server-Timing`` of the answer that paid for it.
* :mod:`~kfn.activator.stats_reporter` — :mod:`kfn.stats` messages to the autoscaler.
* :mod:`~kfn.activator.endpoints` — where ready endpoints come from.
* :mod:`~kfn.activator.discovery` — ready endpoints in a cluster: function pods,
  watched, and probed by the activator itself for fast cold starts.
* :mod:`~kfn.activator.exits` — why a function's process died mid-request, from its pod's
  reported container exit (``Runtime.OutOfMemory``, ``Runtime.ExitError``).
* :mod:`~kfn.activator.catalog` — functions and routes from Function and Trigger objects.
* :mod:`~kfn.activator.server` — wiring and graceful shutdown.

Throughput decides the design (see ``bench/README-activator.md``): a framework
proxy reaches about a tenth of nginx on the same core, a bare protocol with
httptools, uvloop and pooled upstream connections most of it.
"""
