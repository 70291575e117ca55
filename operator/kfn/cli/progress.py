"""What ``kubectl kfn deploy`` decides (pure): whether an apply would change anything, and how
far a Function has got from its spec to serving it.

**Unchanged.** Deploy asks the API server what each object would become (a server-side apply
with ``dryRun=All``, which applies the CRD's defaults and drops the fields deploy set before
and no longer sends) and compares that with the object as it is: the same spec, labels and
annotations (the ``kfn.dev/source-hash`` annotation among them, the code's hash) means there
is nothing to apply (:func:`changes`).

**Progress.** The operator reports on a Function in its conditions (``SourceReady``,
``BuildSucceeded``, ``Deployed``, summed up in ``Ready``), each for the generation it saw
(:func:`state`): until ``status.observedGeneration`` reaches the Function's generation, what
the conditions say is about an older spec. ``Unknown`` is work under way (``Building`` names
the build Job in its message: ``build <job> running``), ``False`` a failure a person must fix.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, Final, Literal

_BUILD_JOB: Final = re.compile(r"^build (\S+) ")
_PARTS: Final = ("SourceReady", "BuildSucceeded", "Deployed")

Phase = Literal["waiting", "building", "deploying", "ready", "failed"]


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    found = obj.get("metadata")
    return found if isinstance(found, Mapping) else {}


def changes(live: Mapping[str, Any] | None, would_be: Mapping[str, Any]) -> list[str]:
    """What an apply would change of ``live`` (the object as it is; None: it does not exist)
    to make it ``would_be`` (the dry run's answer): ``created``, or some of ``spec``,
    ``labels``, ``annotations`` (and ``data`` for ConfigMaps and Secrets); empty when nothing."""
    if live is None:
        return ["created"]
    found = []
    for key in ("spec", "data", "stringData", "binaryData"):
        if live.get(key) != would_be.get(key):
            found.append(key)
    for key in ("labels", "annotations"):
        if (_meta(live).get(key) or {}) != (_meta(would_be).get(key) or {}):
            found.append(key)
    return found


def condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    status = obj.get("status")
    if not isinstance(status, Mapping):
        return None
    for item in status.get("conditions") or []:
        if isinstance(item, Mapping) and item.get("type") == type_:
            return item
    return None


@dataclasses.dataclass(frozen=True)
class State:
    """Where a Function is: its phase, what the operator says, and the build Job running."""

    phase: Phase
    message: str
    job: str | None = None

    @property
    def done(self) -> bool:
        return self.phase in ("ready", "failed")


def build_job(message: str) -> str | None:
    """The build Job a ``Building`` message names (``build <job> running``), or None."""
    found = _BUILD_JOB.match(message)
    return found.group(1) if found else None


def state(fn: Mapping[str, Any]) -> State:
    """How far the Function has got with its current spec."""
    generation = _meta(fn).get("generation") or 0
    status = fn.get("status") if isinstance(fn.get("status"), Mapping) else {}
    observed = (status or {}).get("observedGeneration")
    if observed is None or observed < generation:
        return State("waiting", f"waiting for the operator to take generation {generation}")
    for part in _PARTS:
        found = condition(fn, part)
        if found is not None and found.get("status") == "False":
            reason = found.get("reason", "")
            return State("failed", f"{part} is False ({reason}): {found.get('message', '')}")
    build = condition(fn, "BuildSucceeded") or {}
    if build.get("status") != "True":
        message = str(build.get("message") or "waiting for the build")
        job = build_job(message) if build.get("reason") == "Building" else None
        return State("building", message, job)
    ready = condition(fn, "Ready") or {}
    if ready.get("status") == "True":
        return State("ready", str(ready.get("message") or "Ready"))
    deployed = condition(fn, "Deployed") or {}
    return State("deploying", str(deployed.get("message") or ready.get("message") or "deploying"))
