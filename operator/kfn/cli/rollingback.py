"""What ``kubectl kfn rollback`` decides (pure): which version to go back to, and the patch
that goes there.

**An alias** (``--alias A``) goes back to the version it served before its current one: the
``from`` of the rollout that moved it there (``status.aliases``, written by the autoscaler),
else the newest published version older than its current one. The alias then sends all its
traffic to that one version: its ``additionalVersion`` and ``rollout`` go (a rollout left in
place would move the alias back in steps). The patch is a JSON merge patch of
``spec.aliases`` whole (a merge patch replaces a list), every other alias as it was, in its
place.

**$LATEST** (no ``--alias``) goes back to a published version's code and configuration: the
Function's spec becomes the FunctionVersion's ``spec.template`` (its source the built image
by digest, so nothing is rebuilt), keeping what belongs to the Function rather than to one
version (:data:`FUNCTION_FIELDS`: publishing, retention, aliases, its URL and its scale
bounds, the fields a version's template leaves empty). That spec is sent by server-side
apply as ``kubectl-kfn`` (:func:`apply_body`), as deploy sends one, so a later deploy of the
folder replaces it whole (source.image goes, source.inline comes back). An apply removes
only fields its own manager set, though: when the dry run shows fields another manager set
that the spec lacks (:func:`leftovers`; a Function written with ``kubectl apply``, say), the
command sends the merge patch from the spec as it is instead (:func:`latest_patch`), which
removes them whoever set them.

Every write carries the ``resourceVersion`` it was computed from, so a Function changed in
between is refused (409) rather than overwritten; the command reads it again and retries once.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, Final

import pydantic

from kfn.api import function, versioning
from kfn.cli import errors, package

FUNCTION_FIELDS: Final = ("publish", "versionRetention", "aliases", "url", "scale")
"""The Function's own fields that a rollback of $LATEST keeps: a version's template leaves
them empty (``kfn.resources.versions.template``), as they are about the Function, not its code."""


def _spec(fn: Mapping[str, Any]) -> Mapping[str, Any]:
    found = fn.get("spec")
    return found if isinstance(found, Mapping) else {}


def _status(fn: Mapping[str, Any]) -> Mapping[str, Any]:
    found = fn.get("status")
    return found if isinstance(found, Mapping) else {}


def _name(fn: Mapping[str, Any]) -> str:
    return str((fn.get("metadata") or {}).get("name", ""))


def versions(fn: Mapping[str, Any]) -> list[int]:
    """The published versions that exist (``status.versions``), newest first."""
    found = [
        int(v["version"])
        for v in _status(fn).get("versions") or []
        if isinstance(v, Mapping) and isinstance(v.get("version"), int)
    ]
    return sorted(set(found), reverse=True)


def latest_version(fn: Mapping[str, Any]) -> int | None:
    found = _status(fn).get("latestVersion")
    return found if isinstance(found, int) else None


def older(numbers: Sequence[int], than: int) -> int | None:
    """The newest of ``numbers`` older than ``than``, or None."""
    return max((n for n in numbers if n < than), default=None)


def _known(fn: Mapping[str, Any], version: int) -> None:
    numbers = versions(fn)
    if version not in numbers:
        listed = ", ".join(str(n) for n in numbers) or "none"
        raise errors.CliError(
            f"function {_name(fn)} has no version {version} (its versions: {listed}): "
            f"pass --to with one of them (kubectl get functionversions -l "
            f"kfn.dev/function={_name(fn)})"
        )


# --- an alias ----------------------------------------------------------------------------------


def alias(fn: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The alias ``name`` of the Function's spec; CliError when it has none."""
    found = [a for a in _spec(fn).get("aliases") or [] if isinstance(a, Mapping)]
    for entry in found:
        if entry.get("name") == name:
            return entry
    names = ", ".join(str(a.get("name")) for a in found) or "none"
    raise errors.CliError(
        f'function {_name(fn)} has no alias "{name}" (its aliases: {names}): pass one of '
        "them to --alias, or leave --alias out to roll back $LATEST"
    )


