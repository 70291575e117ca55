"""The models reject the invalid catalogue cases and accept the valid ones, as the server does.

``tests/cluster/test_api_catalogue.py`` submits the same files to a real API server. Here, the
point is that the operator's models agree with the CRD: when a case's expected message is one
of our own CEL messages, pydantic must fail with that same message.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pydantic
import pytest
import yaml

from kfn.api import crdgen, function, trigger

CASES = pathlib.Path(__file__).resolve().parents[2] / "cases"
MODELS: dict[str, type[pydantic.BaseModel]] = {
    "Function": function.Function,
    "Trigger": trigger.Trigger,
}


def _cases(folder: str) -> list[pathlib.Path]:
    return sorted((CASES / folder).glob("*.yaml"))


def _header(path: pathlib.Path, key: str) -> str:
    for line in path.read_text().splitlines():
        if line.startswith(f"# {key}:"):
            return line.removeprefix(f"# {key}:").strip()
    raise AssertionError(f"{path.name} has no '# {key}:' line")


def _cel_messages() -> set[str]:
    messages: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for rule in node.get("x-kubernetes-validations", []):
                messages.add(rule["message"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(crdgen.function_crd())
    walk(crdgen.trigger_crd())
    return messages


CEL_MESSAGES = _cel_messages()


def test_catalogue_is_big_enough_and_covers_every_trigger_kind() -> None:
    assert len(_cases("invalid")) >= 35
    valid = [yaml.safe_load(path.read_text()) for path in _cases("valid")]
    assert len(valid) >= 8
    kinds = {
        key
        for doc in valid
        if doc["kind"] == "Trigger"
        for key in doc["spec"]
        if key != "functionRef"
    }
    assert kinds == {"http", "cron", "stream", "bucket"}


@pytest.mark.parametrize("path", _cases("invalid"), ids=lambda path: path.stem)
def test_invalid_case_explains_itself(path: pathlib.Path) -> None:
    assert _header(path, "expect")
    assert _header(path, "why")


@pytest.mark.parametrize("path", _cases("invalid"), ids=lambda path: path.stem)
def test_invalid_case_is_rejected_by_the_models(path: pathlib.Path) -> None:
    document = yaml.safe_load(path.read_text())
    with pytest.raises(pydantic.ValidationError) as rejected:
        MODELS[document["kind"]].model_validate(document)
    expected = _header(path, "expect")
    if any(expected in message for message in CEL_MESSAGES):
        assert expected in str(rejected.value)


@pytest.mark.parametrize("path", _cases("valid"), ids=lambda path: path.stem)
def test_valid_case_is_accepted_by_the_models(path: pathlib.Path) -> None:
    document = yaml.safe_load(path.read_text())
    MODELS[document["kind"]].model_validate(document)
