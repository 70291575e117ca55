"""Publishing a Function's versions and running the ones aliases route to.

Called by :func:`kfn.operator.reconcile.reconcile` once the Function's current image is deployed:
it publishes a :class:`~kfn.api.function_version.FunctionVersion` when the running template is
new (``spec.publish``), keeps a Deployment ``<function>-v<N>`` for every routed version (as in
Lambda, a version and ``$LATEST`` never share execution environments, even when they run the
same code), removes the Deployments of versions nothing routes to, and deletes the versions
beyond the retention. The decisions are :mod:`kfn.resources.versions`'.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import pydantic

from kfn import clock, kube
from kfn.api import conditions, function, function_version, meta, versioning
from kfn.operator import settings
from kfn.resources import deployment as deployment_builder
from kfn.resources import objects
from kfn.resources import versions as decide

logger = logging.getLogger(__name__)

API_VERSION = meta.API_VERSION


@dataclasses.dataclass(frozen=True)
class Published:
    """What the status says of versions after a reconcile."""

    records: list[versioning.VersionRecord]
    latest: int | None
    missing: list[str]
    """Aliases naming a version that does not exist, as ``alias -> N``."""

    def status_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if self.records:
            fields["versions"] = [
                r.model_dump(mode="json", by_alias=True, exclude_none=True) for r in self.records
            ]
        if self.latest is not None:
            fields["latestVersion"] = self.latest
        return fields


def existing(fn: function.Function) -> list[function_version.FunctionVersion]:
    """The Function's versions as stored (those that parse: a version is written by kfn only)."""
    selector = f"{objects.LABEL_FUNCTION}={fn.metadata.name}"
    found = []
    for body in kube.list_objects(
        API_VERSION, function_version.KIND, fn.metadata.namespace, selector
    ):
        try:
            found.append(function_version.FunctionVersion.model_validate(body))
        except pydantic.ValidationError as exc:
            logger.warning("ignoring a FunctionVersion that does not parse: %s", exc)
    return [v for v in found if v.spec.function == fn.metadata.name]


def _requested(fn: function.Function, versions: list[function_version.FunctionVersion]) -> str:
    """The publish annotation's value when no version has honoured it yet, else ''."""
    value = fn.metadata.annotations.get(versioning.PUBLISH_ANNOTATION, "")
    if not value:
        return ""
    honoured = {v.metadata.annotations.get(versioning.PUBLISH_ANNOTATION) for v in versions}
    return "" if value in honoured else value


def reconcile(fn: function.Function, image: str, source_hash: str) -> Published:
    """Publishes, runs and deletes versions of ``fn``, which now runs ``image`` as ``$LATEST``."""
    versions = existing(fn)
    request = _requested(fn, versions)
    publication = decide.to_publish(fn, image, versions, requested=bool(request))
    if publication is not None:
        body = decide.build_function_version(
            fn,
            publication,
            source_hash=source_hash if fn.spec.source.image is None else None,
            description=versioning.publish_description(request) if request else None,
        )
        if request:
            body["metadata"]["annotations"] = {versioning.PUBLISH_ANNOTATION: request}
        live = kube.apply(body)
        versions.append(function_version.FunctionVersion.model_validate(live))
    _run_routed(fn, versions)
    doomed = set(decide.to_delete(fn, versions))
    for name in sorted(doomed):
        kube.delete(API_VERSION, function_version.KIND, fn.metadata.namespace, name)
    kept = [v for v in versions if v.metadata.name not in doomed]
    for version in kept:
        _write_routed(fn, version)
    numbers = {v.spec.version for v in kept}
    missing = [
        f"{alias.name} -> {number}"
        for alias in fn.spec.aliases
        for number in _alias_versions(alias)
        if number not in numbers
    ]
    known = fn.status.latest_version if fn.status is not None else None
    latest = max([known or 0, *numbers]) or None
    return Published(decide.records(kept, limit=fn.spec.version_retention), latest, missing)


def _alias_versions(alias: versioning.Alias) -> list[int]:
    numbers = [alias.version]
    if alias.additional_version is not None:
        numbers.append(alias.additional_version.version)
    return numbers