def alias_status(fn: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    for entry in _status(fn).get("aliases") or []:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            return entry
    return None


def served_before(fn: Mapping[str, Any], name: str) -> int | None:
    """The version alias ``name`` served before its current one: the ``from`` of the rollout
    that moved it to its current version (running, promoted or rolled back), else the newest
    published version older than its current one; None when there is none."""
    current = int(alias(fn, name)["version"])
    state = (alias_status(fn, name) or {}).get("rollout")
    if isinstance(state, Mapping) and state.get("to") == current:
        source = state.get("from")
        if isinstance(source, int) and source != current:
            return source
    return older(versions(fn), current)


def alias_target(fn: Mapping[str, Any], name: str, to: int | None) -> int:
    """The version alias ``name`` goes back to: ``to``, else :func:`served_before`; CliError
    when that is no published version."""
    if to is None:
        found = served_before(fn, name)
        if found is None:
            current = alias(fn, name)["version"]
            raise errors.CliError(
                f"alias {name} of function {_name(fn)} is on version {current} and no older "
                f"version exists to roll back to: pass --to VERSION"
            )
        to = found
    _known(fn, to)
    return to


def alias_patch(fn: Mapping[str, Any], name: str, version: int) -> dict[str, Any] | None:
    """The merge patch pointing alias ``name`` at ``version`` alone (no additionalVersion,
    no rollout), every other alias as it was; None when the alias already is just that."""
    aliases = [copy.deepcopy(dict(a)) for a in _spec(fn).get("aliases") or []]
    for entry in aliases:
        if entry.get("name") == name:
            wanted = {"name": name, "version": version}
            if entry == wanted:
                return None
            entry.clear()
            entry.update(wanted)
            break
    else:
        alias(fn, name)  # raises, naming the aliases there are
    return {
        "metadata": {"resourceVersion": (fn.get("metadata") or {}).get("resourceVersion")},
        "spec": {"aliases": aliases},
    }


def alias_dropped(entry: Mapping[str, Any]) -> list[str]:
    """What a rollback of this alias removes besides its version, for the message."""
    dropped = []
    extra = entry.get("additionalVersion")
    if isinstance(extra, Mapping):
        dropped.append(
            f"additional version {extra.get('version')} at {extra.get('weight')} % removed"
        )
    if entry.get("rollout") is not None:
        dropped.append("rollout removed")
    return dropped


def alias_settled(fn: Mapping[str, Any], name: str, version: int) -> bool:
    """Whether the Function routes alias ``name`` to ``version`` alone: the operator took the
    spec, and ``status.aliases`` (which wins over the spec) has no other routing for it."""
    generation = (fn.get("metadata") or {}).get("generation") or 0
    observed = _status(fn).get("observedGeneration")
    if not isinstance(observed, int) or observed < generation:
        return False
    entry = alias_status(fn, name)
    if entry is None:
        return True
    routes = [
        (r.get("version"), r.get("weight"))
        for r in entry.get("routes") or []
        if isinstance(r, Mapping) and r.get("weight")
    ]
    return routes == [(version, 100)]


# --- $LATEST -----------------------------------------------------------------------------------


def latest_target(fn: Mapping[str, Any], to: int | None) -> int:
    """The version $LATEST goes back to: ``to``, else the newest published version older than
    ``status.latestVersion``; CliError when that is no published version."""
    if to is None:
        newest = latest_version(fn)
        found = older(versions(fn), newest) if newest is not None else None
        if found is None:
            if newest is None:
                why = "has no published version"
            else:
                why = f"has no version older than its latest, {newest}, to roll back to"
            raise errors.CliError(
                f"function {_name(fn)} {why}: pass --to VERSION with a version of "
                f"kubectl get functionversions -l kfn.dev/function={_name(fn)}"
            )
        to = found
    _known(fn, to)
    return to


def rolled_back_spec(fn: Mapping[str, Any], version: Mapping[str, Any]) -> dict[str, Any]:
    """The Function's spec running ``version`` (a FunctionVersion): its template, with the
    Function's own :data:`FUNCTION_FIELDS` as they are now; CliError if it is not valid."""
    template = (version.get("spec") or {}).get("template")
    if not isinstance(template, Mapping):
        raise errors.CliError(
            f"the FunctionVersion {(version.get('metadata') or {}).get('name')} has no "
            "spec.template to roll back to"
        )
    spec = {k: copy.deepcopy(v) for k, v in template.items() if k not in FUNCTION_FIELDS}
    current = _spec(fn)
    for key in FUNCTION_FIELDS:
        if key in current:
            spec[key] = copy.deepcopy(current[key])
    try:
        function.FunctionSpec.model_validate(spec)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(spec)'}: {e['msg']}" for e in exc.errors()
        )
        raise errors.CliError(
            f"version {(version.get('spec') or {}).get('version')}'s configuration with the "
            f"Function's own settings is not a valid spec ({problems}): edit the Function, "
            "or pass --to another version"
        ) from None
    return spec


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that makes ``old`` into ``new``: changed keys with
    their new values, maps patched key by key, keys ``new`` lacks set to null."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if key in old and before == value:
            continue
        if isinstance(before, Mapping) and isinstance(value, Mapping):
            patch[key] = merge_patch(before, value)
        else:
            patch[key] = copy.deepcopy(value)
    return patch


