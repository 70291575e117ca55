"""How every kfn component writes its log: one line a record, as text or as JSON.

The chart's ``logging.format`` reaches each component as ``KFN_LOG_FORMAT`` and its log level
as ``KFN_LOG_LEVEL``; each ``__main__`` hands them to :func:`configure` before it logs
anything, so the operator, the activator, the autoscaler and the trigger workers write alike.

* ``text`` (the default): ``<time> <LEVEL> <logger> <message>``, as kfn always wrote, for
  people reading ``kubectl logs``.
* ``json``: one JSON object a line, for log collectors: ``time`` (RFC 3339, UTC, in
  milliseconds: ``2026-12-04T10:00:00.123Z``), ``level`` (``INFO``, ``WARNING``...),
  ``logger`` (the logger's name), ``message``, and ``exception`` (the traceback's text) when
  the record carries one. A component may name record attributes to add as further keys
  (the operator adds the object kopf logs about, as ``object``).

The root logger gets this one handler (on stderr), so the lines of every library a component
uses (kopf, aiohttp, the Kubernetes client) come out in the same format. In JSON, an exception
nothing caught (the one a component dies of, or a thread's) is logged as one record too,
rather than printed as a bare traceback a collector would split into lines. A leaf of the
standard library: no other part of kfn, no third-party package.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final, TextIO

FORMATS: Final = ("text", "json")
#: The text format kfn's components have always written.
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON: time, level, logger, message, exception, and ``fields``
    (record attribute → key) the record has and that are not None."""

    def __init__(self, fields: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self._fields = dict(fields or {})

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        doc: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exception"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        for attribute, key in self._fields.items():
            value = getattr(record, attribute, None)
            if value is not None:
                doc[key] = value
        # default=str: an argument or a field that JSON cannot hold still gets its line.
        return json.dumps(doc, default=str, ensure_ascii=False)


def formatter(log_format: str, fields: Mapping[str, str] | None = None) -> logging.Formatter:
    """The formatter of ``log_format`` (``text`` or ``json``, in any case); ValueError for
    another."""
    match log_format.strip().lower():
        case "text":
            return logging.Formatter(TEXT_FORMAT)
        case "json":
            return JsonFormatter(fields)
        case _:
            raise ValueError(
                f"unknown log format {log_format!r}: KFN_LOG_FORMAT is one of {', '.join(FORMATS)}"
            )


def configure(
    log_format: str | None = None,
    level: str | int | None = None,
    *,
    fields: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
) -> None:
    """Makes the root logger write every record in ``log_format`` (default ``text``) from
    ``level`` (a name such as ``info``, or a number; default ``INFO``) up, to ``stream``
    (stderr by default), replacing whatever handlers it had. ValueError for a format or level
    kfn does not know, before anything changed."""
    chosen = formatter(log_format or "text", fields)
    if isinstance(level, str) or level is None:
        name = (level or "INFO").strip().upper()
        number = logging.getLevelName(name)
        if not isinstance(number, int):
            raise ValueError(f"unknown log level {level!r}: KFN_LOG_LEVEL is e.g. INFO or DEBUG")
        level = number
    handler = logging.StreamHandler(stream)
    handler.setFormatter(chosen)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    json_lines = isinstance(chosen, JsonFormatter)
    sys.excepthook = _log_uncaught if json_lines else sys.__excepthook__
    threading.excepthook = _log_uncaught_in_thread if json_lines else threading.__excepthook__


def _log_uncaught(
    kind: type[BaseException], value: BaseException, traceback: TracebackType | None
) -> None:
    """An exception nothing caught, as one record (the process exits after it)."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, traceback)
        return
    logging.getLogger("kfn").critical("uncaught exception", exc_info=(kind, value, traceback))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    """An exception that ended a thread, as one record (the process goes on)."""
    if args.exc_value is None or issubclass(args.exc_type, SystemExit):
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("kfn").error(
        "uncaught exception in thread %s",
        name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
