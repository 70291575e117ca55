"""The kfn Python runtime: an HTTP server that loads a Lambda-style handler and speaks the kfn
runtime contract (``runtime-images/CONTRACT.md``).

It uses only the Python standard library so that it runs on a bare Debian ``python3`` image and
can be copied into an image as a plain directory with no install step.

Modules:

- :mod:`kfn_runtime.config` reads the container environment once, at start (a pool pod's when
  it is specialised).
- :mod:`kfn_runtime.loader` imports ``module.function`` from the task root as Lambda does.
- :mod:`kfn_runtime.context` is the ``context`` object handed to the handler.
- :mod:`kfn_runtime.events` maps raw HTTP requests to API Gateway v2 events and results back (pure).
- :mod:`kfn_runtime.errors` builds Lambda's error shape.
- :mod:`kfn_runtime.logs` tags handler output with the request id and prints START/END/REPORT.
- :mod:`kfn_runtime.http11` is a small HTTP/1.1 reader and writer on asyncio streams.
- :mod:`kfn_runtime.health` decides readiness and liveness from the runtime's state (pure).
- :mod:`kfn_runtime.timing` reads the process's start and formats ``Kfn-Init-Timing``.
- :mod:`kfn_runtime.pool` reads a pool pod's ``/_kfn/specialise`` request (``KFN_POOL=1``).
- :mod:`kfn_runtime.layers` checks and extracts the layers that request brings.
- :mod:`kfn_runtime.server` ties it together: routing, concurrency, time-outs and draining.
"""
