"""What ``kubectl kfn describe`` prints (pure): a Function, its Triggers, its last build, its
Events and its pods, from the objects the command read, with the time passed in."""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from kfn.cli import progress

BUILD_TAIL_LINES: Final = 20
TRIGGER_KINDS: Final = ("http", "cron", "stream", "bucket")
_NONE: Final = "<none>"


_SAMPLE: Final = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}\s+(\S+)")
_LABEL: Final = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclasses.dataclass(frozen=True)
class Figures:
    """A function's invocations as the activators counted them, summed over the activators
    (each counts from its own start)."""

    activators: int
    invocations: float = 0.0
    errors: Mapping[str, float] = dataclasses.field(default_factory=dict)
    cold_starts: float = 0.0
    duration_sum: float = 0.0
    duration_count: float = 0.0
    in_flight: float = 0.0

    def line(self) -> str:
        errors = sum(self.errors.values())
        kinds = ", ".join(f"{v:.0f} {k}" for k, v in sorted(self.errors.items()) if v)
        text = f"Invocations:  {self.invocations:.0f}, {errors:.0f} errors"
        if kinds:
            text += f" ({kinds})"
        text += f", {self.cold_starts:.0f} cold starts"
        if self.duration_count:
            text += f", handler mean {self.duration_sum / self.duration_count * 1000:.1f} ms"
        text += f", {self.in_flight:.0f} in flight"
        return f"{text} (counted by {self.activators} activator(s) since each started)"


def figures(pages: Sequence[str], namespace: str, function: str) -> Figures:
    """The function's figures from the activators' ``/metrics`` pages (Prometheus text)."""
    totals: dict[str, float] = {}
    errors: dict[str, float] = {}
    for page in pages:
        for raw in page.splitlines():
            found = _SAMPLE.match(raw)
            if found is None:
                continue
            name, labels_text, value = found.groups()
            labels = dict(_LABEL.findall(labels_text))
            if labels.get("namespace") != namespace or labels.get("function") != function:
                continue
            try:
                number = float(value)
            except ValueError:
                continue
            if name == "kfn_function_errors_total":
                kind = labels.get("kind", "")
                errors[kind] = errors.get(kind, 0.0) + number
            totals[name] = totals.get(name, 0.0) + number
    return Figures(
        activators=len(pages),
        invocations=totals.get("kfn_function_invocations_total", 0.0),
        errors=errors,
        cold_starts=totals.get("kfn_function_cold_starts_total", 0.0),
        duration_sum=totals.get("kfn_function_duration_seconds_sum", 0.0),
        duration_count=totals.get("kfn_function_duration_seconds_count", 0.0),
        in_flight=totals.get("kfn_function_concurrent_executions", 0.0),
    )


@dataclasses.dataclass(frozen=True)
class View:
    """Everything describe shows of one Function, as read from the cluster."""

    function: Mapping[str, Any]
    triggers: Sequence[Mapping[str, Any]] = ()
    events: Sequence[Mapping[str, Any]] = ()
    deployment: Mapping[str, Any] | None = None
    build_log: str | None = None
    """The last build's log tail (the build pod's, else the failed condition's message)."""
    build_job: str | None = None
    figures: Figures | None = None
    notes: Sequence[str] = ()
    """Lines about what could not be read (``Invocations: not shown (...)``)."""

    def objects(self) -> dict[str, Any]:
        """The raw objects, for ``-o json|yaml``."""
        return {
            "function": dict(self.function),
            "triggers": [dict(t) for t in self.triggers],
            "events": [dict(e) for e in self.events],
            "deployment": dict(self.deployment) if self.deployment is not None else None,
            "build": {"job": self.build_job, "logTail": self.build_log},
            "invocations": dataclasses.asdict(self.figures) if self.figures else None,
        }


def _get(obj: Mapping[str, Any] | None, *path: str) -> Any:
    found: Any = obj
    for key in path:
        if not isinstance(found, Mapping):
            return None
        found = found.get(key)
    return found


