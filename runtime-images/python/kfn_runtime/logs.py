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
"""

from __future__ import annotations

import base64
import contextvars
import io
import logging
import math
import resource
import sys
import threading
import time
from typing import TextIO

#: The request id of the invocation the current task or thread works for.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "kfn_request_id", default=None
)


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


def start_line(rid: str, version: str) -> str:
    return f"START RequestId: {rid} Version: {version}\n"


def end_line(rid: str) -> str:
    return f"END RequestId: {rid}\n"


def report_line(
    rid: str,
    *,
    duration_ms: float,
    memory_mb: int,
    max_memory_used_mb: int,
    init_duration_ms: float | None = None,
    status: str | None = None,
) -> str:
    """Lambda's REPORT line: tab-separated fields, billed time rounded up to the millisecond."""
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


def init_report_line(duration_ms: float, status: str) -> str:
    """Lambda's INIT_REPORT line, written when the init phase ended other than by loading."""
    return f"INIT_REPORT Init Duration: {duration_ms:.2f} ms\tPhase: init\tStatus: {status}\n"


def error_record(
    rid: str | None, epoch: float, error_type: str, message: str, stack: list[str]
) -> str:
    """An ``[ERROR]`` record kept on one line (newlines become ``\\r``), as Lambda prints it."""
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
                prefix = f"{rid}\t" if rid else ""
                text = "".join(f"{prefix}{line}\n" for line in lines)
                self._target.write(text)
                self._target.flush()
                _keep(rid, text)
        return len(s)

    def raw_write(self, s: str, rid: str | None = None) -> None:
        """Writes runtime lines as they are, between handler lines; ``rid``: the invocation
        they belong to (kept for its log tail when asked)."""
        with self._lock:
            self._target.write(s)
            self._target.flush()
        _keep(rid, s)

    def end_request(self, rid: str) -> None:
        """Emits what is left of the request's last line, if it had no newline."""
        with self._lock:
            rest = self._partial.pop(rid, "")
            if rest:
                self._target.write(f"{rid}\t{rest}\n")
                self._target.flush()
                _keep(rid, f"{rid}\t{rest}\n")

    def flush(self) -> None:
        with self._lock:
            self._target.flush()


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


def install() -> TaggingStream:
    """Routes ``sys.stdout``/``sys.stderr`` through tagging streams and sets up ``logging``.

    Returns the stdout stream; the runtime writes its own lines through it.
    """
    out = TaggingStream(sys.__stdout__ or sys.stdout)
    err = TaggingStream(sys.__stderr__ or sys.stderr)
    setattr(sys, "stdout", out)  # noqa: B010 - assignment to sys.stdout defeats the type checker
    setattr(sys, "stderr", err)  # noqa: B010
    handler = _LineHandler(out)
    handler.setFormatter(LambdaFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
    return out
