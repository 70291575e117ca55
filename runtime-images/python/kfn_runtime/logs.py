"""Function logs: every line a handler writes is tagged with its request id.

Several invocations may run at once (``KFN_CONCURRENCY`` > 1), so the request id travels in a
context variable that is copied into the handler's task or worker thread. ``print`` output is
prefixed with ``<request id>\\t``; the ``logging`` module gets Lambda's format
``[LEVEL]\\t<time>\\t<request id>\\t<message>`` on the root logger, as Lambda installs it.
The runtime's own START/END/REPORT lines are formatted here by pure functions.

An invocation asked for its log (``Kfn-Log-Type: Tail``, CONTRACT.md §10a) has its own lines
kept as they are written, tagged lines and the runtime's START/END/REPORT and error records,
by request id: :func:`capture` starts, :func:`release` hands back the last
:data:`TAIL_BYTES` in base64. Concurrent invocations each keep only their own.

Lambda's JSON log format (``AWS_LAMBDA_LOG_FORMAT=JSON``, CONTRACT.md §10b) turns every line
into one JSON object: records and printed lines ``{"timestamp", "level", "message", "logger",
"requestId", ...}``, filtered by ``AWS_LAMBDA_LOG_LEVEL``; the runtime's START/END/REPORT
become ``platform.*`` records, filtered by ``KFN_SYSTEM_LOG_LEVEL``. :class:`Settings` holds
the choice, read once at start (:func:`settings_from`) and made the one in force by
:func:`install`; Text is the default, unchanged.
"""

from __future__ import annotations

import base64
import contextvars
import dataclasses
import io
import json
import logging
import math
import resource
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from typing import Any, TextIO

#: The request id of the invocation the current task or thread works for.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "kfn_request_id", default=None
)


#: Lambda's log levels, least severe first.
LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
#: The ``logging`` level each stands for (TRACE is below DEBUG, FATAL is CRITICAL).
_PYTHON_LEVELS = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "WARN": 30, "ERROR": 40, "FATAL": 50}


@dataclasses.dataclass(frozen=True)
class Settings:
    """The log format and, for JSON, the least severe levels written."""

    json: bool = False
    application_level: str = "INFO"
    system_level: str = "INFO"

    def writes(self, level: str, *, system: bool = False) -> bool:
        """Whether a record of ``level`` is written: always in Text (as Lambda, which
        filters only JSON logs), else when at least the application's or system's level."""
        if not self.json:
            return True
        least = self.system_level if system else self.application_level
        return LEVELS.index(level) >= LEVELS.index(least)


TEXT = Settings()


def settings_from(environ: Mapping[str, str]) -> Settings:
    """``AWS_LAMBDA_LOG_FORMAT`` (``JSON``, else Text), ``AWS_LAMBDA_LOG_LEVEL`` and
    ``KFN_SYSTEM_LOG_LEVEL`` (default INFO; an unknown name counts as INFO)."""
    if environ.get("AWS_LAMBDA_LOG_FORMAT", "").strip().upper() != "JSON":
        return TEXT

    def level(name: str) -> str:
        value = environ.get(name, "").strip().upper()
        value = {"WARNING": "WARN", "CRITICAL": "FATAL"}.get(value, value)
        return value if value in LEVELS else "INFO"

    return Settings(True, level("AWS_LAMBDA_LOG_LEVEL"), level("KFN_SYSTEM_LOG_LEVEL"))


class _Active:
    """The settings :func:`install` set up; the line builders below use them by default."""

    settings = TEXT


def lambda_level(levelno: int) -> str:
    """The Lambda level of a ``logging`` level number (WARNING is WARN, CRITICAL FATAL)."""
    for name in reversed(LEVELS):
        if levelno >= _PYTHON_LEVELS[name]:
            return name
    return "TRACE"