def age(then: str | None, now: datetime.datetime) -> str:
    """An age as kubectl shows one (``45s``, ``12m``, ``3h``, ``2d``), or ``<unknown>``."""
    if not then:
        return "<unknown>"
    try:
        when = datetime.datetime.fromisoformat(then.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = max(0, int((now - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * 2:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        out.append((indent + "   ".join([*cells, row[-1]])).rstrip())
    return out


def source_summary(spec: Mapping[str, Any], annotations: Mapping[str, Any]) -> str:
    source = spec.get("source") or {}
    if source.get("inline"):
        files = source["inline"].get("files") or []
        digest = annotations.get("kfn.dev/source-hash")
        hashed = f", source hash {str(digest)[:12]}" if digest else ""
        return f"inline, {len(files)} file(s){hashed}"
    if source.get("configMapRef"):
        return f"ConfigMap {source['configMapRef'].get('name')}"
    if source.get("archive"):
        return f"archive {source['archive'].get('url')}"
    if source.get("image"):
        return f"image {source['image']}"
    return _NONE


def trigger_kind(trigger: Mapping[str, Any]) -> str:
    spec = trigger.get("spec") or {}
    for kind in TRIGGER_KINDS:
        if spec.get(kind) is not None:
            return kind
    return "?"


def _function_lines(fn: Mapping[str, Any]) -> list[str]:
    spec = fn.get("spec") or {}
    status = fn.get("status") or {}
    annotations = _get(fn, "metadata", "annotations") or {}
    scale = spec.get("scale") or {}
    limits = _get(spec, "resources", "limits") or {}
    fields = [
        ("Name", _get(fn, "metadata", "name")),
        ("Namespace", _get(fn, "metadata", "namespace")),
        ("Runtime", spec.get("runtime") or _NONE),
        ("Handler", spec.get("handler") or _NONE),
        ("Source", source_summary(spec, annotations)),
        ("Image", status.get("image") or _NONE),
        ("Timeout", spec.get("timeout") or _NONE),
        ("Memory", limits.get("memory") or _NONE),
        ("Concurrency", spec.get("concurrency") or _NONE),
        (
            "Scale",
            f"{scale.get('minReplicas', 0)} to {scale.get('maxReplicas', '?')} pods, "
            f"idle after {scale.get('idleTimeout', '?')}",
        ),
        ("Invoke URL", status.get("url") or _NONE),
        ("Function URL", status.get("functionUrl") or _NONE),
        (
            "Generation",
            f"{_get(fn, 'metadata', 'generation')} "
            f"(observed {status.get('observedGeneration', _NONE)})",
        ),
    ]
    width = max(len(name) for name, _ in fields) + 2
    return [f"{(name + ':').ljust(width)}{value}" for name, value in fields]


def _conditions(fn: Mapping[str, Any], now: datetime.datetime) -> list[str]:
    found = _get(fn, "status", "conditions") or []
    if not found:
        return ["Conditions:  <none>"]
    rows = [["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]]
    for c in found:
        message = " ".join(str(c.get("message", "")).split())
        rows.append(
            [
                str(c.get("type", "")),
                str(c.get("status", "")),
                str(c.get("reason", "")),
                age(c.get("lastTransitionTime"), now),
                message,
            ]
        )
    return ["Conditions:", *_table(rows)]


def _versions(fn: Mapping[str, Any], now: datetime.datetime) -> list[str]:
    found = _get(fn, "status", "versions") or []
    if not found:
        return ["Versions:  <none>"]
    rows = [["VERSION", "PUBLISHED", "IMAGE"]]
    for v in found:
        image = str(v.get("image", ""))
        rows.append([str(v.get("version", "")), age(v.get("published"), now), image[-24:]])
    latest = _get(fn, "status", "latestVersion")
    return [f"Versions:  latest {latest}" if latest else "Versions:", *_table(rows)]


def _routes(routes: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"{r.get('version')} ({r.get('weight')} %)" for r in routes)


def _aliases(fn: Mapping[str, Any]) -> list[str]:
    wanted = _get(fn, "spec", "aliases") or []
    if not wanted:
        return ["Aliases:  <none>"]
    moved = {str(a.get("name")): a for a in _get(fn, "status", "aliases") or []}
    rows = [["ALIAS", "ROUTES", "ROLLOUT"]]
    for alias in wanted:
        name = str(alias.get("name", ""))
        routes: list[Mapping[str, Any]] = [{"version": alias.get("version"), "weight": 100}]
        extra = alias.get("additionalVersion")
        if extra:
            routes = [
                {"version": alias.get("version"), "weight": 100 - int(extra.get("weight", 0))},
                extra,
            ]
        state = moved.get(name) or {}
        routes = state.get("routes") or routes
        rollout = state.get("rollout") or {}
        told = ""
        if rollout:
            told = f"{rollout.get('outcome')} {rollout.get('from')} -> {rollout.get('to')}"
            if rollout.get("message"):
                told += ": " + " ".join(str(rollout["message"]).split())
        rows.append([name, _routes(routes), told])
    return ["Aliases:", *_table(rows)]


def _triggers(triggers: Sequence[Mapping[str, Any]]) -> list[str]:
    if not triggers:
        return ["Triggers:  <none>"]
    rows = [["NAME", "KIND", "READY", "REASON", "MESSAGE"]]
    for t in triggers:
        ready = progress.condition(t, "Ready") or {}
        rows.append(
            [
                str(_get(t, "metadata", "name")),
                trigger_kind(t),
                str(ready.get("status", "Unknown")),
                str(ready.get("reason", "")),
                " ".join(str(ready.get("message", "")).split()),
            ]
        )
    return ["Triggers:", *_table(rows)]


def _replicas(view: View) -> str:
    status = view.function.get("status") or {}
    dep = view.deployment
    wanted = _get(dep, "spec", "replicas") if dep is not None else None
    have = status.get("replicas", 0) or 0
    ready = status.get("readyReplicas", 0) or 0
    if dep is None:
        return "Replicas:  no Deployment yet"
    return f"Replicas:  {wanted or 0} desired, {have} running, {ready} ready"


def _build(view: View) -> list[str]:
    build = progress.condition(view.function, "BuildSucceeded") or {}
    head = f"Build:  {build.get('reason', _NONE)}"
    if view.build_job:
        head += f" (Job {view.build_job})"
    lines = [head]
    tail = (view.build_log or "").rstrip("\n").splitlines()[-BUILD_TAIL_LINES:]
    lines.extend(f"  {line}" for line in tail)
    return lines


def event_time(event: Mapping[str, Any]) -> str:
    """When an Event was last seen (its ``lastTimestamp``, ``eventTime`` or creation)."""
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or _get(event, "metadata", "creationTimestamp")
        or ""
    )


def _events(events: Sequence[Mapping[str, Any]], now: datetime.datetime) -> list[str]:
    if not events:
        return ["Events:  <none>"]
    rows = [["LAST SEEN", "TYPE", "REASON", "MESSAGE"]]
    for e in sorted(events, key=event_time):
        count = e.get("count") or 1
        seen = age(event_time(e) or None, now) + (f" (x{count})" if count > 1 else "")
        rows.append(
            [
                seen,
                str(e.get("type", "")),
                str(e.get("reason", "")),
                " ".join(str(e.get("message", "")).split()),
            ]
        )
    return ["Events:", *_table(rows)]


def render(view: View, now: datetime.datetime) -> str:
    """The description, as ``kubectl describe`` lays one out."""
    lines = [
        *_function_lines(view.function),
        _replicas(view),
        *_conditions(view.function, now),
        *_versions(view.function, now),
        *_aliases(view.function),
        *_triggers(view.triggers),
        *_build(view),
        *_events(view.events, now),
        *([view.figures.line()] if view.figures else []),
        *view.notes,
    ]
    return "\n".join(lines) + "\n"


def related_triggers(
    triggers: Sequence[Mapping[str, Any]], function: str
) -> list[Mapping[str, Any]]:
    """The Triggers whose ``functionRef`` names the function (any qualifier), by name."""
    found = []
    for t in triggers:
        ref = str(_get(t, "spec", "functionRef", "name") or "")
        if ref.split(":", 1)[0] == function:
            found.append(t)
    return sorted(found, key=lambda t: str(_get(t, "metadata", "name")))
