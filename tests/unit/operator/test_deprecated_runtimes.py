"""Runtimes Lambda deprecated: kubectl explain says so, and each Function using one gets a
Warning Event when it is created, changed, or the operator starts."""

from __future__ import annotations

import logging
from typing import Any

import kopf
import pytest

from kfn.api import crdgen, function
from kfn.operator import handlers


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


def test_a_nodejs18_function_gets_a_warning_naming_lambdas_deprecation(
    events: list[dict[str, Any]],
) -> None:
    handlers.function_changed(body=fn("nodejs18"), retry=0, logger=logging.getLogger("t"))
    (event,) = events
    assert (event["type"], event["reason"]) == ("Warning", "DeprecatedRuntime")
    assert "2025-09-01" in event["message"]


def test_a_current_runtime_and_a_retry_get_no_warning(events: list[dict[str, Any]]) -> None:
    handlers.function_changed(body=fn("python3.11"), retry=0, logger=logging.getLogger("t"))
    handlers.function_changed(body=fn("nodejs18"), retry=1, logger=logging.getLogger("t"))
    assert events == []


def test_kubectl_explain_says_nodejs18_is_deprecated() -> None:
    spec = crdgen.function_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    runtime = spec["properties"]["spec"]["properties"]["runtime"]["description"]
    assert "nodejs18 (deprecated" in runtime
    assert function.DEPRECATED_RUNTIMES["nodejs18"] in runtime
