"""Lambda's retry rules for asynchronous invocations, as one pure decision.

Shared by the activator's ``Event`` invocations and the trigger workers that deliver
cron ticks and bucket notifications, so every asynchronous path in kfn retries the same way:

* A function error uses one of ``retries`` further attempts, after ``retry_delays[n]``
  (Lambda: about 1 minute, then 2). Any answer marked ``Kfn-Function-Error`` is one, whatever
  its status: the function's own error, a timeout, an init error, and a function whose process
  died mid-request (the activator's 502 ``Runtime.ExitError``) — so a record that kills its
  function uses up its retries instead of being retried for ever. Any other 5xx is one too.
* Throttling and unavailability do not use the attempts: an unmarked 429 or 503 (the
  activator's capacity answers, a runtime's refusal passed on), an unmarked 502 (the activator
  could not connect to any pod: nothing was started) and a connection failure to the
  activator. They are retried with exponential backoff (``throttle_backoff``: first delay,
  cap) for as long as the event stays younger than ``max_event_age``.
* A client error (any other 4xx) is not retried: the request itself is wrong.

An event whose next attempt would come after ``max_event_age`` ends with ``EventAgeExceeded``;
one out of attempts with ``RetriesExhausted``; a refused one with ``Rejected``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from typing import Final, Literal

Kind = Literal["success", "function-error", "throttled", "rejected"]
#: Why an event was given up. ``ResourceNotFound``: its function was deleted (the activator's
#: ``Event`` path, :mod:`kfn.activator.event_record`).
Condition = Literal["RetriesExhausted", "EventAgeExceeded", "Rejected", "ResourceNotFound"]

LAMBDA_RETRY_DELAYS: Final = (60.0, 120.0)
THROTTLE_BACKOFF: Final = (1.0, 300.0)


def kind_of(status: int, function_error: bool) -> Kind:
    """How an invocation answered: ``status`` 0 stands for a connection failure.

    The function-error mark comes first: a marked 502 is a function that failed (its init
    error, an answer too large, its process gone mid-request), not a pod that was busy.
    """
    if function_error:
        return "function-error"
    if 200 <= status < 300:
        return "success"
    if status in (0, 429, 502, 503):
        return "throttled"
    if status >= 500:
        return "function-error"
    return "rejected"


def trigger_kind(kind: Kind, status: int) -> Kind:
    """How a trigger worker treats an answer: a function the activator does not know (404)
    is held like throttling, since giving the event up would lose it to a typo in
    ``functionRef`` or a Function created just after its Trigger."""
    return "throttled" if status == 404 else kind


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """How one invocation answered; ``status`` 0 is a connection failure."""

    status: int
    body: bytes = b""
    function_error: bool = False
    #: The cold start the request waited for, in milliseconds, as the activator's
    #: ``Server-Timing: cold-start;dur=`` told it (None: it found a pod ready).
    cold_start_ms: float | None = None

    @property
    def kind(self) -> Kind:
        return kind_of(self.status, self.function_error)

    def describe(self) -> str:
        """A short, user-facing account of a failed attempt (for conditions and logs)."""
        if self.status == 0:
            return f"the activator could not be reached: {self.body.decode(errors='replace')}"
        detail = self.body[:300].decode(errors="replace")
        with contextlib.suppress(ValueError):
            parsed = json.loads(self.body)
            if isinstance(parsed, dict) and "errorMessage" in parsed:
                detail = f"{parsed.get('errorType', 'Error')}: {parsed['errorMessage']}"[:300]
        return f"status {self.status}: {detail}"


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """How often and how long an asynchronous event is retried."""

    retries: int = 2
    max_event_age: float = 6 * 3600.0
    retry_delays: tuple[float, ...] = LAMBDA_RETRY_DELAYS
    throttle_backoff: tuple[float, float] = THROTTLE_BACKOFF


@dataclasses.dataclass(frozen=True, slots=True)
class Retry:
    """Try again after ``delay`` seconds."""

    delay: float


@dataclasses.dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop: the event goes to the on-failure destination with ``condition``."""

    condition: Condition


@dataclasses.dataclass(frozen=True, slots=True)
class Done:
    """The function handled the event."""


Decision = Retry | GiveUp | Done


def decide(policy: Policy, kind: Kind, *, failures: int, throttles: int, age: float) -> Decision:
    """The next step after an attempt that answered ``kind``.

    ``failures`` and ``throttles`` count the attempts of each sort so far, this one included;
    ``age`` is the event's age in seconds now.
    """
    if kind == "success":
        return Done()
    if kind == "rejected":
        return GiveUp("Rejected")
    if kind == "throttled":
        first, cap = policy.throttle_backoff
        delay = min(cap, first * 2 ** max(0, throttles - 1))
    else:
        if failures > policy.retries:
            return GiveUp("RetriesExhausted")
        delays = policy.retry_delays
        delay = delays[min(failures, len(delays)) - 1] if delays else 0.0
    if age + delay > policy.max_event_age:
        return GiveUp("EventAgeExceeded")
    return Retry(delay)