def json_line(record: Mapping[str, Any]) -> str:
    """One JSON object on one line; values JSON cannot hold are written as their ``str``."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"


def app_record(
    level: str, rid: str | None, epoch: float, message: str, **fields: Any
) -> dict[str, Any]:
    """An application log record in Lambda's JSON format (``requestId`` in an invocation)."""
    record: dict[str, Any] = {"timestamp": iso_time(epoch), "level": level, "message": message}
    record.update(fields)
    if rid:
        record["requestId"] = rid
    return record


def platform_line(kind: str, epoch: float, record: dict[str, Any]) -> str:
    """A platform record: ``{"time", "type": "platform.<kind>", "record"}``, as Lambda's."""
    return json_line({"time": iso_time(epoch), "type": f"platform.{kind}", "record": record})


#: How much of an invocation's log is handed back: Lambda's ``X-Amz-Log-Result`` holds 4 KB.
TAIL_BYTES = 4096

_captures: dict[str, list[str]] = {}
_captured_sizes: dict[str, int] = {}
_captures_lock = threading.Lock()


def capture(rid: str) -> None:
    """Keep the lines written for ``rid`` from now until :func:`release`."""
    with _captures_lock:
        _captures[rid] = []
        _captured_sizes[rid] = 0


def _keep(rid: str | None, text: str) -> None:
    if rid is None:
        return
    with _captures_lock:
        kept = _captures.get(rid)
        if kept is None:
            return
        kept.append(text)
        size = _captured_sizes[rid] + len(text)
        # Only the tail is handed back: drop whole writes from the front past twice its size
        # (characters may take up to 4 bytes, so 2 x 4096 characters always hold 4 KB).
        while size > 2 * TAIL_BYTES and len(kept) > 1:
            size -= len(kept.pop(0))
        _captured_sizes[rid] = size


def release(rid: str) -> str:
    """The last :data:`TAIL_BYTES` of what was written for ``rid``, base64; capture ends."""
    with _captures_lock:
        kept = _captures.pop(rid, [])
        _captured_sizes.pop(rid, None)
    return tail_base64("".join(kept))


def tail_base64(text: str) -> str:
    """The last :data:`TAIL_BYTES` of ``text`` as UTF-8, base64 (as Lambda cuts its tail)."""
    return base64.b64encode(text.encode("utf-8", "replace")[-TAIL_BYTES:]).decode("ascii")


