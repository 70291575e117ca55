"""Versions, aliases and qualifiers: what the models accept and how a caller's name is read."""

from __future__ import annotations

import pydantic
import pytest

from kfn.api import crdgen, function, function_version, versioning
from tests.unit import statuses

SPEC = {
    "runtime": "python3.13",
    "handler": "app.handler",
    "source": {"inline": {"files": [{"name": "app.py", "content": "x = 1\n"}]}},
}


def test_a_function_publishes_every_change_and_keeps_ten_versions_by_default() -> None:
    spec = function.FunctionSpec.model_validate(SPEC)
    assert spec.publish is versioning.Publish.ALWAYS
    assert spec.version_retention == 10
    assert spec.aliases == []


def test_a_rollout_left_empty_takes_ten_then_fifty_percent_every_five_minutes() -> None:
    alias = versioning.Alias.model_validate({"name": "live", "version": 3, "rollout": {}})
    assert alias.rollout is not None
    assert alias.rollout.steps == [10, 50]
    assert alias.rollout.interval == "5m"
    assert (alias.rollout.max_error_rate_increase, alias.rollout.max_duration_increase) == (5, 50)


@pytest.mark.parametrize("steps", [[50, 10], [10, 10], [0], [100]])
def test_rollout_steps_must_be_increasing_percentages_below_a_hundred(steps: list[int]) -> None:
    with pytest.raises(pydantic.ValidationError):
        versioning.Rollout.model_validate({"steps": steps})


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("hello", ("hello", "$LATEST")),
        ("hello:$LATEST", ("hello", "$LATEST")),
        ("hello:3", ("hello", "3")),
        ("hello:live", ("hello", "live")),
    ],
)
def test_a_qualifier_is_read_as_lambda_reads_it(reference: str, expected: tuple[str, str]) -> None:
    assert versioning.split_qualifier(reference) == expected


@pytest.mark.parametrize(
    ("text", "number"),
    [("3", True), ("10", True), ("0", False), ("03", False), ("live", False), ("$LATEST", False)],
)
def test_only_positive_numbers_name_versions(text: str, number: bool) -> None:
    assert versioning.is_version_number(text) is number


def test_a_version_is_named_after_its_function_and_number() -> None:
    assert function_version.object_name("hello", 12) == "hello-v12"


def test_a_version_holds_the_spec_it_ran_with_its_image_by_digest() -> None:
    template = dict(SPEC, source={"image": "registry.kfn.localhost/fn/a/hello@sha256:" + "a" * 64})
    version = function_version.FunctionVersion.model_validate(
        {
            "metadata": {"name": "hello-v1", "namespace": "a"},
            "spec": {
                "function": "hello",
                "version": 1,
                "configHash": "b" * 64,
                "template": template,
            },
        }
    )
    assert version.spec.template.source.image is not None
    assert version.spec.template.handler == "app.handler"


def test_a_versions_spec_is_immutable_on_the_server() -> None:
    spec = crdgen.function_version_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules = spec["properties"]["spec"]["x-kubernetes-validations"]
    assert {"rule": "self == oldSelf", "message": function_version.IMMUTABLE.message} in rules


def test_status_keeps_alias_routes_and_the_rollout_with_lambda_like_names() -> None:
    status = function.FunctionStatus.model_validate(
        {"latestVersion": 3, **statuses.rollout_in_progress("2026-12-05T02:00:00Z")}
    )
    assert status.aliases is not None
    assert status.aliases[0].rollout is not None
    dumped = status.model_dump(by_alias=True, exclude_none=True)
    assert dumped["aliases"][0]["rollout"]["from"] == 2


def test_a_publish_request_carries_its_description_after_the_time() -> None:
    assert (
        versioning.publish_description("2026-12-05T05:11:38.841255Z fix the totals")
        == "fix the totals"
    )
    assert versioning.publish_description("2026-12-05T05:11:38Z") is None
    assert versioning.publish_description("  again  ") is None
