"""The operator's own metrics: every handler timed and its failures counted, by kind and name,
and the backlog of handler runs in progress and objects waiting for kopf to retry them."""

from __future__ import annotations

import inspect
import socket
import threading
import urllib.request
from typing import Any

import kopf
import prometheus_client
import pytest

from kfn.operator import bucket_events, exposure, handlers, metrics, triggers


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _value(name: str, **labels: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name, labels) or 0.0


# --- every handler is measured ----------------------------------------------------------------

HANDLERS = [
    (handlers.function_changed, "Function"),
    (handlers.function_resync, "Function"),
    (handlers.function_deleted, "Function"),
    (handlers.deployment_event, "Function"),
    (handlers.pod_event, "Function"),
    (handlers.build_job_event, "Function"),
    (handlers.source_config_map_event, "Function"),
    (exposure.function_url_event, "Function"),
    (triggers.trigger_event, "Trigger"),
    (triggers.function_event_for_triggers, "Trigger"),
    (bucket_events.bucket_trigger_event, "Trigger"),
]


@pytest.mark.parametrize(("handler", "kind"), HANDLERS, ids=[h.__name__ for h, _ in HANDLERS])
def test_a_wrapped_handler_keeps_the_name_kopf_knows_it_by(handler: Any, kind: str) -> None:
    # kopf's handler ids (and so the progress annotations on Functions) are the functions'
    # names: wrapping must not change them, or every Function would be handled anew.
    assert handler.__qualname__ == inspect.unwrap(handler).__qualname__ == handler.__name__
    assert handler is not inspect.unwrap(handler), "the handler is not measured"
    histogram = prometheus_client.REGISTRY.get_sample_value(
        "kfn_operator_reconcile_duration_seconds_count", {"kind": kind, "handler": handler.__name__}
    )
    assert histogram is not None, "its series exists from the start, at zero"


def test_a_handler_run_is_timed_by_kind_and_handler() -> None:
    backlog = metrics.Backlog()

    @metrics.measured("Trigger", backlog=backlog)
    def timed_handler(**_: Any) -> str:
        return "done"

    before = _value(
        "kfn_operator_reconcile_duration_seconds_count", kind="Trigger", handler="timed_handler"
    )
    assert timed_handler(uid="u1", name="t", namespace="n") == "done"
    assert timed_handler(uid="u1", name="t", namespace="n") == "done"
    after = _value(
        "kfn_operator_reconcile_duration_seconds_count", kind="Trigger", handler="timed_handler"
    )
    assert after - before == 2
    errors = _value("kfn_operator_reconcile_errors_total", kind="Trigger", handler="timed_handler")
    assert errors == 0


@pytest.mark.parametrize(
    "error",
    [kopf.TemporaryError("later", delay=5), kopf.PermanentError("never"), KeyError("bug")],
    ids=["temporary", "permanent", "unexpected"],
)
def test_a_handler_that_raises_is_counted_as_an_error_and_the_error_goes_on_to_kopf(
    error: Exception,
) -> None:
    name = f"failing_{type(error).__name__}"

    def failing(**_: Any) -> None:
        raise error

    failing.__name__ = failing.__qualname__ = name
    wrapped = metrics.measured("Function", retried=True, backlog=metrics.Backlog())(failing)

    with pytest.raises(type(error)):
        wrapped(uid="u1")

    assert _value("kfn_operator_reconcile_errors_total", kind="Function", handler=name) == 1
    runs = _value("kfn_operator_reconcile_duration_seconds_count", kind="Function", handler=name)
    assert runs == 1


# --- the backlog ------------------------------------------------------------------------------


def test_a_run_in_progress_counts_until_it_ends() -> None:
    backlog = metrics.Backlog()
    seen: list[int] = []

    @metrics.measured("Function", backlog=backlog)
    def slow(**_: Any) -> None:
        seen.append(backlog.depth("Function"))

    slow(uid="u1")

    assert seen == [1]
    assert backlog.depth("Function") == 0
    assert backlog.depth("Trigger") == 0