def iso_time(epoch: float) -> str:
    """``2024-01-02T03:04:05.678Z``, the timestamp Lambda's log lines carry."""
    millis = int(epoch * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{millis:03d}Z"


def start_line(
    rid: str, version: str, *, epoch: float | None = None, settings: Settings | None = None
) -> str:
    """``START``, or JSON's ``platform.start`` (INFO)."""
    given = settings or _Active.settings
    if given.json:
        if not given.writes("INFO", system=True):
            return ""
        record = {"requestId": rid, "version": version}
        return platform_line("start", time.time() if epoch is None else epoch, record)
    return f"START RequestId: {rid} Version: {version}\n"


def end_line(
    rid: str,
    *,
    status: str = "success",
    epoch: float | None = None,
    settings: Settings | None = None,
) -> str:
    """``END``, or JSON's ``platform.runtimeDone`` (DEBUG, so written at the DEBUG system
    level only); ``status``: success, error or timeout."""
    given = settings or _Active.settings
    if given.json:
        if not given.writes("DEBUG", system=True):
            return ""
        record = {"requestId": rid, "status": status}
        return platform_line("runtimeDone", time.time() if epoch is None else epoch, record)
    return f"END RequestId: {rid}\n"


def report_line(
    rid: str,
    *,
    duration_ms: float,
    memory_mb: int,
    max_memory_used_mb: int,
    init_duration_ms: float | None = None,
    status: str | None = None,
    outcome: str = "success",
    epoch: float | None = None,
    settings: Settings | None = None,
) -> str:
    """Lambda's REPORT line: tab-separated fields, billed time rounded up to the millisecond.
    JSON: ``platform.report`` (INFO) with the same figures as ``metrics`` and ``status``
    (``outcome``: success, error or timeout)."""
    given = settings or _Active.settings
    if given.json:
        if not given.writes("INFO", system=True):
            return ""
        metrics: dict[str, Any] = {
            "durationMs": round(duration_ms, 2),
            "billedDurationMs": max(1, math.ceil(duration_ms)),
            "memorySizeMB": memory_mb,
            "maxMemoryUsedMB": max_memory_used_mb,
        }
        if init_duration_ms is not None:
            metrics["initDurationMs"] = round(init_duration_ms, 2)
        record = {"requestId": rid, "metrics": metrics, "status": outcome}
        return platform_line("report", time.time() if epoch is None else epoch, record)
    fields = [
        f"REPORT RequestId: {rid}",
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {max(1, math.ceil(duration_ms))} ms",
        f"Memory Size: {memory_mb} MB",
        f"Max Memory Used: {max_memory_used_mb} MB",
    ]
    if init_duration_ms is not None:
        fields.append(f"Init Duration: {init_duration_ms:.2f} ms")
    if status is not None:
        fields.append(f"Status: {status}")
    return "\t".join(fields) + "\n"


def init_report_line(duration_ms: float, status: str, *, settings: Settings | None = None) -> str:
    """Lambda's INIT_REPORT line, written when the init phase ended other than by loading;
    JSON: ``platform.initReport`` (INFO)."""
    given = settings or _Active.settings
    if given.json:
        if not given.writes("INFO", system=True):
            return ""
        record = {
            "initializationType": "on-demand",
            "phase": "init",
            "status": status,
            "metrics": {"durationMs": round(duration_ms, 2)},
        }
        return platform_line("initReport", time.time(), record)
    return f"INIT_REPORT Init Duration: {duration_ms:.2f} ms\tPhase: init\tStatus: {status}\n"


def timeout_record(
    rid: str, epoch: float, message: str, *, settings: Settings | None = None
) -> str:
    """The line saying an invocation timed out: ``<time>\\t<request id>\\t<message>``, or a
    JSON ERROR record."""
    given = settings or _Active.settings
    if given.json:
        return json_line(app_record("ERROR", rid, epoch, message)) if given.writes("ERROR") else ""
    return f"{iso_time(epoch)}\t{rid}\t{message}\n"


def error_record(
    rid: str | None,
    epoch: float,
    error_type: str,
    message: str,
    stack: list[str],
    *,
    settings: Settings | None = None,
) -> str:
    """An ``[ERROR]`` record kept on one line (newlines become ``\\r``), as Lambda prints it;
    JSON: an ERROR record with ``errorType``, ``errorMessage`` and ``stackTrace``."""
    given = settings or _Active.settings
    if given.json:
        if not given.writes("ERROR"):
            return ""
        fields = {"errorType": error_type, "errorMessage": message, "stackTrace": stack}
        return json_line(app_record("ERROR", rid, epoch, message, **fields))
    text = f"{error_type}: {message}"
    if stack:
        text += "\nTraceback (most recent call last):\n" + "".join(stack)
    return f"[ERROR]\t{iso_time(epoch)}\t{rid or ''}\t{text.rstrip()}".replace("\n", "\r") + "\n"


def max_memory_used_mb() -> int:
    """Peak resident memory of this process (Linux reports kilobytes)."""
    return math.ceil(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


class TaggingStream(io.TextIOBase):
    """A text stream that prefixes each complete line with the current request id.

    Partial lines are buffered per request until their newline arrives (or the invocation ends),
    so concurrent handlers' output does not interleave within a line. Output outside any
    invocation passes through untouched.
    """

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self._target = target
        self._lock = threading.Lock()
        self._partial: dict[str | None, str] = {}

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._target.encoding

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._target.fileno()

    def write(self, s: str) -> int:
        rid = request_id.get()
        with self._lock:
            text = self._partial.pop(rid, "") + s
            *lines, rest = text.split("\n")
            if rest:
                self._partial[rid] = rest
            if lines:
                text = "".join(_printed(rid, line) for line in lines)
                self._target.write(text)
                self._target.flush()
                _keep(rid, text)
        return len(s)

    def raw_write(self, s: str, rid: str | None = None) -> None:
        """Writes runtime lines as they are, between handler lines; ``rid``: the invocation
        they belong to (kept for its log tail when asked). Nothing for an empty string (a
        record its level filtered out)."""
        if not s:
            return
        with self._lock:
            self._target.write(s)
            self._target.flush()
        _keep(rid, s)

    def end_request(self, rid: str) -> None:
        """Emits what is left of the request's last line, if it had no newline."""
        with self._lock:
            rest = self._partial.pop(rid, "")
            if rest:
                text = _printed(rid, rest)
                self._target.write(text)
                self._target.flush()
                _keep(rid, text)

    def flush(self) -> None:
        with self._lock:
            self._target.flush()


def _printed(rid: str | None, line: str) -> str:
    """A printed line: ``<request id>\\t`` in front (outside an invocation, as it is), or an
    INFO record in JSON (nothing when INFO is filtered out)."""
    if _Active.settings.json:
        if not _Active.settings.writes("INFO"):
            return ""
        return json_line(app_record("INFO", rid, time.time(), line))
    return f"{rid}\t{line}\n" if rid else f"{line}\n"


class _RequestIdFilter(logging.Filter):
    """Gives every record ``aws_request_id`` so user formatters that name it keep working."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = request_id.get() or ""
        return True


class LambdaFormatter(logging.Formatter):
    """``[LEVEL]\\t<time>\\t<request id>\\t<message>`` on one line, as Lambda's Python runtime."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        rid = getattr(record, "aws_request_id", "")
        text = f"[{record.levelname}]\t{iso_time(record.created)}\t{rid}\t{message}"
        return text.replace("\n", "\r")


#: The attributes every LogRecord has: the others came from ``extra=`` and are written too.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "aws_request_id",
}


class JsonFormatter(logging.Formatter):
    """A record as Lambda's JSON format writes it: ``timestamp``, ``level``, ``message``,
    ``logger``, ``requestId``, the fields given with ``extra=``, and for an exception
    ``errorType``, ``errorMessage`` and ``stackTrace``."""

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "aws_request_id", "") or None
        fields: dict[str, Any] = {"logger": record.name}
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and not name.startswith("_"):
                fields[name] = value
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            fields["errorType"] = type(exc).__name__
            fields["errorMessage"] = str(exc)
            fields["stackTrace"] = traceback.format_tb(exc.__traceback__)
        level = lambda_level(record.levelno)
        record_ = app_record(level, rid, record.created, record.getMessage(), **fields)
        return json.dumps(record_, ensure_ascii=False, separators=(",", ":"), default=str)


