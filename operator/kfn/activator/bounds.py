"""How much any client may make the activator hold: the limits, in one place.

Every limit here bounds memory or a connection's life whatever clients send, so that
the activator's footprint has a ceiling below its container's memory limit (256 MiB
in the chart)::

    connections x head      2,048 x 32 KiB   =  64 MiB  request heads being read
    buffered request bodies                   =  64 MiB  across all functions
    process, pools, tables                    ~  55 MiB  (measured at rest)

The defaults follow what mature proxies chose, adjusted for a proxy in front of
Lambda-style functions:

* ``max_url_bytes`` 8 KiB (414): nginx's ``large_client_header_buffers 4 8k`` caps a
  request line at 8 KiB; AWS's load balancers allow 16 KiB. No function URL needs
  more, and anything longer belongs in a body.
* ``max_head_bytes`` 32 KiB (431), request line and headers together: nginx's 4 x
  8 KiB; Envoy allows 60 KiB, Node.js 16 KiB. The runtimes accept 64 KiB, which
  leaves room for the ``X-Forwarded-*`` and ``Kfn-*`` headers the activator adds.
* ``head_timeout`` 10 s (408): the time to send a whole request head, counted from
  its first byte (from the connection's start for its first request). nginx's
  ``client_header_timeout`` and Node's ``headersTimeout`` are 60 s and Apache's
  ``mod_reqtimeout`` 20 s; a head of 32 KiB takes milliseconds on any real link, so
  10 s only ever ends slow-loris clients, sooner.
* ``idle_timeout`` 75 s: a keep-alive connection with no request in progress is
  closed, as nginx's ``keepalive_timeout`` (75 s; Envoy: 1 h, Node: 5 s). It is
  longer than the 60 s idle timeout of common load balancers in front, so they close
  first and never send on a connection the activator is closing.
* ``max_connections`` 2,048 (503): client connections open at once; nginx's default
  1,024 per worker (two workers on two cores); Envoy sets no default and asks for an
  overload manager. A connection past it is answered 503 and closed.
* ``max_buffered_bytes`` 64 MiB (503): request bytes held in memory while their
  requests wait for a pod, across all functions (the function's own queue bounds
  their number; this bounds their bytes). Past it the request is answered 503.
"""

from __future__ import annotations

import dataclasses

KIB = 1024
MIB = 1024 * KIB


@dataclasses.dataclass(frozen=True, slots=True)
class Bounds:
    """The limits one activator enforces on its clients."""

    max_url_bytes: int = 8 * KIB
    max_head_bytes: int = 32 * KIB
    head_timeout: float = 10.0
    idle_timeout: float = 75.0
    max_connections: int = 2048
    max_buffered_bytes: int = 64 * MIB

    def __post_init__(self) -> None:
        if min(self.max_url_bytes, self.max_head_bytes, self.max_connections) < 1:
            raise ValueError("byte and connection limits must be positive")
        if self.max_url_bytes > self.max_head_bytes:
            raise ValueError("the URL limit cannot exceed the head limit that includes it")
        if self.head_timeout <= 0 or self.idle_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if self.max_buffered_bytes < 0:
            raise ValueError("max_buffered_bytes must be >= 0")
