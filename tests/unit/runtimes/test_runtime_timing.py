"""The runtimes' own measures for the activator (CONTRACT.md §2, §3, §12):
``Kfn-Handler-Duration`` on the answers of invocations whose handler ran, and
``Kfn-Init-Timing`` on the probes' answers once loading ended."""

from __future__ import annotations

import re
import time

import pytest
from kfn_runtime import timing

from .conftest import RunningRuntime, Starter
from .test_runtime_streaming import Streamed

_REPORT_DURATION = re.compile(r"REPORT RequestId: (\S+)\tDuration: ([\d.]+) ms")


def report_duration_ms(runtime: RunningRuntime, rid: str) -> float:
    output = runtime.wait_for_output(f"REPORT RequestId: {rid}")
    found = [float(ms) for r, ms in _REPORT_DURATION.findall(output) if r == rid]
    assert len(found) == 1
    return found[0]


def init_timing(value: str | None) -> dict[str, float]:
    assert value is not None
    parts = dict(part.split("=", 1) for part in value.split(";"))
    assert list(parts) == ["start", "boot", "imported"]
    assert all(re.fullmatch(r"\d+\.\d{6}", v) for v in parts.values())
    return {name: float(v) for name, v in parts.items()}


# --- Kfn-Handler-Duration -------------------------------------------------------------------


def test_an_invokes_answer_carries_the_handlers_time_as_its_report_line_does(
    start_runtime: Starter, language: str
) -> None:
    runtime = start_runtime(language, "app.slow")
    runtime.wait_ready()
    answer = runtime.invoke({"ms": 300})
    assert answer.status == 200
    duration = answer.headers["Kfn-Handler-Duration"]
    assert re.fullmatch(r"\d+\.\d{6}", duration)
    assert 0.3 <= float(duration) < 0.5
    reported = report_duration_ms(runtime, answer.headers["Kfn-Request-Id"])
    assert abs(reported - float(duration) * 1000) <= 0.01


def test_a_failed_or_timed_out_handler_still_has_its_time_sent(
    start_runtime: Starter, language: str
) -> None:
    runtime = start_runtime(language, "app.slow", KFN_TIMEOUT_MS="200")
    runtime.wait_ready()
    timed_out = runtime.invoke({"ms": 600})
    assert timed_out.status == 504
    # Node's timers run on libuv's loop clock, cached in whole milliseconds: the time-out may
    # fire up to a millisecond before 200 ms of the finer clock the duration is measured on.
    assert 0.198 <= float(timed_out.headers["Kfn-Handler-Duration"]) < 0.4
    failing = start_runtime(language, "app.fail")
    failing.wait_ready()
    failed = failing.invoke({})
    assert failed.status == 500
    assert 0 < float(failed.headers["Kfn-Handler-Duration"]) < 0.2


def test_an_http_events_answer_carries_the_handlers_time(
    start_runtime: Starter, language: str
) -> None:
    runtime = start_runtime(language, "app.http")
    runtime.wait_ready()
    answer = runtime.request("GET", "/orders/42")
    assert answer.status == 201
    duration = float(answer.headers["Kfn-Handler-Duration"])
    assert 0 < duration < 0.2
    reported = report_duration_ms(runtime, answer.headers["Kfn-Request-Id"])
    assert abs(reported - duration * 1000) <= 0.01


def test_an_answer_waiting_for_the_load_counts_only_the_handlers_time(
    start_runtime: Starter, language: str
) -> None:
    runtime = start_runtime(language, "slow_import.handler", SLOW_IMPORT_MS="500")
    answer = runtime.invoke({"x": 1})
    assert answer.status == 200
    assert float(answer.headers["Kfn-Handler-Duration"]) < 0.2


@pytest.mark.parametrize("path", ["/_kfn/invoke", "/report"])
def test_a_stream_ends_with_the_handlers_time_as_a_trailer(
    start_runtime: Starter, language: str, path: str
) -> None:
    runtime = start_runtime(language, "streams.bare")
    runtime.wait_ready()
    method = "POST" if path == "/_kfn/invoke" else "GET"
    answer = Streamed.request(runtime, method, path).read_all()
    assert answer.status == 200
    assert "Kfn-Handler-Duration" in answer.header("trailer")[0]
    assert answer.header("kfn-handler-duration") == []
    duration = float(answer.trailers["kfn-handler-duration"])
    assert 0 < duration < 0.5
    reported = report_duration_ms(runtime, answer.header("kfn-request-id")[0])
    assert abs(reported - duration * 1000) <= 0.01


def test_a_stream_failing_midway_sends_its_time_with_the_error_trailers(
    start_runtime: Starter, language: str
) -> None:
    runtime = start_runtime(language, "streams.fails_midway")
    runtime.wait_ready()
    answer = Streamed.request(runtime, "GET", "/report").read_all()
    assert answer.trailers["kfn-function-error"] == "Unhandled"
    assert 0 < float(answer.trailers["kfn-handler-duration"]) < 0.5


# --- Kfn-Init-Timing ------------------------------------------------------------------------


def test_the_probes_say_when_the_process_started_booted_and_imported_its_handler(
    start_runtime: Starter, language: str
) -> None:
    before = time.time()
    runtime = start_runtime(language, "slow_import.handler", SLOW_IMPORT_MS="300")
    loading = runtime.request("GET", "/_kfn/ready")
    assert loading.status == 503
    assert loading.headers["Kfn-Init-Timing"] is None  # not before loading ended
    assert runtime.wait_ready().status == 200
    now = time.time()
    ready = init_timing(runtime.request("GET", "/_kfn/ready").headers["Kfn-Init-Timing"])
    # The kernel's start has clock-tick (10 ms) resolution; the test's own clock reads
    # bracket the whole life of the process.
    assert before - 0.02 <= ready["start"] <= ready["boot"] <= ready["imported"] <= now
    assert ready["imported"] - ready["boot"] >= 0.3  # the module's own load time
    assert ready["boot"] - ready["start"] < 2
    started = runtime.request("GET", "/_kfn/started")
    assert started.status == 200
    assert init_timing(started.headers["Kfn-Init-Timing"]) == ready


def test_a_failed_load_is_timed_too(start_runtime: Starter, language: str) -> None:
    runtime = start_runtime(language, "imports_missing.handler")
    failed = runtime.wait_ready()
    assert failed.status == 503
    assert failed.headers["Kfn-Init-Error"] == "Runtime.ImportModuleError"
    times = init_timing(failed.headers["Kfn-Init-Timing"])
    assert times["start"] <= times["boot"] <= times["imported"] <= time.time()


def test_the_process_start_is_read_from_the_stat_lines_start_time() -> None:
    # Field 22 (starttime) counted after the command name, which may hold spaces and ")".
    stat = "4242 (odd ) name) S 1 4242 4242 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0"
    # Started at 123.45 s of uptime; 1000.00 s of uptime now, at unix time 2_000_000_000.
    assert timing.process_start(stat, 100, 1000.0, 2_000_000_000.0) == pytest.approx(
        2_000_000_000.0 - (1000.0 - 123.45)
    )
    assert timing.process_start("4242 (short) S 1", 100, 1000.0, 2e9) is None


def test_a_start_the_system_cannot_tell_is_left_out() -> None:
    assert timing.header_value(None, 1.5, 2.25) == "boot=1.500000;imported=2.250000"
    assert timing.header_value(1.0, 1.5, 2.25) == "start=1.000000;boot=1.500000;imported=2.250000"