class _LineHandler(logging.Handler):
    """Writes formatted records through the tagging stream's lock, untagged (they carry the id)."""

    def __init__(self, stream: TaggingStream) -> None:
        super().__init__()
        self._stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            rid = getattr(record, "aws_request_id", "") or None
            self._stream.raw_write(self.format(record) + "\n", rid)
        except Exception:
            self.handleError(record)


def install(chosen: Settings = TEXT) -> TaggingStream:
    """Routes ``sys.stdout``/``sys.stderr`` through tagging streams and sets up ``logging``
    in the chosen format: Lambda's Text, or JSON with the root logger at the application's
    level, and records below it dropped even if a handler lowers that level.

    Returns the stdout stream; the runtime writes its own lines through it.
    """
    _Active.settings = chosen
    out = TaggingStream(sys.__stdout__ or sys.stdout)
    err = TaggingStream(sys.__stderr__ or sys.stderr)
    setattr(sys, "stdout", out)  # noqa: B010 - assignment to sys.stdout defeats the type checker
    setattr(sys, "stderr", err)  # noqa: B010
    handler = _LineHandler(out)
    handler.setFormatter(JsonFormatter() if chosen.json else LambdaFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.handlers = [handler]
    if chosen.json:
        level = _PYTHON_LEVELS[chosen.application_level]
        handler.setLevel(level)
        root.setLevel(level)
    else:
        root.setLevel(logging.WARNING)
    return out
