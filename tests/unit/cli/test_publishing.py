"""``kubectl kfn publish``: when there is something to publish, and the request it makes."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kfn.api import function
from kfn.cli import errors, publishing
from kfn.resources import versions

from .conftest import Run

IMAGE = "registry.kfn.svc:5000/team-a/hello@sha256:" + "2" * 64
STAMP = "2026-12-05T05:00:00Z"
NOW = datetime.datetime(2026, 12, 5, 5, 10, 0, 123456, tzinfo=datetime.UTC)


def _fn(ready: str = "True", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Function",
        "metadata": {
            "name": "hello",
            "namespace": "team-a",
            "uid": "u-1",
            "generation": 3,
            "resourceVersion": "77",
        },
        "spec": {
            "runtime": "python3.13",
            "handler": "app.handler",
            "source": {"inline": {"files": [{"name": "app.py", "content": "x = 1"}]}},
            "dependencies": ["requests==2.32.3"],
            "publish": "OnRequest",
            "aliases": [{"name": "live", "version": 1}],
            "url": {},
            "scale": {"maxReplicas": 3},
            **spec,
        },
        "status": {
            "observedGeneration": 3,
            "image": IMAGE,
            "latestVersion": 1,
            "conditions": [
                {"type": t, "status": "True", "reason": "Ok", "lastTransitionTime": STAMP}
                for t in ("SourceReady", "BuildSucceeded")
            ]
            + [{"type": "Ready", "status": ready, "reason": "R", "lastTransitionTime": STAMP}],
        },
    }


def _published(fn: dict[str, Any]) -> dict[str, Any]:
    """The FunctionVersion the operator publishes of ``fn`` as it runs now."""
    model = function.Function.model_validate(fn)
    publication = versions.to_publish(model, IMAGE, [], requested=True)
    assert publication is not None
    return versions.build_function_version(model, publication, source_hash=None)


def test_a_function_unchanged_since_its_newest_version_has_nothing_to_publish() -> None:
    fn = _fn()

    assert publishing.unchanged_since(fn, _published(fn))


@pytest.mark.parametrize(
    "change",
    [
        {"env": [{"name": "MODE", "value": "new"}]},
        {"timeout": "45s"},
        {"concurrency": 2},
    ],
)
def test_a_changed_configuration_is_something_to_publish(change: dict[str, Any]) -> None:
    newest = _published(_fn())

    assert not publishing.unchanged_since(_fn(**change), newest)


def test_a_new_image_is_something_to_publish() -> None:
    newest = _published(_fn())
    fn = _fn()
    fn["status"]["image"] = IMAGE.replace("2" * 64, "3" * 64)

    assert not publishing.unchanged_since(fn, newest)


def test_the_functions_own_settings_are_no_change_to_publish() -> None:
    newest = _published(_fn())
    fn = _fn(aliases=[], url=None, scale={"maxReplicas": 9}, versionRetention=3)

    assert publishing.unchanged_since(fn, newest)


def test_a_function_that_is_not_ready_has_nothing_to_publish() -> None:
    with pytest.raises(errors.CliError, match=r"function hello is not Ready.*nothing deployed"):
        publishing.ready_to_publish(_fn(ready="False"))
    publishing.ready_to_publish(_fn())


def test_a_function_whose_new_spec_is_not_taken_yet_has_nothing_to_publish() -> None:
    fn = _fn()
    fn["metadata"]["generation"] = 4

    with pytest.raises(errors.CliError, match="waiting for the operator to take generation 4"):
        publishing.ready_to_publish(fn)


def test_the_request_is_the_time_and_the_description_on_one_line() -> None:
    assert publishing.request_value(NOW, None) == "2026-12-05T05:10:00.123456Z"
    assert (
        publishing.request_value(NOW, "fix the\nretry loop ")
        == "2026-12-05T05:10:00.123456Z fix the retry loop"
    )


def test_a_description_too_long_to_keep_is_refused() -> None:
    with pytest.raises(errors.CliError, match="--description is 300 characters long"):
        publishing.request_value(NOW, "x" * 300)


def test_the_request_patch_sets_the_annotation_against_the_version_read() -> None:
    assert publishing.request_patch(_fn(), "v") == {
        "metadata": {"resourceVersion": "77", "annotations": {"kfn.dev/publish": "v"}}
    }


def test_a_new_version_is_one_above_the_latest_before_the_request() -> None:
    fn = _fn()
    assert publishing.new_version(1, fn) is None
    fn["status"]["latestVersion"] = 2
    assert publishing.new_version(1, fn) == 2
    assert publishing.new_version(None, fn) == 2


def test_publish_refuses_a_bad_timeout_before_reaching_a_cluster(kfn: Run) -> None:
    result = kfn("publish", "hello", "--timeout", "0s")

    assert result.code == 1
    assert "--timeout: invalid duration" in result.err
