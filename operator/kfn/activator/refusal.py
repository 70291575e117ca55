"""Requests a runtime refused without starting them: recognised, to be sent again.

The runtime contract (sections 3 and 6): over its concurrency a runtime answers 429,
while draining 503, each with ``Retry-After`` and the header ``Kfn-Not-Started``,
without starting the handler. Only the runtime sets that header (it drops it from a
handler's own response), and the activator drops it from every response it passes
on (:mod:`~kfn.activator.upstream`), so the mark cannot be forged by a function nor
seen by a client. A function's own 429 or 503 — whatever its body says — carries no
mark and is passed on as the function's answer.

A marked refusal of a request whose bytes were kept (:mod:`~kfn.activator.request_body`)
gives its slot back and is sent again after :func:`retry_delay`; one too large to
have been kept is passed on, unmarked.
"""

from __future__ import annotations

#: The statuses of a refusal.
STATUSES = (429, 503)


def not_started(status: int, marked: bool) -> bool:
    """Whether a response is the runtime's refusal of a request it never started."""
    return marked and status in STATUSES


def retry_delay(retries: int) -> float:
    """The pause before sending again: short and growing, so two activators sharing one
    busy pod do not spin (the request's own timeout still bounds it)."""
    return min(0.002 * 2.0**retries, 0.1)
