"""``kubectl kfn describe``: a Function and what is around it, in one page."""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Any, Final

from kfn.cli import cluster, describing, door, errors, output, parser, progress

_DESCRIPTION = """\
Show a Function: its spec in short, its conditions with their reasons and messages, the
Triggers that invoke it and whether they are Ready, its last build (and the tail of the
build's log while its pod is there, else the failure's message), its pods, its recent
Events, and its invocations as the activators counted them (their metrics, read through a
port-forward to each). What cannot be read (no right to list Events, say) is skipped with a
line saying so.

-o json|yaml prints the objects themselves: the Function, its Triggers, its Events, its
Deployment, the build's log tail and the invocation figures."""

_EXAMPLES = """\
  # Why is hello not Ready?
  kubectl kfn describe hello

  # Everything, as YAML
  kubectl kfn describe hello -n team-a -o yaml"""

BUILD_LOG_LINES: Final = 40
BUILD_LOG_BYTES: Final = 64 * 1024


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="FUNCTION", help="the Function's name")
    parser.add_output_option(p, "the objects")


def _build(kube: cluster.Cluster, fn: dict[str, Any], name: str) -> tuple[str | None, str | None]:
    """The last build Job's name and the tail of its pod's log (of its failed step, else its
    last one), else the failure's message from the condition."""
    condition = progress.condition(fn, "BuildSucceeded") or {}
    job = progress.build_job(str(condition.get("message", "")))
    if job is None:
        jobs = kube.list(
            cluster.path("batch/v1", "Job", kube.namespace),
            labels=f"kfn.dev/function={name},app.kubernetes.io/component=build",
        )
        jobs.sort(key=lambda j: str(j["metadata"].get("creationTimestamp", "")))
        job = jobs[-1]["metadata"]["name"] if jobs else None
    failed = str(condition.get("message", "")) if condition.get("status") == "False" else None
    if job is None:
        return None, failed
    pods = kube.list(
        cluster.path("v1", "Pod", kube.namespace), labels=f"batch.kubernetes.io/job-name={job}"
    )
    if not pods:
        return job, failed
    pod = pods[-1]
    statuses = [
        *((pod.get("status") or {}).get("initContainerStatuses") or []),
        *((pod.get("status") or {}).get("containerStatuses") or []),
    ]
    ran = [
        s
        for s in statuses
        if "running" in (s.get("state") or {}) or "terminated" in (s.get("state") or {})
    ]
    if not ran:
        return job, failed
    bad = [
        s for s in ran if ((s.get("state") or {}).get("terminated") or {}).get("exitCode", 0) != 0
    ]
    container = (bad or ran)[-1 if not bad else 0]["name"]
    try:
        lines = list(
            kube.log_lines(
                kube.namespace,
                pod["metadata"]["name"],
                container,
                tail=BUILD_LOG_LINES,
                limit_bytes=BUILD_LOG_BYTES,
            )
        )
    except cluster.ApiError:
        return job, failed
    return job, "\n".join(f"[build/{container}] {line}" for line in lines) or failed


def _figures(kube: cluster.Cluster, name: str) -> describing.Figures | str:
    """The activators' figures for the function, or why they could not be read."""
    try:
        pages = door.Door.find(kube, None).metrics()
    except errors.CliError as exc:
        return f"the activators' metrics could not be read: {exc}"
    except OSError as exc:
        return f"the activators' metrics could not be read: {exc.__class__.__name__}: {exc}"
    if not pages:
        return "no activator answered on its metrics port"
    return describing.figures(pages, kube.namespace, name)


def run(args: argparse.Namespace) -> int:
    kube = cluster.Cluster.connect(args)
    name = args.name
    fn = kube.function(name)
    notes: list[str] = []
    ns = kube.namespace

    def read(what: str, call: Any) -> Any:
        try:
            return call()
        except cluster.ApiError as exc:
            notes.append(f"{what}: not shown ({exc})")
            return None

    triggers = (
        read("Triggers", lambda: kube.list(cluster.path("kfn.dev/v1alpha1", "Trigger", ns))) or []
    )
    events = (
        read(
            "Events",
            lambda: kube.list(
                cluster.path("v1", "Event", ns),
                fields=f"involvedObject.name={name},involvedObject.kind=Function",
            ),
        )
        or []
    )
    deployment = read(
        "Deployment", lambda: kube.get(cluster.path("apps/v1", "Deployment", ns, name))
    )
    build = read("Build", lambda: _build(kube, fn, name)) or (None, None)
    found = _figures(kube, name)
    if isinstance(found, str):
        notes.append(f"Invocations: not shown ({found})")
    view = describing.View(
        function=fn,
        triggers=describing.related_triggers(triggers, name),
        events=sorted(events, key=describing.event_time)[-20:],
        deployment=deployment,
        build_job=build[0],
        build_log=build[1],
        figures=found if isinstance(found, describing.Figures) else None,
        notes=notes,
    )
    if args.output:
        sys.stdout.write(output.render(view.objects(), args.output))
        return 0
    sys.stdout.write(describing.render(view, datetime.datetime.now(datetime.UTC)))
    return 0


COMMAND = parser.Command(
    name="describe",
    summary="Show a function: conditions, triggers, last build, events",
    description=_DESCRIPTION,
    examples=_EXAMPLES,
    add_arguments=add_arguments,
    run=run,
)