def latest_patch(fn: Mapping[str, Any], version: Mapping[str, Any]) -> dict[str, Any] | None:
    """The merge patch making the Function's spec :func:`rolled_back_spec`; None when it
    already is."""
    spec = rolled_back_spec(fn, version)
    change = merge_patch(_spec(fn), spec)
    if not change:
        return None
    return {
        "metadata": {"resourceVersion": (fn.get("metadata") or {}).get("resourceVersion")},
        "spec": change,
    }


def _applied_fields(fn: Mapping[str, Any], manager: str) -> Mapping[str, Any]:
    """``manager``'s ``Apply`` entry of ``metadata.managedFields`` (its ``fieldsV1``)."""
    for entry in (fn.get("metadata") or {}).get("managedFields") or []:
        if not isinstance(entry, Mapping):
            continue
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            found = entry.get("fieldsV1")
            return found if isinstance(found, Mapping) else {}
    return {}


def owned_metadata(fn: Mapping[str, Any], manager: str) -> dict[str, dict[str, Any]]:
    """The labels and annotations ``manager``'s server-side applies set, with their values
    now: what its next apply must send again to keep them."""
    meta = fn.get("metadata") or {}
    fields = _applied_fields(fn, manager).get("f:metadata") or {}
    found: dict[str, dict[str, Any]] = {}
    for key in ("labels", "annotations"):
        values = meta.get(key) or {}
        for owned in fields.get(f"f:{key}") or {}:
            name = str(owned).removeprefix("f:")
            if name in values:
                found.setdefault(key, {})[name] = values[name]
    return found


def apply_body(fn: Mapping[str, Any], spec: Mapping[str, Any], manager: str) -> dict[str, Any]:
    """The server-side apply of ``spec`` as ``manager``, against the ``resourceVersion`` read.

    The labels and annotations it applied before are sent again (but the source hash: the
    folder's code no longer runs), and of the Function's own :data:`FUNCTION_FIELDS` only
    those it applied before: the others stay as they are without the apply taking them over
    from whoever set them (a later apply of theirs would conflict with it)."""
    meta = fn.get("metadata") or {}
    kept = owned_metadata(fn, manager)
    kept.get("annotations", {}).pop(package.SOURCE_HASH_ANNOTATION, None)
    owned_spec = _applied_fields(fn, manager).get("f:spec") or {}
    sent = {
        key: copy.deepcopy(value)
        for key, value in spec.items()
        if key not in FUNCTION_FIELDS or f"f:{key}" in owned_spec
    }
    return {
        "apiVersion": fn.get("apiVersion"),
        "kind": fn.get("kind"),
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "resourceVersion": meta.get("resourceVersion"),
            **{key: values for key, values in kept.items() if values},
        },
        "spec": sent,
    }


def leftovers(would_be: Mapping[str, Any], spec: Mapping[str, Any]) -> list[str]:
    """The top-level fields where what an apply would make (its dry run) differs from
    ``spec`` (the whole spec wanted, not only what the apply sends): fields another manager
    set, which the apply leaves in place."""
    return sorted(merge_patch(_spec(would_be), spec))


def shown(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` as ``-o`` prints it: without ``metadata.managedFields``, as kubectl's."""
    found = dict(obj)
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    if meta:
        found["metadata"] = meta
    return found


def publish_mode(fn: Mapping[str, Any]) -> versioning.Publish:
    return versioning.Publish(_spec(fn).get("publish") or versioning.Publish.ALWAYS)
