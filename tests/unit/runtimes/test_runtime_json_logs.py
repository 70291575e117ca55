"""Lambda's JSON log format (``AWS_LAMBDA_LOG_FORMAT=JSON``, CONTRACT.md §10b): every line one
JSON object, application records filtered by ``AWS_LAMBDA_LOG_LEVEL``, the platform's by
``KFN_SYSTEM_LOG_LEVEL``. Text, the default, is covered by the other tests unchanged."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from kfn_runtime import logs

from .conftest import RunningRuntime, Starter

_ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
JSON_FORMAT = {"AWS_LAMBDA_LOG_FORMAT": "JSON"}


def records_of(runtime: RunningRuntime, rid: str) -> list[dict[str, Any]]:
    """The invocation's lines in the pod's log, each parsed (they must all be JSON)."""
    runtime.wait_for_output(f'"requestId":"{rid}","metrics"')
    found = []
    for line in runtime.lines:
        if line.startswith("kfn runtime: "):
            continue  # the runtime's own lines, which the operator reads, stay as they are
        record = json.loads(line)
        if rid in (record.get("requestId"), record.get("record", {}).get("requestId")):
            found.append(record)
    return found


def messages(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["message"]: r for r in records if "message" in r}


def platform(records: list[dict[str, Any]]) -> list[str]:
    return [r["type"] for r in records if "type" in r]


def test_every_line_is_a_json_record_with_lambdas_fields(
    start_runtime: Starter, language: str
) -> None:
    runtime = start_runtime(language, "json_logs.levels", **JSON_FORMAT)
    runtime.wait_ready()
    answer = runtime.invoke({}, {"Kfn-Log-Type": "Tail"})
    assert answer.status == 200
    rid = answer.headers["Kfn-Request-Id"]
    records = records_of(runtime, rid)
    assert platform(records) == ["platform.start", "platform.report"]
    start, report = records[0], records[-1]
    assert start["record"] == {"requestId": rid, "version": "$LATEST"}
    assert _ISO_MS.fullmatch(start["time"])
    assert report["record"]["status"] == "success"
    metrics = report["record"]["metrics"]
    assert set(metrics) == {
        "durationMs",
        "billedDurationMs",
        "memorySizeMB",
        "maxMemoryUsedMB",
        "initDurationMs",
    }
    assert metrics["memorySizeMB"] == 256
    assert metrics["billedDurationMs"] >= metrics["durationMs"] > 0
    by_message = messages(records)
    info = by_message["an info record"]
    assert _ISO_MS.fullmatch(info["timestamp"])
    assert (info["level"], info["requestId"]) == ("INFO", rid)
    assert by_message["a printed line"]["level"] == "INFO"
    assert by_message["a warn record"]["level"] == "WARN"
    assert by_message["an error record"]["level"] == "ERROR"
    assert by_message["a fatal record"]["level"] == "FATAL"
    assert "a debug record" not in by_message  # INFO is the default level
    # The log tail holds the same lines, as JSON too.
    tail = base64.b64decode(answer.headers["Kfn-Log-Result"]).decode().splitlines()
    assert [json.loads(line) for line in tail] == records


def test_an_exception_record_carries_its_type_and_stack(
    start_runtime: Starter, language: str
) -> None:
    runtime = start_runtime(language, "json_logs.levels", **JSON_FORMAT)
    runtime.wait_ready()
    rid = runtime.invoke({}).headers["Kfn-Request-Id"]
    record = next(
        r for r in records_of(runtime, rid) if r.get("message", "").startswith("an exception")
    )
    assert record["level"] == "ERROR"
    assert record["errorType"] == "BoomError"
    assert record["errorMessage"] == "caught and logged"
    assert any("json_logs" in frame for frame in record["stackTrace"])
    if language == "python":
        assert record["logger"] == "orders"
        info = messages(records_of(runtime, rid))["an info record"]
        assert info["order"] == 42  # a field given with extra=


def test_a_failed_invocation_is_an_error_record_and_an_error_report(
    start_runtime: Starter, language: str
) -> None:
    runtime = start_runtime(language, "json_logs.fail", **JSON_FORMAT)
    runtime.wait_ready()
    answer = runtime.invoke({})
    assert answer.status == 500
    records = records_of(runtime, answer.headers["Kfn-Request-Id"])
    error = next(r for r in records if r.get("errorType") == "BoomError")
    assert (error["level"], error["errorMessage"]) == ("ERROR", "the handler failed on purpose")
    assert records[-1]["record"]["status"] == "error"


def test_a_timed_out_invocation_reports_timeout(start_runtime: Starter, language: str) -> None:
    runtime = start_runtime(language, "json_logs.slow", KFN_TIMEOUT_MS="200", **JSON_FORMAT)
    runtime.wait_ready()
    answer = runtime.invoke({"ms": 600})
    assert answer.status == 504
    records = records_of(runtime, answer.headers["Kfn-Request-Id"])
    assert messages(records)["Task timed out after 0.20 seconds"]["level"] == "ERROR"
    assert records[-1]["record"]["status"] == "timeout"


def test_the_application_level_drops_less_severe_records(
    start_runtime: Starter, language: str
) -> None:
    runtime = start_runtime(
        language, "json_logs.levels", AWS_LAMBDA_LOG_LEVEL="WARN", **JSON_FORMAT
    )
    runtime.wait_ready()
    rid = runtime.invoke({}).headers["Kfn-Request-Id"]
    kept = set(messages(records_of(runtime, rid)))
    assert {"a warn record", "an error record", "a fatal record"} <= kept
    assert not {"a debug record", "an info record", "a printed line"} & kept


def test_debug_keeps_debug_records_and_the_system_level_the_platforms(
    start_runtime: Starter, language: str
) -> None:
    runtime = start_runtime(
        language,
        "json_logs.levels",
        AWS_LAMBDA_LOG_LEVEL="DEBUG",
        KFN_SYSTEM_LOG_LEVEL="DEBUG",
        **JSON_FORMAT,
    )
    runtime.wait_ready()
    rid = runtime.invoke({}).headers["Kfn-Request-Id"]
    records = records_of(runtime, rid)
    assert messages(records)["a debug record"]["level"] == "DEBUG"
    assert platform(records) == ["platform.start", "platform.runtimeDone", "platform.report"]
    assert records[-2]["record"] == {"requestId": rid, "status": "success"}


def test_the_system_level_warn_drops_start_and_report(
    start_runtime: Starter, language: str
) -> None:
    runtime = start_runtime(
        language, "json_logs.levels", KFN_SYSTEM_LOG_LEVEL="WARN", **JSON_FORMAT
    )
    runtime.wait_ready()
    rid = runtime.invoke({}).headers["Kfn-Request-Id"]
    runtime.wait_for_output("a fatal record")
    runtime.wait_for_output("an exception record")
    lines = [line for line in runtime.lines if rid in line]
    assert lines
    assert not [line for line in lines if '"type":"platform.' in line]


# --- the settings, read from the environment --------------------------------------------------


def test_text_is_the_default_and_levels_need_json() -> None:
    assert logs.settings_from({}) == logs.TEXT
    assert logs.settings_from({"AWS_LAMBDA_LOG_LEVEL": "ERROR"}) == logs.TEXT
    assert logs.settings_from({"AWS_LAMBDA_LOG_FORMAT": "Text"}) == logs.TEXT


@pytest.mark.parametrize(
    ("given", "level"),
    [("DEBUG", "DEBUG"), ("warning", "WARN"), ("nonsense", "INFO"), ("", "INFO")],
)
def test_json_levels_are_lambdas_names(given: str, level: str) -> None:
    settings = logs.settings_from({**JSON_FORMAT, "AWS_LAMBDA_LOG_LEVEL": given})
    assert settings.json
    assert settings.application_level == level


def test_text_lines_are_unchanged_whatever_the_levels() -> None:
    text = logs.Settings(json=False, application_level="FATAL", system_level="WARN")
    assert (
        logs.start_line("r1", "$LATEST", settings=text) == "START RequestId: r1 Version: $LATEST\n"
    )
    assert logs.end_line("r1", settings=text) == "END RequestId: r1\n"
    report = logs.report_line(
        "r1", duration_ms=2.254, memory_mb=128, max_memory_used_mb=39, settings=text
    )
    assert report == (
        "REPORT RequestId: r1\tDuration: 2.25 ms\tBilled Duration: 3 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 39 MB\n"
    )
