"""Published versions of a Function: what one records, when to publish, what to keep.

Pure: the operator passes the Function, the image it deployed and the versions that exist, and
applies what these functions return (``docs/design/versions.md``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any, Final

from kfn.api import function, function_version, meta, versioning
from kfn.resources import objects


def template(fn: function.Function, image: str) -> function.FunctionSpec:
    """The configuration a version records: the Function's spec with the built image as its
    source, and none of what belongs to the Function rather than to one version (aliases,
    publishing, retention, its URL and its scale bounds)."""
    spec = fn.spec.model_copy(
        update={
            "source": function.FunctionSource(image=image),
            "dependencies": [],
            "layers": [],
            "aliases": [],
            "publish": versioning.Publish.ALWAYS,
            "version_retention": versioning.DEFAULT_VERSION_RETENTION,
            "url": None,
            "scale": function.Scale(),
        }
    )
    return function.FunctionSpec.model_validate(spec.model_dump(by_alias=True))


def config_hash(spec: function.FunctionSpec) -> str:
    """SHA-256 of a template: two versions differ exactly when their templates do."""
    canonical = json.dumps(
        spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class Publication:
    """A version to create: its number, its template and that template's hash."""

    number: int
    template: function.FunctionSpec
    config_hash: str


def to_publish(
    fn: function.Function,
    image: str,
    versions: Sequence[function_version.FunctionVersion],
    *,
    requested: bool,
) -> Publication | None:
    """The version to publish for ``fn`` now running ``image``, or None.

    With ``publish: Always`` a version is published whenever the running template differs from
    the newest version's; with ``OnRequest`` only when ``requested`` (the publish annotation
    changed) and it differs. Numbers continue from ``status.latestVersion``, so a deleted
    version's number is never taken again.
    """
    wanted = template(fn, image)
    digest = config_hash(wanted)
    newest = max(versions, key=lambda v: v.spec.version, default=None)
    if newest is not None and newest.spec.config_hash == digest:
        return None
    if fn.spec.publish is versioning.Publish.ON_REQUEST and not requested:
        return None
    known = fn.status.latest_version if fn.status is not None else None
    highest = max([known or 0, *(v.spec.version for v in versions)])
    return Publication(highest + 1, wanted, digest)


def build_function_version(
    fn: function.Function,
    publication: Publication,
    *,
    source_hash: str | None,
    description: str | None = None,
) -> dict[str, Any]:
    """The FunctionVersion object of ``publication``, owned by ``fn``."""
    name = function_version.object_name(fn.metadata.name, publication.number)
    spec = function_version.FunctionVersionSpec(
        function=fn.metadata.name,
        version=publication.number,
        config_hash=publication.config_hash,
        source_hash=source_hash,
        description=description,
        template=publication.template,
    )
    return {
        "apiVersion": meta.API_VERSION,
        "kind": function_version.KIND,
        "metadata": {
            "name": name,
            "namespace": fn.metadata.namespace,
            "labels": {**objects.labels_for(fn), objects.LABEL_VERSION: str(publication.number)},
            "ownerReferences": [objects.owner_reference(fn)],
        },
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


def routes_by_alias(fn: function.Function) -> dict[str, set[int]]:
    """The versions each alias routes to: its version and additional version, and both ends of
    a rollout the status records as under way (it may still send traffic back)."""
    found: dict[str, set[int]] = {}
    for alias in fn.spec.aliases:
        numbers = found.setdefault(alias.name, {alias.version})
        if alias.additional_version is not None:
            numbers.add(alias.additional_version.version)
    for state in (fn.status.aliases if fn.status is not None else None) or []:
        numbers = found.setdefault(state.name, set())
        numbers.update(route.version for route in state.routes)
        if state.rollout is not None and state.rollout.outcome == "Progressing":
            numbers.update((state.rollout.from_version, state.rollout.to_version))
    return found


def routed(fn: function.Function) -> set[int]:
    """Versions something routes to (:func:`routes_by_alias`)."""
    return set().union(*routes_by_alias(fn).values())


def to_delete(
    fn: function.Function, versions: Iterable[function_version.FunctionVersion]
) -> list[str]:
    """Names of the versions beyond ``spec.versionRetention``, oldest first, sparing every
    routed version (they do not count against the retention either way)."""
    keep = routed(fn)
    candidates = sorted(
        (v for v in versions if v.spec.version not in keep),
        key=lambda v: v.spec.version,
        reverse=True,
    )
    return [v.metadata.name for v in reversed(candidates[fn.spec.version_retention :])]


def records(
    versions: Iterable[function_version.FunctionVersion], *, limit: int
) -> list[versioning.VersionRecord]:
    """The status's list of versions, newest first."""
    newest_first = sorted(versions, key=lambda v: v.spec.version, reverse=True)[:limit]
    return [
        versioning.VersionRecord(
            version=v.spec.version,
            image=v.spec.template.source.image or "",
            config_hash=v.spec.config_hash,
            published=v.metadata.creation_timestamp or "",
        )
        for v in newest_first
    ]


def rolled_out(fn: function.Function) -> tuple[meta.ConditionStatus, str, str] | None:
    """The ``RolledOut`` condition (status, reason, message) from the rollouts of the aliases
    the spec still has, worst first: a rollback (False), a rollout under way (Unknown), all
    promoted (True); None when no alias has a rollout."""
    wanted = {alias.name: alias for alias in fn.spec.aliases or [] if alias.rollout}
    found = [
        (alias.name, alias.rollout)
        for alias in (fn.status.aliases or [] if fn.status else [])
        if alias.name in wanted and alias.rollout is not None
        and alias.rollout.to_version == wanted[alias.name].version
    ]  # fmt: skip
    if not found:
        return None
    back = [f"alias {name}: {r.message or f'version {r.to_version} rolled back'}"
            for name, r in found if r.outcome == "RolledBack"]  # fmt: skip
    if back:
        return (
            "False",
            function.Reason.ROLLED_BACK,
            "; ".join(back) + " (the alias serves its old version; set the alias's version to "
            "the old one to stop, or publish a fixed version and point the alias at it)",
        )
    moving = [f"alias {name}: {r.message or f'moving to version {r.to_version}'}"
              for name, r in found if r.outcome == "Progressing"]  # fmt: skip
    if moving:
        return "Unknown", function.Reason.ROLLOUT_PROGRESSING, "; ".join(moving)
    done = ", ".join(f"alias {name} serves version {r.to_version}" for name, r in found)
    return "True", function.Reason.ROLLOUT_PROMOTED, done


ROUTED: Final = "Routed"
"""A FunctionVersion's condition: whether an alias routes to it."""


def routed_condition(fn: function.Function, number: int) -> tuple[meta.ConditionStatus, str, str]:
    """Version ``number``'s ``Routed`` condition (status, reason, message): the aliases that
    route to it."""
    names = [name for name, numbers in routes_by_alias(fn).items() if number in numbers]
    if names:
        return "True", "Alias", ", ".join(f"alias {name}" for name in names)
    return (
        "False",
        "NotRouted",
        "no alias routes to it, so it runs no pods; point an alias at it to serve it",
    )
