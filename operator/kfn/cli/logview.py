"""How ``kubectl kfn logs`` shows a function's log lines (pure).

Each line is prefixed with its pod and, when the line carries one, the Lambda request id of
the invocation that wrote it, so the lines of one invocation can be picked out of several
pods' interleaved logs. The runtimes write the request id where Lambda does (docs/logging.md):

* Text: ``START RequestId: <id> Version: ...``, ``END RequestId: <id>``, ``REPORT RequestId:
  <id>\\t...``; printed lines ``<id>\\t<message>``; Python logging records
  ``[LEVEL]\\t<time>\\t<id>\\t<message>``; Node's console lines ``<time>\\t<id>\\t<LEVEL>\\t...``;
* JSON: the object's ``requestId``, or the platform records' ``record.requestId``.

Lines read from several pods at once are merged in time order by the timestamps the API
server adds (``timestamps=true``), which are then taken off.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

_ID: Final = r"[A-Za-z0-9._:-]{1,128}"
_UUID: Final = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_PLATFORM: Final = re.compile(rf"^(?:START|END|REPORT) RequestId: ({_ID})(?:\s|$)")
_LOGGING: Final = re.compile(rf"^\[[A-Z]+\]\t[^\t]*\t({_ID})\t")
_NODE: Final = re.compile(rf"^\d{{4}}-\d\d-\d\dT[0-9:.]+Z\t({_ID})\t")
_PRINTED: Final = re.compile(rf"^({_UUID})\t")
_DURATION_PART: Final = re.compile(r"(\d+)(h|m|s)")
_UNITS: Final = {"h": 3600, "m": 60, "s": 1}


def request_id(line: str) -> str | None:
    """The Lambda request id a function's log line carries, or None."""
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except ValueError:
            return None
        if not isinstance(record, dict):
            return None
        found = record.get("requestId")
        if found is None and isinstance(record.get("record"), dict):
            found = record["record"].get("requestId")
        return found if isinstance(found, str) and found else None
    for pattern in (_PLATFORM, _LOGGING, _NODE, _PRINTED):
        match = pattern.match(line)
        if match:
            return match.group(1)
    return None


def prefixed(pod: str, line: str) -> str:
    """``[<pod>] [<request id>] <line>``, or ``[<pod>] <line>`` for a line without one."""
    rid = request_id(line)
    return f"[{pod}] [{rid}] {line}" if rid else f"[{pod}] {line}"


def split_timestamp(line: str) -> tuple[str, str]:
    """A line the API server stamped (``<RFC 3339 time> <line>``): the time and the line."""
    stamp, sep, rest = line.partition(" ")
    if not sep or not stamp[:1].isdigit():
        return "", line
    return stamp, rest


def _sort_key(stamp: str) -> str:
    """RFC 3339 with the fraction padded to nanoseconds, so times compare as strings (the
    API server drops trailing zeros of the fraction)."""
    if not stamp:
        return ""
    body = stamp.rstrip("Z")
    whole, _, fraction = body.partition(".")
    return f"{whole}.{fraction.ljust(9, '0')}"


def merged(by_pod: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    """Lines of several pods (each stamped), in time order: (pod, line without its stamp).
    Lines of one time keep their pod's order."""
    keyed: list[tuple[str, int, str, str]] = []
    for pod, lines in by_pod.items():
        for index, raw in enumerate(lines):
            stamp, line = split_timestamp(raw)
            keyed.append((_sort_key(stamp), index, pod, line))
    keyed.sort(key=lambda item: (item[0], item[2], item[1]))
    return [(pod, line) for _, _, pod, line in keyed]


def kept_lines(
    data: Mapping[str, str],
    live: Iterable[str],
    *,
    tail: int | None = None,
    newer_than: str = "",
) -> dict[str, list[str]]:
    """The stamped lines kept of pods that went (the ``kfn-logs.<function>`` ConfigMap's data),
    less those of pods still listed (their own log is read): each pod's last ``tail`` lines,
    only those stamped after ``newer_than`` (RFC 3339) when given."""
    alive = set(live)
    cutoff = _sort_key(newer_than)
    found: dict[str, list[str]] = {}
    for pod, text in data.items():
        if pod in alive:
            continue
        lines = [line for line in text.splitlines() if line]
        if cutoff:
            lines = [line for line in lines if _sort_key(split_timestamp(line)[0]) > cutoff]
        if tail is not None:
            lines = lines[-tail:] if tail else []
        if lines:
            found[pod] = lines
    return found


def parse_duration(text: str) -> int:
    """Seconds of a duration as kubectl's ``--since`` takes it (``30s``, ``5m``, ``1h30m``);
    ValueError if it is not one."""
    if not text or _DURATION_PART.sub("", text) != "":
        raise ValueError(f'invalid duration "{text}": use a number with s, m or h, as 5m or 1h30m')
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(text))
    if seconds <= 0:
        raise ValueError(f'invalid duration "{text}": it must be longer than 0s')
    return seconds


def pod_names(pods: Iterable[Mapping[str, object]]) -> list[str]:
    """The names of the pods of a listing."""
    names = []
    for pod in pods:
        meta = pod.get("metadata")
        if isinstance(meta, dict) and meta.get("name"):
            names.append(str(meta["name"]))
    return names


def new_pods(known: Iterable[str], pods: Iterable[Mapping[str, object]]) -> list[str]:
    """The pods of a listing to start following: those not followed yet whose function
    container has started (running, or already ended: its log is still there), oldest first."""
    seen = set(known)
    found: list[tuple[str, str]] = []
    for pod in pods:
        meta = pod.get("metadata")
        status = pod.get("status")
        if not isinstance(meta, dict) or not isinstance(status, dict):
            continue
        name = str(meta.get("name", ""))
        if not name or name in seen:
            continue
        if not _started(status):
            continue
        found.append((str(meta.get("creationTimestamp", "")), name))
    return [name for _, name in sorted(found)]


def _started(status: Mapping[str, object]) -> bool:
    containers = status.get("containerStatuses")
    if not isinstance(containers, list):
        return False
    for container in containers:
        state = container.get("state") if isinstance(container, dict) else None
        if isinstance(state, dict) and ("running" in state or "terminated" in state):
            return True
    return False
