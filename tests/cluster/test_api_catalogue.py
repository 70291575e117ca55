"""The API server accepts every valid case and refuses every invalid one with the expected message.

Each file in ``tests/cases/invalid`` starts with ``# expect: <substring of the server's error>``
and ``# why: <reason>``; it is submitted with a server-side dry run, so nothing is stored. The
valid cases also check that the defaults the server writes equal the models' defaults, which
keeps the generated schema and the pydantic models from drifting apart.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from kfn.api import function, meta, trigger

pytestmark = pytest.mark.cluster

CASES = pathlib.Path(__file__).resolve().parents[1] / "cases"
#: A namespace of its own: the catalogue's names (``hello``, ``web``) must not meet real objects.
NAMESPACE = "api-catalogue"
PLURALS = {function.KIND: function.PLURAL, trigger.KIND: trigger.PLURAL}
MODELS: dict[str, Any] = {function.KIND: function.Function, trigger.KIND: trigger.Trigger}


def _cases(folder: str) -> list[pathlib.Path]:
    return sorted((CASES / folder).glob("*.yaml"))


def _expectation(path: pathlib.Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# expect:"):
            return line.removeprefix("# expect:").strip()
    raise AssertionError(f"{path.name} has no '# expect:' line")


def _create(api: client.CustomObjectsApi, body: dict[str, Any], *, dry_run: bool) -> Any:
    return api.create_namespaced_custom_object(
        meta.GROUP,
        meta.VERSION,
        NAMESPACE,
        PLURALS[body["kind"]],
        body,
        dry_run="All" if dry_run else None,
    )


def _error_message(error: client.ApiException) -> str:
    """The server's message; the raw body escapes characters such as '<' and '>'."""
    try:
        return str(json.loads(error.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return str(error.body)


@pytest.fixture(scope="module")
def custom_objects(kube_api: client.ApiClient) -> client.CustomObjectsApi:
    core = client.CoreV1Api(kube_api)
    with contextlib.suppress(client.ApiException):
        core.create_namespace({"metadata": {"name": NAMESPACE}})
    # Kept afterwards: a namespace still terminating would refuse the next run's objects.
    return client.CustomObjectsApi(kube_api)


@pytest.mark.parametrize("path", _cases("invalid"), ids=lambda path: path.stem)
def test_invalid_case_is_refused_with_its_expected_message(
    custom_objects: client.CustomObjectsApi, path: pathlib.Path
) -> None:
    body = yaml.safe_load(path.read_text())
    with pytest.raises(client.ApiException) as refused:
        _create(custom_objects, body, dry_run=True)
    assert refused.value.status == 422, refused.value.body
    assert _expectation(path) in _error_message(refused.value)


@pytest.mark.parametrize("path", _cases("valid"), ids=lambda path: path.stem)
def test_valid_case_is_accepted_with_the_models_defaults(
    custom_objects: client.CustomObjectsApi, path: pathlib.Path
) -> None:
    body = yaml.safe_load(path.read_text())
    stored = _create(custom_objects, body, dry_run=True)
    model = MODELS[body["kind"]].model_validate(body)
    expected = _without_empty(model.spec.model_dump(mode="json", by_alias=True, exclude_none=True))
    assert stored["spec"] == expected


def _without_empty(value: Any) -> Any:
    """Drops the empty lists pydantic writes for defaults the server leaves unset."""
    if isinstance(value, dict):
        return {k: _without_empty(v) for k, v in value.items() if v != []}
    if isinstance(value, list):
        return [_without_empty(v) for v in value]
    return value


STREAM_TRIGGER = """
apiVersion: kfn.dev/v1alpha1
kind: Trigger
metadata:
  name: {name}
spec:
  functionRef:
    name: hello
  stream:
    kafka:
      bootstrapServers: ["kafka.streams:9092"]
      topic: orders
      consumerGroup: orders-processor
    startingPosition: Earliest
"""


@pytest.fixture
def stored_stream_trigger(custom_objects: client.CustomObjectsApi) -> Iterator[dict[str, Any]]:
    """A real (not dry-run) stream Trigger, deleted afterwards; updates need a stored object."""
    name = f"immutable-{uuid.uuid4().hex[:8]}"
    stored = _create(
        custom_objects, yaml.safe_load(STREAM_TRIGGER.format(name=name)), dry_run=False
    )
    try:
        yield stored
    finally:
        custom_objects.delete_namespaced_custom_object(
            meta.GROUP, meta.VERSION, NAMESPACE, trigger.PLURAL, name
        )


def _replace_spec(api: client.CustomObjectsApi, name: str, spec: dict[str, Any]) -> Any:
    """Replaces the stored Trigger's spec (dry run) in the version just read.

    A trigger worker may write the Trigger's status between the read and the replace; the
    server then answers 409 Conflict, and the Trigger is read again and the replace retried.
    """
    attempts = 5
    while True:
        attempts -= 1
        latest = api.get_namespaced_custom_object(
            meta.GROUP, meta.VERSION, NAMESPACE, trigger.PLURAL, name
        )
        try:
            return api.replace_namespaced_custom_object(
                meta.GROUP,
                meta.VERSION,
                NAMESPACE,
                trigger.PLURAL,
                name,
                {**latest, "spec": spec},
                dry_run="All",
            )
        except client.ApiException as exc:
            if exc.status != 409 or attempts == 0:
                raise


def _replace_refused(
    api: client.CustomObjectsApi, stored: dict[str, Any], spec: dict[str, Any]
) -> str:
    with pytest.raises(client.ApiException) as refused:
        _replace_spec(api, stored["metadata"]["name"], spec)
    assert refused.value.status == 422, refused.value.body
    return _error_message(refused.value)


def test_trigger_kind_cannot_change_from_stream_to_cron(
    custom_objects: client.CustomObjectsApi, stored_stream_trigger: dict[str, Any]
) -> None:
    spec = {"functionRef": {"name": "hello"}, "cron": {"schedule": "*/5 * * * *"}}
    message = _replace_refused(custom_objects, stored_stream_trigger, spec)
    assert "the kind of a Trigger (http, cron, stream or bucket) cannot change" in message


def test_stream_consumer_group_cannot_change(
    custom_objects: client.CustomObjectsApi, stored_stream_trigger: dict[str, Any]
) -> None:
    spec = json.loads(json.dumps(stored_stream_trigger["spec"]))
    spec["stream"]["kafka"]["consumerGroup"] = "someone-else"
    message = _replace_refused(custom_objects, stored_stream_trigger, spec)
    assert "consumerGroup cannot change" in message


def test_stream_starting_position_cannot_change(
    custom_objects: client.CustomObjectsApi, stored_stream_trigger: dict[str, Any]
) -> None:
    spec = json.loads(json.dumps(stored_stream_trigger["spec"]))
    spec["stream"]["startingPosition"] = "Latest"
    message = _replace_refused(custom_objects, stored_stream_trigger, spec)
    assert "startingPosition and startingTimestamp cannot change" in message


def test_unchanged_stream_trigger_can_be_updated(
    custom_objects: client.CustomObjectsApi, stored_stream_trigger: dict[str, Any]
) -> None:
    """The transition rules refuse changes only, not every update."""
    spec = json.loads(json.dumps(stored_stream_trigger["spec"]))
    spec["stream"]["batchSize"] = 10
    updated = _replace_spec(custom_objects, stored_stream_trigger["metadata"]["name"], spec)
    assert updated["spec"]["stream"]["batchSize"] == 10
