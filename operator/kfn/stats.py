"""The stats message: the one thing the activator and the autoscaler share.

Every activator reports, once a second, how busy each function it fronts is. The
autoscaler sums those reports across activators and decides replicas from them.
A report is also sent at once when a request arrives for a function with no ready
endpoint (a *poke*), so that scale-from-zero does not wait for the next tick. The autoscaler
takes reports only from the activators' ServiceAccount, whose token each carries
(:data:`AUDIENCE`).

Wire format (``Content-Type: application/json``), version 1, compact keys::

    {
      "v": 1,                      # schema version; a receiver rejects others
      "a": "activator-7f9c-x2",    # the sending activator's id
      "t": 1700000000.25,          # sender's unix time (seconds, float)
      "poke": false,               # true: sent at once for a cold request
      "f": [                       # one entry per function with activity
        {
          "ns": "default",         # function namespace
          "n": "hello",            # function name
          "c": 2.5,                # average in-flight requests over the period
          "p": 4,                  # peak in-flight requests over the period
          "q": 0,                  # requests queued in the activator now
          "r": 37                  # requests received during the period
        }
      ]
    }

In-flight counts requests admitted to a pod; queued counts requests waiting in the
activator for capacity. A function is listed while it has any of them; an absent
function means zero.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, NamedTuple

SCHEMA_VERSION = 1
CONTENT_TYPE = "application/json"
#: The autoscaler's path that receives messages.
STATS_PATH = "/stats"
#: The audience of the ServiceAccount token an activator sends with each message
#: (``Authorization: Bearer``): made for this endpoint alone, so a token seen here is good
#: nowhere else, neither at the API server nor at the activator's invoke door.
AUDIENCE = "kfn-stats"


class StatsError(ValueError):
    """A message that does not match the schema; the receiver drops it."""


class FunctionKey(NamedTuple):
    """A function's identity across components: its namespace and name."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionStat:
    """How busy one function was at one activator during one period."""

    function: FunctionKey
    average_concurrency: float
    peak_concurrency: int
    queued: int
    requests: int


@dataclasses.dataclass(frozen=True, slots=True)
class StatMessage:
    """One activator's report for all the functions it saw in a period."""

    activator: str
    timestamp: float
    functions: tuple[FunctionStat, ...]
    poke: bool = False
    version: int = SCHEMA_VERSION


def encode(message: StatMessage) -> bytes:
    """Serialise a message into its compact JSON form."""
    body = {
        "v": message.version,
        "a": message.activator,
        "t": message.timestamp,
        "poke": message.poke,
        "f": [
            {
                "ns": stat.function.namespace,
                "n": stat.function.name,
                "c": round(stat.average_concurrency, 3),
                "p": stat.peak_concurrency,
                "q": stat.queued,
                "r": stat.requests,
            }
            for stat in message.functions
        ],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def decode(data: bytes) -> StatMessage:
    """Parse and validate a message; raise :class:`StatsError` on anything unexpected."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StatsError(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise StatsError("a message is a JSON object")
    version = body.get("v")
    if version != SCHEMA_VERSION:
        raise StatsError(f"unsupported schema version {version!r}")
    activator = _string(body, "a")
    timestamp = _number(body, "t")
    poke = body.get("poke", False)
    if not isinstance(poke, bool):
        raise StatsError("'poke' must be a boolean")
    entries = body.get("f")
    if not isinstance(entries, list):
        raise StatsError("'f' must be a list")
    functions = tuple(_function_stat(entry) for entry in entries)
    return StatMessage(activator=activator, timestamp=timestamp, functions=functions, poke=poke)


def _function_stat(entry: Any) -> FunctionStat:
    if not isinstance(entry, dict):
        raise StatsError("each entry of 'f' must be an object")
    return FunctionStat(
        function=FunctionKey(_string(entry, "ns"), _string(entry, "n")),
        average_concurrency=_number(entry, "c"),
        peak_concurrency=_count(entry, "p"),
        queued=_count(entry, "q"),
        requests=_count(entry, "r"),
    )


def _string(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise StatsError(f"{key!r} must be a non-empty string")
    return value


def _number(body: dict[str, Any], key: str) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StatsError(f"{key!r} must be a number")
    if not math.isfinite(value) or value < 0:
        raise StatsError(f"{key!r} must be finite and not negative")
    return float(value)


def _count(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StatsError(f"{key!r} must be a non-negative integer")
    return value
