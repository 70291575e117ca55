"""``kubectl kfn logs``: each line with its pod and request id, pods merged in time order."""

from __future__ import annotations

import io
import logging

import pytest
from kfn_runtime import logs as runtime_logs

from kfn.cli import logview

RID = "8f5017ac-4a1e-4bd8-9c1e-5b8a3c36a1f0"
TEXT = runtime_logs.Settings()
JSON = runtime_logs.Settings(json=True, application_level="TRACE", system_level="DEBUG")


def _logged(formatter: logging.Formatter, message: str) -> str:
    """A record formatted as the runtime formats the handler's logging."""
    record = logging.LogRecord("orders", logging.INFO, __file__, 1, message, None, None)
    record.aws_request_id = RID
    return formatter.format(record)


@pytest.mark.parametrize(
    "line",
    [
        runtime_logs.start_line(RID, "$LATEST", settings=TEXT),
        runtime_logs.end_line(RID, settings=TEXT),
        runtime_logs.report_line(
            RID, duration_ms=2.26, memory_mb=128, max_memory_used_mb=39, settings=TEXT
        ),
        f"{RID}\ta line the handler printed\n",
        _logged(runtime_logs.LambdaFormatter(), "a logging record"),
        f"2026-12-04T10:00:00.123Z\t{RID}\tINFO\ta console.log line of Node\n",
        runtime_logs.start_line(RID, "$LATEST", settings=JSON),
        runtime_logs.report_line(
            RID, duration_ms=2.26, memory_mb=128, max_memory_used_mb=39, settings=JSON
        ),
        runtime_logs.json_line(runtime_logs.app_record("INFO", RID, 0.0, "printed")),
        _logged(runtime_logs.JsonFormatter(), "order stored"),
    ],
    ids=[
        "text-start", "text-end", "text-report", "text-print", "text-logging", "node-console",
        "json-start", "json-report", "json-print", "json-logging",
    ],
)  # fmt: skip
def test_the_request_id_is_read_from_every_line_the_runtimes_write_in_an_invocation(
    line: str,
) -> None:
    line = line.rstrip("\n")

    assert logview.request_id(line) == RID
    assert logview.prefixed("hello-7c9d8-x2k4q", line) == f"[hello-7c9d8-x2k4q] [{RID}] {line}"


@pytest.mark.parametrize(
    "line",
    [
        "kfn runtime: listening on 0.0.0.0:8080",
        "a line printed while the module loads",
        "not\ta request id in front",
        '{"message": "json without a request id"}',
        "{not json at all",
        "[1, 2, 3]",
    ],
)
def test_a_line_outside_any_invocation_is_prefixed_with_its_pod_only(line: str) -> None:
    assert logview.request_id(line) is None
    assert logview.prefixed("hello-1", line) == f"[hello-1] {line}"


def test_a_callers_own_request_id_is_read_where_the_runtime_writes_one() -> None:
    given = "cron-tick.42:retry-1"
    line = runtime_logs.start_line(given, "$LATEST", settings=TEXT).rstrip("\n")

    assert logview.request_id(line) == given


def test_lines_of_several_pods_are_merged_in_time_order_and_lose_their_stamps() -> None:
    by_pod = {
        "a": ["2026-12-04T10:00:00.5Z first of a", "2026-12-04T10:00:02Z third"],
        "b": ["2026-12-04T10:00:01.000000001Z second", "2026-12-04T10:00:02Z fourth, same time"],
    }

    assert logview.merged(by_pod) == [
        ("a", "first of a"),
        ("b", "second"),
        ("a", "third"),
        ("b", "fourth, same time"),
    ]


def test_a_line_without_a_stamp_is_kept_whole() -> None:
    assert logview.split_timestamp("kfn runtime: listening") == ("", "kfn runtime: listening")


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("2h", 7200)]
)
def test_since_takes_kubectls_durations(text: str, seconds: int) -> None:
    assert logview.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5d", "-5m", "0s", "m"])
def test_since_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        logview.parse_duration(text)


def _pod(name: str, created: str, state: dict[str, object] | None) -> dict[str, object]:
    statuses = [{"name": "function", "state": state}] if state is not None else []
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "status": {"containerStatuses": statuses},
    }


def test_follow_takes_new_pods_once_their_container_has_started_oldest_first() -> None:
    pods = [
        _pod("c", "2026-12-04T10:00:03Z", {"running": {}}),
        _pod("a", "2026-12-04T10:00:01Z", {"terminated": {"exitCode": 0}}),
        _pod("b", "2026-12-04T10:00:02Z", {"waiting": {"reason": "ContainerCreating"}}),
        _pod("d", "2026-12-04T10:00:04Z", None),
        _pod("e", "2026-12-04T10:00:00Z", {"running": {}}),
    ]

    assert logview.new_pods(["e"], pods) == ["a", "c"]


def test_the_tagging_stream_of_the_runtime_writes_lines_the_prefix_reads() -> None:
    target = io.StringIO()
    stream = runtime_logs.TaggingStream(target)
    token = runtime_logs.request_id.set(RID)
    try:
        stream.write("hello from the handler\n")
    finally:
        runtime_logs.request_id.reset(token)

    assert logview.request_id(target.getvalue().rstrip("\n")) == RID


KEPT = {
    "hello-a": "2026-12-05T10:00:01.5Z first\n2026-12-05T10:00:03Z second\n",
    "hello-b": "2026-12-05T10:00:02.25Z other\n",
}


def test_the_lines_kept_of_departed_pods_are_shown_under_their_pods() -> None:
    found = logview.kept_lines(KEPT, [])
    assert logview.merged(found) == [
        ("hello-a", "first"),
        ("hello-b", "other"),
        ("hello-a", "second"),
    ]


def test_a_pod_still_listed_is_read_from_its_own_log_not_from_the_kept_lines() -> None:
    assert set(logview.kept_lines(KEPT, ["hello-a"])) == {"hello-b"}


def test_kept_lines_honour_tail_and_since() -> None:
    assert logview.kept_lines(KEPT, [], tail=1)["hello-a"] == ["2026-12-05T10:00:03Z second"]
    assert logview.kept_lines(KEPT, [], tail=0) == {}
    newer = logview.kept_lines(KEPT, [], newer_than="2026-12-05T10:00:02.000000Z")
    assert newer == {
        "hello-a": ["2026-12-05T10:00:03Z second"],
        "hello-b": ["2026-12-05T10:00:02.25Z other"],
    }


def test_pod_names_are_read_from_a_listing() -> None:
    pods: list[dict[str, object]] = [{"metadata": {"name": "a"}}, {"metadata": {}}, {}]
    assert logview.pod_names(pods) == ["a"]
