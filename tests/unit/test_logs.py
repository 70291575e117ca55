"""kfn.logs: every component's log lines, as text or as one JSON object a line."""

from __future__ import annotations

import datetime
import io
import json
import logging
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator

import pytest

from kfn import logs

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def root_logger() -> Iterator[logging.Logger]:
    """The root logger (and the hooks of uncaught exceptions) as they were before the test,
    put back after it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    hooks = sys.excepthook, threading.excepthook
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.excepthook, threading.excepthook = hooks


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


# --- JSON -------------------------------------------------------------------------------------


def test_a_json_line_has_the_time_level_logger_and_message() -> None:
    out = io.StringIO()
    logs.configure("json", "info", stream=out)
    before = datetime.datetime.now(datetime.UTC)

    logging.getLogger("kfn.activator.server").info("serving %d routes on %s", 3, "port 8080")

    (line,) = _lines(out)
    doc = json.loads(line)
    assert set(doc) == {"time", "level", "logger", "message"}
    assert doc["level"] == "INFO"
    assert doc["logger"] == "kfn.activator.server"
    assert doc["message"] == "serving 3 routes on port 8080"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["time"]), doc["time"]
    logged = datetime.datetime.fromisoformat(doc["time"].replace("Z", "+00:00"))
    assert before - datetime.timedelta(milliseconds=1) <= logged
    assert logged <= datetime.datetime.now(datetime.UTC)


def test_an_exception_is_logged_as_its_traceback_text_in_the_same_line() -> None:
    out = io.StringIO()
    logs.configure("JSON", "INFO", stream=out)

    try:
        {}["missing"]
    except KeyError:
        logging.getLogger("kfn.operator").exception("reconcile failed")

    (line,) = _lines(out)
    doc = json.loads(line)
    assert doc["level"] == "ERROR"
    assert doc["message"] == "reconcile failed"
    assert doc["exception"].startswith("Traceback (most recent call last):")
    assert doc["exception"].endswith("KeyError: 'missing'")


def test_a_message_with_new_lines_and_quotes_stays_one_line() -> None:
    out = io.StringIO()
    logs.configure("json", stream=out)

    logging.getLogger("x").warning('two\nlines "quoted" — and unicode')

    (line,) = _lines(out)
    assert json.loads(line)["message"] == 'two\nlines "quoted" — and unicode'


def test_named_record_attributes_become_keys_of_the_line() -> None:
    out = io.StringIO()
    logs.configure("json", stream=out, fields={"k8s_ref": "object"})
    ref = {"kind": "Function", "namespace": "team-a", "name": "hello"}

    logging.getLogger("kopf.objects").warning("handler failed", extra={"k8s_ref": ref})
    logging.getLogger("kopf.reactor").warning("no object here")

    first, second = (json.loads(line) for line in _lines(out))
    assert first["object"] == ref
    assert "object" not in second


def test_a_value_json_cannot_hold_is_written_as_its_text() -> None:
    out = io.StringIO()
    logs.configure("json", stream=out, fields={"when": "when"})

    logging.getLogger("x").warning("tick", extra={"when": datetime.date(2026, 12, 4)})

    assert json.loads(_lines(out)[0])["when"] == "2026-12-04"


def test_an_exception_nothing_caught_is_one_json_line_too() -> None:
    out = io.StringIO()
    logs.configure("json", stream=out)

    try:
        raise RuntimeError("cannot reach the API server")
    except RuntimeError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    thread = threading.Thread(target=lambda: 1 / 0, name="watcher")
    thread.start()
    thread.join()

    died, thread_died = (json.loads(line) for line in _lines(out))
    assert (died["level"], died["message"]) == ("CRITICAL", "uncaught exception")
    assert died["exception"].endswith("RuntimeError: cannot reach the API server")
    assert (thread_died["level"], thread_died["message"]) == (
        "ERROR",
        "uncaught exception in thread watcher",
    )
    assert thread_died["exception"].endswith("ZeroDivisionError: division by zero")


def test_text_leaves_uncaught_exceptions_to_pythons_own_traceback() -> None:
    logs.configure("json", stream=io.StringIO())
    logs.configure("text", stream=io.StringIO())

    assert sys.excepthook is sys.__excepthook__
    assert threading.excepthook is threading.__excepthook__


# --- text, levels and bad settings ------------------------------------------------------------


def test_text_is_the_default_and_keeps_kfns_format() -> None:
    out = io.StringIO()
    logs.configure(stream=out)

    logging.getLogger("kfn.autoscaler").info("listening")

    (line,) = _lines(out)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO kfn.autoscaler listening", line)


def test_records_below_the_level_are_not_written() -> None:
    out = io.StringIO()
    logs.configure("json", "warning", stream=out)

    logging.getLogger("x").info("quiet")
    logging.getLogger("x").warning("loud")

    assert [json.loads(line)["message"] for line in _lines(out)] == ["loud"]


def test_configuring_again_replaces_the_handler_instead_of_doubling_lines() -> None:
    first, second = io.StringIO(), io.StringIO()
    logs.configure("text", stream=first)
    logs.configure("json", stream=second)

    logging.getLogger("x").warning("once")

    assert first.getvalue() == ""
    assert len(_lines(second)) == 1


@pytest.mark.parametrize(
    ("log_format", "level", "message"),
    [
        ("yaml", "INFO", "unknown log format 'yaml': KFN_LOG_FORMAT is one of text, json"),
        ("json", "LOUD", "unknown log level 'LOUD'"),
    ],
)
def test_an_unknown_format_or_level_is_refused_and_changes_nothing(
    log_format: str, level: str, message: str, root_logger: logging.Logger
) -> None:
    handlers = root_logger.handlers[:]

    with pytest.raises(ValueError, match=re.escape(message)):
        logs.configure(log_format, level, stream=io.StringIO())

    assert root_logger.handlers == handlers


# --- a component ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_component_run_with_the_json_format_writes_only_json_lines(
    tmp_path: pathlib.Path,
) -> None:
    config = tmp_path / "activator.json"
    config.write_text('{"functions": [], "routes": []}')
    port = _free_port()
    command = [sys.executable, "-m", "kfn.activator", "--config", str(config), "--no-uvloop",
               "--host", "127.0.0.1", "--port", str(port),
               "--metrics-port", str(_free_port())]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "operator"), "KFN_LOG_FORMAT": "json"}
    with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) as activator:
        assert activator.stderr is not None
        first = activator.stderr.readline()
        # Answered once it runs: it has taken SIGTERM into its own hands by then.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_kfn/health", timeout=10):
            pass
        activator.send_signal(signal.SIGTERM)
        _, rest = activator.communicate(timeout=30)

    lines = [first, *rest.splitlines()]
    docs = [json.loads(line) for line in lines]
    assert docs[0]["level"] == "INFO"
    assert "serving routes" in docs[0]["message"]
    assert docs[-1]["message"] == "draining"
