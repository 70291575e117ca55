"""What ``kubectl kfn publish`` decides (pure): whether there is anything to publish, and the
request that asks the operator to.

With ``spec.publish: OnRequest`` a version is published when the Function's annotation
``kfn.dev/publish`` takes a value no version has honoured yet (the operator copies the value
onto the FunctionVersion it publishes): :func:`request_value` is the time of the request,
followed by the description when one is given. The operator publishes only what differs from
the newest version (``kfn.resources.versions.to_publish``), so a request with nothing new
would never be answered: :func:`unchanged_since` says so first, and publish answers with the
newest version, as Lambda's PublishVersion does. With ``publish: Always`` every deployed change
already is a version.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Final

import pydantic

from kfn.api import function, function_version, versioning
from kfn.cli import errors, progress

MAX_ANNOTATION_DESCRIPTION: Final = 256

# What kfn.resources.versions.template sets in a version's template, whatever the Function has.
_TEMPLATE_FIXED: Final[Mapping[str, Any]] = {
    "dependencies": [],
    "layers": [],
    "aliases": [],
    "publish": versioning.Publish.ALWAYS.value,
    "versionRetention": versioning.DEFAULT_VERSION_RETENTION,
    "url": None,
    "scale": {},
}


def _name(fn: Mapping[str, Any]) -> str:
    return str((fn.get("metadata") or {}).get("name", ""))


def ready_to_publish(fn: Mapping[str, Any]) -> None:
    """CliError unless the Function serves its current spec (Ready, for its generation):
    until then there is nothing deployed to publish."""
    state = progress.state(fn)
    if state.phase != "ready":
        name = _name(fn)
        raise errors.CliError(
            f"function {name} is not Ready ({state.phase}: {state.message}): there is nothing "
            f"deployed to publish; see kubectl kfn describe {name}, or deploy it first"
        )


def request_value(now: datetime.datetime, description: str | None) -> str:
    """The annotation's value asking for a version: the UTC time (unique per request), then
    the description if any."""
    stamp = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    text = " ".join((description or "").split())
    if len(text) > MAX_ANNOTATION_DESCRIPTION:
        raise errors.CliError(
            f"--description is {len(text)} characters long; at most "
            f"{MAX_ANNOTATION_DESCRIPTION} are kept"
        )
    return f"{stamp} {text}" if text else stamp


def request_patch(fn: Mapping[str, Any], value: str) -> dict[str, Any]:
    """The merge patch setting the publish annotation, computed from this resourceVersion."""
    meta = fn.get("metadata") or {}
    return {
        "metadata": {
            "resourceVersion": meta.get("resourceVersion"),
            "annotations": {versioning.PUBLISH_ANNOTATION: value},
        }
    }


def _canonical(spec: Mapping[str, Any]) -> dict[str, Any] | None:
    try:
        parsed = function.FunctionSpec.model_validate(spec)
    except pydantic.ValidationError:
        return None
    dumped: dict[str, Any] = parsed.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


def unchanged_since(fn: Mapping[str, Any], newest: Mapping[str, Any]) -> bool:
    """Whether the Function runs exactly what its newest version (a FunctionVersion) records:
    the same image and the same template, so there is nothing to publish."""
    image = (fn.get("status") or {}).get("image")
    if not image:
        return False
    running = {
        **dict(fn.get("spec") or {}),
        **_TEMPLATE_FIXED,
        "source": {"image": image},
    }
    try:
        recorded = function_version.FunctionVersionSpec.model_validate(newest.get("spec") or {})
    except pydantic.ValidationError:
        return False
    mine = _canonical({k: v for k, v in running.items() if v is not None})
    return mine is not None and mine == recorded.template.model_dump(
        mode="json", by_alias=True, exclude_none=True
    )


def new_version(before: int | None, fn: Mapping[str, Any]) -> int | None:
    """The version published since ``before`` (``status.latestVersion`` then), or None yet."""
    now = (fn.get("status") or {}).get("latestVersion")
    if isinstance(now, int) and now > (before or 0):
        return now
    return None