def as_function(
    fn: function.Function, version: function_version.FunctionVersion
) -> function.Function:
    """``fn`` with the version's template as its spec: what the version's pods run."""
    return fn.model_copy(update={"spec": version.spec.template})


def _run_routed(fn: function.Function, versions: list[function_version.FunctionVersion]) -> None:
    """A Deployment for each routed version; none for the others."""
    ns = fn.metadata.namespace
    by_number = {v.spec.version: v for v in versions}
    wanted: dict[str, Mapping[str, Any]] = {}
    for number in sorted(decide.routed(fn)):
        version = by_number.get(number)
        if version is None:
            continue
        name = objects.version_name(fn, number)
        exists = kube.get("apps/v1", "Deployment", ns, name) is not None
        wanted[name] = deployment_builder.build_deployment(
            as_function(fn, version),
            image=version.spec.template.source.image or "",
            source_hash=version.spec.source_hash or "",
            initial_replicas=None if exists else 0,
            platform=settings.builds().platform,
            version=deployment_builder.Version(number),
        )
    for body in wanted.values():
        kube.apply_deployment(body)
    selector = (
        f"{objects.LABEL_FUNCTION}={fn.metadata.name},{objects.LABEL_VERSION},"
        f"{objects.LABEL_MANAGED_BY}={objects.MANAGER}"
    )
    for live in kube.list_objects("apps/v1", "Deployment", ns, selector):
        name = live.get("metadata", {}).get("name", "")
        if name not in wanted:
            kube.delete("apps/v1", "Deployment", ns, name)


def _write_routed(fn: function.Function, version: function_version.FunctionVersion) -> None:
    """The version's ``Routed`` condition, written when it changed."""
    updated = conditions.changed(
        version.status.conditions if version.status else [],
        decide.ROUTED,
        decide.routed_condition(fn, version.spec.version),
        now=clock.utcnow(),
        observed_generation=version.metadata.generation,
    )
    if updated is not None:
        _patch_conditions(
            function_version.KIND, fn.metadata.namespace, version.metadata.name, updated
        )


def refresh_rolled_out(body: Mapping[str, Any]) -> bool:
    """Writes the Function's ``RolledOut`` condition when what its aliases' rollouts say (in
    ``status.aliases``, written by the autoscaler) changed it; True if it wrote."""
    try:
        fn = function.Function.model_validate(dict(body))
    except pydantic.ValidationError:
        return False  # the reconciler says why in Ready
    updated = conditions.changed(
        fn.status.conditions if fn.status else [],
        function.ConditionType.ROLLED_OUT,
        decide.rolled_out(fn),
        now=clock.utcnow(),
        observed_generation=fn.metadata.generation,
    )
    if updated is None:
        return False
    _patch_conditions(function.KIND, fn.metadata.namespace, fn.metadata.name, updated)
    return True


def _patch_conditions(kind: str, namespace: str, name: str, updated: list[meta.Condition]) -> None:
    kube.patch_status(
        API_VERSION,
        kind,
        namespace,
        name,
        {"conditions": [c.model_dump(mode="json", by_alias=True) for c in updated]},
    )


_publish_seen: dict[tuple[str, str], str] = {}


def publish_requested(body: Mapping[str, Any]) -> bool:
    """Whether a Function's publish annotation changed since this operator last saw it (the
    first sight of each, at start-up, is not a change: resuming reconciles them all)."""
    meta_ = body.get("metadata") or {}
    key = (str(meta_.get("namespace", "")), str(meta_.get("name", "")))
    value = str((meta_.get("annotations") or {}).get(versioning.PUBLISH_ANNOTATION, ""))
    before = _publish_seen.get(key)
    _publish_seen[key] = value
    return before is not None and value != before and bool(value)


def forget(body: Mapping[str, Any]) -> None:
    meta_ = body.get("metadata") or {}
    _publish_seen.pop((str(meta_.get("namespace", "")), str(meta_.get("name", ""))), None)