def test_runs_in_progress_on_several_threads_each_count() -> None:
    backlog = metrics.Backlog()
    inside, release = threading.Barrier(4), threading.Event()

    @metrics.measured("Trigger", backlog=backlog)
    def held(**_: Any) -> None:
        inside.wait()
        release.wait()

    threads = [threading.Thread(target=held, kwargs={"uid": f"u{i}"}) for i in range(3)]
    for thread in threads:
        thread.start()
    inside.wait()
    assert backlog.depth("Trigger") == 3
    release.set()
    for thread in threads:
        thread.join()
    assert backlog.depth("Trigger") == 0


def test_an_object_whose_change_handler_failed_waits_until_kopf_runs_it_again() -> None:
    clock = FakeClock()
    backlog = metrics.Backlog(clock)
    outcomes: list[Exception | None] = [kopf.TemporaryError("no build slot", delay=5), None]

    @metrics.measured("Function", retried=True, backlog=backlog)
    def changed(**_: Any) -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    with pytest.raises(kopf.TemporaryError):
        changed(uid="fn-1")
    assert backlog.depth("Function") == 1
    clock.now += 5
    assert backlog.depth("Function") == 1, "still waiting: kopf has not run it yet"

    changed(uid="fn-1")
    assert backlog.depth("Function") == 0


def test_an_unexpected_error_waits_for_kopfs_default_backoff_and_a_permanent_one_not_at_all() -> (
    None
):
    clock = FakeClock()
    backlog = metrics.Backlog(clock)

    @metrics.measured("Function", retried=True, backlog=backlog)
    def changed(error: Exception, **_: Any) -> None:
        raise error

    with pytest.raises(kopf.PermanentError):
        changed(kopf.PermanentError("bad spec"), uid="fn-1")
    assert backlog.depth("Function") == 0

    with pytest.raises(KeyError):
        changed(KeyError("bug"), uid="fn-2")
    clock.now += metrics.DEFAULT_BACKOFF + metrics.RETRY_GRACE
    assert backlog.depth("Function") == 1
    clock.now += 1
    assert backlog.depth("Function") == 0, "kopf never ran it again: no longer counted"


def test_one_object_failing_again_and_again_waits_once() -> None:
    backlog = metrics.Backlog(FakeClock())

    @metrics.measured("Function", retried=True, backlog=backlog)
    def changed(**_: Any) -> None:
        raise kopf.TemporaryError("still no slot", delay=5)

    for _ in range(3):
        with pytest.raises(kopf.TemporaryError):
            changed(uid="fn-1")
    with pytest.raises(kopf.TemporaryError):
        changed(uid="fn-2")

    assert backlog.depth("Function") == 2


def test_an_event_handler_that_fails_does_not_wait_since_kopf_never_retries_it() -> None:
    backlog = metrics.Backlog(FakeClock())

    @metrics.measured("Function", backlog=backlog)
    def event(**_: Any) -> None:
        raise kopf.TemporaryError("lost", delay=2)

    with pytest.raises(kopf.TemporaryError):
        event(uid="deployment-1")

    assert backlog.depth("Function") == 0


# --- the endpoint -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_metrics_endpoint_serves_the_operators_and_the_builds_series() -> None:
    port = _free_port()
    metrics.serve(port, "127.0.0.1")

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()

    assert 'kfn_operator_queue_depth{kind="Function"}' in text
    assert 'kfn_operator_queue_depth{kind="Trigger"}' in text
    assert "# TYPE kfn_operator_reconcile_duration_seconds histogram" in text
    assert "# TYPE kfn_operator_reconcile_errors_total counter" in text
    assert "# TYPE kfn_build_duration_seconds histogram" in text
    assert "# TYPE kfn_build_failures_total counter" in text
