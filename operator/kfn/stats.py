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
      "f": [                       # one entry per function (version) with activity
        {
          "ns": "default",         # function namespace
          "n": "hello",            # function name
          "v": "3",                # optional: the version ("" or absent: $LATEST)
          "c": 2.5,                # average in-flight requests over the period
          "p": 4,                  # peak in-flight requests over the period
          "q": 0,                  # requests queued in the activator now
          "r": 37,                 # requests received during the period
          "i": 35,                 # optional: invocations a pod answered in the period
          "e": 2,                  # optional: of those, failures of the function
          "d": {"130": 30, "131": 5},  # optional: handler durations, bin -> count
          "w": 1                   # optional: wakes asked for in the period
        }
      ]
    }

In-flight counts requests admitted to a pod; queued counts requests waiting in the
activator for capacity. A function is listed while it has any of them; an absent
function means zero.

``"i"``, ``"e"`` and ``"d"`` are what a progressive rollout judges a version on
(:mod:`kfn.rollout`): invocations completed (sent to a pod and answered), how many of them
failed as the function's fault (a function error, a timeout, an init error, out of memory, the
process's exit; never a throttle), and their handler durations counted in
:func:`kfn.rollout.duration_bin`'s bins (only the bins hit, each a decimal key below
:data:`DURATION_BINS`). Absent means zero; they came without a new schema version: an older
autoscaler ignores them, and an older activator's reports leave a rollout holding for want of
invocations (never rolling back).

``"w"`` counts the wakes callers asked for (``POST /_kfn/functions/{ns}/{name}/wake``): a
caller expecting requests soon. The autoscaler takes a wake as activity (the idle timeout
starts again from it) and, in a poke, scales a function at zero to its ``activationScale`` as
a queued request would. It came without a new schema version: an older autoscaler ignores it,
so upgrade the autoscaler before the activators.

Each entry is one invocation target: a function's ``$LATEST`` (no ``"v"``) or one of its
published versions (``"v"``: the number as text), which runs in a Deployment of its own
(``<function>-v<N>``, ``docs/design/versions.md``). The entry's ``"v"`` came without a new
schema version: receivers read the keys they know and ignore the others, so an older
autoscaler reads a version's entry as its function's ``$LATEST`` (it over-counts ``$LATEST``
rather than dropping the report); upgrade the autoscaler before the activators.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

SCHEMA_VERSION = 1
#: How many duration bins there are (``kfn.rollout.BINS``; a test checks they agree: this
#: leaf imports no other part of kfn).
DURATION_BINS = 416
CONTENT_TYPE = "application/json"
#: The autoscaler's path that receives messages.
STATS_PATH = "/stats"
#: The audience of the ServiceAccount token an activator sends with each message
#: (``Authorization: Bearer``): made for this endpoint alone, so a token seen here is good
#: nowhere else, neither at the API server nor at the activator's invoke door.
AUDIENCE = "kfn-stats"


class StatsError(ValueError):
    """A message that does not match the schema; the receiver drops it."""


LATEST_VERSION = ""
"""The ``version`` of a :class:`FunctionKey` for ``$LATEST``."""


class FunctionKey(NamedTuple):
    """An invocation target's identity across components: its function's namespace and name,
    and the version (``""`` for ``$LATEST``, else the version's number as text)."""

    namespace: str
    name: str
    version: str = LATEST_VERSION

    def __str__(self) -> str:
        if self.version:
            return f"{self.namespace}/{self.name}:{self.version}"
        return f"{self.namespace}/{self.name}"


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionStat:
    """How busy one function was at one activator during one period."""

    function: FunctionKey
    average_concurrency: float
    peak_concurrency: int
    queued: int
    requests: int
    invocations: int = 0
    """Invocations a pod answered in the period (``requests`` counts arrivals)."""
    errors: int = 0
    """Of ``invocations``, those that failed as the function's fault."""
    durations: Mapping[int, int] = dataclasses.field(default_factory=dict)
    """Handler durations of the period: :func:`kfn.rollout.duration_bin` bin -> count."""
    wakes: int = 0
    """Wakes asked for in the period: callers expecting requests soon."""

    def __post_init__(self) -> None:
        if not 0 <= self.errors <= self.invocations:
            raise ValueError(
                f"need 0 <= errors <= invocations, got {self.errors} of {self.invocations}"
            )


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
        "f": [_entry(stat) for stat in message.functions],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _entry(stat: FunctionStat) -> dict[str, Any]:
    entry: dict[str, Any] = {"ns": stat.function.namespace, "n": stat.function.name}
    if stat.function.version:
        entry["v"] = stat.function.version
    entry.update(
        c=round(stat.average_concurrency, 3),
        p=stat.peak_concurrency,
        q=stat.queued,
        r=stat.requests,
    )
    if stat.invocations:
        entry["i"] = stat.invocations
    if stat.errors:
        entry["e"] = stat.errors
    durations = {str(b): n for b, n in sorted(stat.durations.items()) if n}
    if durations:
        entry["d"] = durations
    if stat.wakes:
        entry["w"] = stat.wakes
    return entry


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
    invocations = _count(entry, "i") if "i" in entry else 0
    errors = _count(entry, "e") if "e" in entry else 0
    if errors > invocations:
        raise StatsError("entry 'e' counts failures among its 'i' invocations: at most 'i'")
    return FunctionStat(
        function=FunctionKey(_string(entry, "ns"), _string(entry, "n"), _version(entry)),
        average_concurrency=_number(entry, "c"),
        peak_concurrency=_count(entry, "p"),
        queued=_count(entry, "q"),
        requests=_count(entry, "r"),
        invocations=invocations,
        errors=errors,
        durations=_durations(entry),
        wakes=_count(entry, "w") if "w" in entry else 0,
    )


def _durations(entry: dict[str, Any]) -> dict[int, int]:
    value = entry.get("d", {})
    if not isinstance(value, dict):
        raise StatsError("entry 'd' must be an object of duration bins and counts")
    durations: dict[int, int] = {}
    for key, count in value.items():
        if not (key.isascii() and key.isdigit()) or (key[0] == "0" and key != "0"):
            raise StatsError("each key of entry 'd' must be a duration bin as a decimal number")
        index = int(key)
        if index >= DURATION_BINS:
            raise StatsError(f"a duration bin of entry 'd' is below {DURATION_BINS}, got {key}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise StatsError("each count of entry 'd' must be a positive integer")
        durations[index] = count
    return durations


def _version(entry: dict[str, Any]) -> str:
    value = entry.get("v", LATEST_VERSION)
    if value == LATEST_VERSION:
        return LATEST_VERSION
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()) or value[0] == "0":
        raise StatsError("entry 'v' must be a version number as text")
    return value


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
