"""Runtimes Lambda deprecated: a pure decision from the runtime and today's date, which
kubectl explain states and which gives each Function using one a Warning Event when it is
created, changed, or the operator starts."""

from __future__ import annotations

import datetime
import logging
from typing import Any

import kopf
import pytest

from kfn.api import crdgen, function
from kfn.operator import handlers

DAY = datetime.timedelta(days=1)


def fn(runtime: str) -> dict[str, Any]:
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "f", "namespace": "n", "uid": "u"},
        "spec": {"runtime": runtime, "handler": "index.handler", "source": {"image": "x"}},
    }


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    posted: list[dict[str, Any]] = []
    monkeypatch.setattr(kopf, "event", lambda body, **kw: posted.append(kw))
    monkeypatch.setattr(handlers, "_run", lambda *_: None)
    return posted


# --- the decision ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("runtime", "deprecated_on"),
    [
        ("nodejs18", "2025-09-01"),
        ("nodejs20", "2026-04-30"),
        ("nodejs22", "2027-04-30"),
        ("python3.11", "2027-06-30"),
        ("python3.12", "2028-10-31"),
        ("python3.13", "2029-06-30"),
    ],
)
def test_a_runtime_is_deprecated_from_lambdas_published_date_on(
    runtime: str, deprecated_on: str
) -> None:
    day = datetime.date.fromisoformat(deprecated_on)
    assert function.deprecation(runtime, day - DAY) is None
    on_the_day = function.deprecation(runtime, day)
    assert on_the_day is not None
    assert f"{runtime}.x on {deprecated_on}" in on_the_day
    assert function.deprecation(runtime, day + 1000 * DAY) is not None


def test_every_runtime_has_a_deprecation_date() -> None:
    assert set(function.LAMBDA_DEPRECATION) == set(function.RUNTIMES)


@pytest.mark.parametrize(
    ("runtime", "today", "advice"),
    [
        ("nodejs18", "2026-12-04", "move the function to nodejs22"),
        ("nodejs20", "2026-12-04", "move the function to nodejs22"),
        ("nodejs18", "2025-10-01", "move the function to nodejs20 or nodejs22"),
        ("python3.11", "2027-07-01", "move the function to python3.12 or python3.13"),
        ("nodejs22", "2027-05-01", "move the function on"),
    ],
)
def test_the_warning_names_the_runtimes_still_supported_that_day(
    runtime: str, today: str, advice: str
) -> None:
    why = function.deprecation(runtime, datetime.date.fromisoformat(today))
    assert why is not None
    assert why.endswith(advice)


def test_an_unknown_runtime_is_not_called_deprecated() -> None:
    assert function.deprecation("ruby3.2", datetime.date(2100, 1, 1)) is None


# --- acting on it ----------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["nodejs18", "nodejs20"])
def test_a_function_on_a_runtime_past_its_date_gets_a_warning_naming_it(
    events: list[dict[str, Any]], runtime: str
) -> None:
    handlers.function_changed(body=fn(runtime), retry=0, logger=logging.getLogger("t"))
    (event,) = events
    assert (event["type"], event["reason"]) == ("Warning", "DeprecatedRuntime")
    deprecated_on = function.LAMBDA_DEPRECATION[runtime].isoformat()
    assert event["message"].startswith(f"{runtime}: AWS Lambda deprecated {runtime}.x on ")
    assert deprecated_on in event["message"]


def test_a_supported_runtime_and_a_retry_get_no_warning(events: list[dict[str, Any]]) -> None:
    # python3.13 is supported until 2029-06-30, far past any day these tests run.
    handlers.function_changed(body=fn("python3.13"), retry=0, logger=logging.getLogger("t"))
    handlers.function_changed(body=fn("nodejs18"), retry=1, logger=logging.getLogger("t"))
    assert events == []


def test_kubectl_explain_names_the_deprecated_runtimes_and_every_date() -> None:
    spec = crdgen.function_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    runtime = spec["properties"]["spec"]["properties"]["runtime"]
    assert runtime["enum"] == list(function.RUNTIMES)
    described = runtime["description"]
    assert "Deprecated (as of 2026-12-04): nodejs18, nodejs20." in described
    for name, day in function.LAMBDA_DEPRECATION.items():
        assert f"{name} {day.isoformat()}" in described
