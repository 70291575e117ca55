"""Turning a Function's source into an image: build it, or take the image kfn built before.

Level-based like the rest of the reconcile: every call looks at the Function's build records,
the registry and the build Job as they are now and decides.

* An archive URL that names a refused address by itself (a literal loopback, link-local or
  metadata address, or a metadata service's name) fails the build at once, without a Job
  (:func:`kfn.resources.build.archive_refusal`); the builder checks every address a name
  resolves to.
* The namespace's registry credential is made sure of first (:mod:`kfn.operator.credentials`);
  the registry is asked with it, as the build Job will push with it.
* The Function's status records an image kfn built for this build hash
  (:mod:`kfn.resources.provenance`) → use it, by digest, once the registry confirms it still
  holds it (if it lost it, build again). An unchanged Function is never rebuilt. A tag in the
  registry is never taken as a build: anyone who can push there could have put it there.
* Else the Job named by the build hash exists → Building; BuildFailed with the tail of its
  error (read from the failed step's termination message); or, once it succeeded, the digest
  its build container reported, which is recorded in the status.
* Else start it (its source ConfigMap first, the recorded dependency layers in its
  environment), unless ``KFN_MAX_CONCURRENT_BUILDS`` builds already run cluster-wide: then the
  Function waits, and is looked at again shortly.

While a build runs or after it failed, the image the Function ran before (``status.image``)
keeps serving.

Each build Job the operator sees finish is recorded once in the build metrics
(:func:`observe_finished`, :func:`report`): the phases of a build that succeeded, timed by the
builder itself where it can (its termination message), else by the step's container; the
phase a failed build failed in.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from kfn import kube, oci, urls
from kfn.api import function
from kfn.operator import credentials, metrics, settings
from kfn.resources import build, objects, provenance, source, status

#: How soon a Function waiting for a build slot, or for the registry, is looked at again.
RETRY_SECONDS = 5.0
#: How soon after a refused or missing credential (something a person fixes) to look again.
CREDENTIALS_RETRY_SECONDS = 30.0


@dataclasses.dataclass(frozen=True)
class Resolution:
    """How the source resolved: the conditions, the image to run and whether it is new."""

    source: status.Verdict
    build: status.Verdict
    image: str | None
    source_hash: str
    current: bool
    """True when ``image`` is built from the current spec; False when it is the previous one."""
    retry_after: float | None = None
    records: provenance.Records | None = None
    """The build records to write, when they changed; None keeps those in the status."""


def _files(fn: function.Function) -> dict[str, bytes] | str | None:
    """The source files (inline or from the ConfigMap), None for an archive, or why not."""
    if fn.spec.source.config_map_ref is not None:
        name = fn.spec.source.config_map_ref.name
        found = kube.get("v1", "ConfigMap", fn.metadata.namespace, name)
        if found is None:
            return f"ConfigMap {name} not found in namespace {fn.metadata.namespace}"
        files = build.config_map_files(found)
        if not files:
            return f"ConfigMap {name} holds no files"
        return files
    return build.source_files(fn)


@dataclasses.dataclass(frozen=True)
class _Build:
    """What one resolve knows of the build it is looking at."""

    fn: function.Function
    hash_: str
    source_ok: status.Verdict
    old: str | None
    hash_src: str
    records: provenance.Records

    def resolution(
        self,
        verdict: status.Verdict,
        retry_after: float | None = None,
        records: provenance.Records | None = None,
    ) -> Resolution:
        """The previous image keeps serving under ``verdict``."""
        return Resolution(
            self.source_ok, verdict, self.old, self.hash_src, False, retry_after, records
        )

    def built(self, image: str, records: provenance.Records | None = None) -> Resolution:
        verdict = status.Verdict("True", function.Reason.BUILT, f"image {image}")
        return Resolution(self.source_ok, verdict, image, self.hash_src, True, None, records)


def resolve(fn: function.Function, known: function.FunctionStatus) -> Resolution:
    """Finds or builds the image of ``fn``'s current source (which is not ``source.image``);
    ``known`` is the Function's status as last written, with its build records."""
    cfg = settings.builds()
    old = known.image
    files = _files(fn)
    if isinstance(files, str):
        missing = status.Verdict("False", function.Reason.SOURCE_NOT_FOUND, files)
        return Resolution(missing, missing, old, known.source_hash or "", False, RETRY_SECONDS * 6)
    hash_src = source.source_hash(fn, files if fn.spec.source.config_map_ref else None)
    source_ok = status.Verdict("True", function.Reason.SOURCE_RESOLVED, _describe_source(fn))
    hash_ = build.build_hash(fn, hash_src, cfg)
    this = _Build(fn, hash_, source_ok, old, hash_src, provenance.Records.of(known))
    refused = build.archive_refusal(fn, cfg)
    if refused is not None:
        return this.resolution(status.Verdict("False", function.Reason.BUILD_FAILED, refused))
    missing_credentials = credentials.ensure(fn)
    if missing_credentials is not None:
        return this.resolution(missing_credentials, CREDENTIALS_RETRY_SECONDS)
    recorded = this.records.image(hash_)
    if recorded is not None:
        return _recorded(this, recorded)
    job = kube.get("batch/v1", "Job", fn.metadata.namespace, build.job_name(fn, hash_))
    if job is not None:
        return _from_job(this, job)
    return _start(this, files)


def _ask_registry(this: _Build, ref: oci.Reference) -> tuple[bool, Resolution | None]:
    """Whether the registry holds ``ref``, asked with the namespace's credential, or the
    resolution when it refused the credential or could not be reached."""
    try:
        found = credentials.registry_client(this.fn.metadata.namespace).descriptor(ref)
    except oci.RegistryAuthError as exc:
        refused = status.Verdict("False", function.Reason.REGISTRY_REFUSED, str(exc))
        return False, this.resolution(refused, CREDENTIALS_RETRY_SECONDS)
    except oci.RegistryError as exc:
        waiting = status.Verdict(
            "Unknown", function.Reason.BUILDING, f"registry unreachable: {exc}"
        )
        return False, this.resolution(waiting, RETRY_SECONDS)
    return found is not None, None


def _recorded(this: _Build, image: str) -> Resolution:
    """The image kfn built for this hash, while the registry holds it; else build again."""
    found, answer = _ask_registry(this, oci.Reference.parse(image))
    if answer is not None and answer.build.reason == function.Reason.REGISTRY_REFUSED:
        return answer  # the pods could not pull it either
    if found or answer is not None:
        return this.built(image)  # held, or the registry is unreachable: the record stands
    name = build.job_name(this.fn, this.hash_)
    kube.delete("batch/v1", "Job", this.fn.metadata.namespace, name)
    lost = _building(name, f"to start again: the registry no longer holds {image}")
    return this.resolution(lost, 1.0, this.records.without(this.hash_))


def _from_job(this: _Build, job: Mapping[str, Any]) -> Resolution:
    """The state of the build Job of this hash, which has no record (yet)."""
    ns, name = this.fn.metadata.namespace, job["metadata"]["name"]
    if job["metadata"].get("deletionTimestamp"):
        # Going (its Function was deleted, or its result was lost): a new one takes its name.
        return this.resolution(_building(name, "waiting for the previous Job to go"), 1.0)
    outcome = build.finished(job)
    if outcome is None:
        return this.resolution(_building(name, "running"))
    pods = kube.list_objects("v1", "Pod", ns, f"batch.kubernetes.io/job-name={name}")
    if outcome == "failed":
        return this.resolution(failed_build(ns, name, job, pods, *build.fetched_urls(this.fn)))
    found = provenance.job_result(job, pods, build.repository_ref(this.fn, settings.builds()))
    if isinstance(found, provenance.Result):
        return this.built(found.image, this.records.built(this.hash_, found))
    if isinstance(found, provenance.Missing):
        kube.delete("batch/v1", "Job", ns, name)
        return this.resolution(_building(name, f"to start again: {found.message}"), 1.0)
    return this.resolution(status.Verdict("False", function.Reason.BUILD_FAILED, found.message))


def failed_build(
    ns: str,
    name: str,
    job: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    *archive_urls: str,
) -> status.Verdict:
    """BuildSucceeded of a failed build: CodeCheckFailed with the checker's files and lines,
    or BuildFailed with the tail of the failed step's error (the archive URLs redacted)."""
    message = build.failure_message(job, pods)
    for url in archive_urls:
        message = urls.redact_in(message, url)
    if build.failure_reason(pods) == build.CODE_CHECK_FAILED:
        text = message.removeprefix(f"step {build.CHECK_CONTAINER}: ")
        return status.Verdict(
            "False",
            function.Reason.CODE_CHECK_FAILED,
            f"{text}. Fix the code and apply again (kubectl -n {ns} logs job/{name} "
            f"-c {build.CHECK_CONTAINER} lists every problem).",
        )
    return status.Verdict(
        "False",
        function.Reason.BUILD_FAILED,
        f"build {name} failed (kubectl -n {ns} logs job/{name}): {message}",
    )


def _start(this: _Build, files: Mapping[str, bytes] | None) -> Resolution:
    """Starts the build (source ConfigMap, then Job) if a build slot is free and the registry
    takes the namespace's credential (what it holds under the tag is no news)."""
    cfg = settings.builds()
    fn, hash_ = this.fn, this.hash_
    _, answer = _ask_registry(this, oci.Reference.parse(build.target(fn, hash_, cfg)))
    if answer is not None:
        return answer
    running = _running_builds()
    if running >= cfg.max_concurrent:
        waiting = status.Verdict(
            "Unknown",
            function.Reason.BUILDING,
            f"waiting for a build slot: {running} of {cfg.max_concurrent} builds are running",
        )
        return this.resolution(waiting, RETRY_SECONDS)
    if files is not None:
        kube.apply(build.build_source_config_map(fn, hash_, files, cfg))
    job = build.build_job(
        fn,
        hash_,
        cfg,
        files=files,
        dependency_layers=this.records.layers,
        layers=this.records.extra_layers,
    )
    kube.apply(job)
    return this.resolution(_building(build.job_name(fn, hash_), "started"))


def _building(job: str, state: str) -> status.Verdict:
    return status.Verdict("Unknown", function.Reason.BUILDING, f"build {job} {state}")


def _describe_source(fn: function.Function) -> str:
    src = fn.spec.source
    if src.inline is not None:
        return f"{len(src.inline.files)} inline file(s)"
    if src.config_map_ref is not None:
        return f"ConfigMap {src.config_map_ref.name}"
    if src.archive is not None:
        return f"archive {urls.redact(src.archive.url)} (sha256 {src.archive.sha256[:12]}…)"
    return "image"


def _running_builds() -> int:
    selector = (
        f"{objects.LABEL_MANAGED_BY}={objects.MANAGER},"
        f"{objects.LABEL_COMPONENT}={build.COMPONENT_BUILD}"
    )
    jobs, _ = kube.list_all("batch/v1", "Job", label_selector=selector)
    return sum(1 for job in jobs if build.finished(job) is None)


def finished_job(job: Mapping[str, Any]) -> bool:
    """A build Job that ended; its source ConfigMap is no longer needed."""
    return build.finished(job) is not None


def release_source(job: Mapping[str, Any]) -> None:
    """Deletes the source ConfigMap of a finished build (the Job keeps its logs)."""
    meta = job.get("metadata", {})
    kube.delete("v1", "ConfigMap", meta.get("namespace", ""), meta.get("name", ""))


# --- build metrics ----------------------------------------------------------------------------

#: The phase of each step of a build Job (:func:`kfn.resources.build.build_job`); the build
#: container's own message says which of its phases (install, push) it failed in.
STEP_PHASES: Final[Mapping[str, str]] = {
    "prepare": "prepare",
    build.CHECK_CONTAINER: "check",
    "npm": "install",
}
#: The phases the builder may name in the termination message of a failed step.
_BUILDER_PHASES: Final = frozenset({"prepare", "install", "push"})

#: The uids of the build Jobs recorded in the metrics, until each Job goes. kopf hands one
#: object's events to its handler one at a time, so a Job is never looked at twice at once.
_observed: set[str] = set()


def observe_finished(
    job: Mapping[str, Any], *, listed: bool, logger: logging.Logger | logging.LoggerAdapter[Any]
) -> None:
    """Records a finished build Job in the build metrics, once.

    ``listed``: the Job came in kopf's first listing at the operator's start. It ended before
    this operator ran, so the one that saw it end recorded it (or none did, if none ran): it
    is only remembered, so that its later events do not count it.
    """
    meta = job.get("metadata") or {}
    uid = str(meta.get("uid") or "")
    if not uid or uid in _observed:
        return
    _observed.add(uid)
    if listed:
        return
    try:
        pods = kube.list_objects(
            "v1", "Pod", meta.get("namespace", ""), f"batch.kubernetes.io/job-name={meta['name']}"
        )
    except kube.ApiError as exc:
        logger.warning("reading the pods of build %s failed: %s", meta.get("name"), exc)
        pods = []
    metrics.observe_build(report(job, pods))


def forget_job(job: Mapping[str, Any]) -> None:
    """The Job is gone: its uid need not be remembered."""
    _observed.discard(str((job.get("metadata") or {}).get("uid") or ""))


def report(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> metrics.BuildReport:
    """What a finished build Job says for the metrics (pure).

    A build that succeeded: ``prepare``, ``install`` (pip's) and ``push`` as the builder
    timed them (its termination message, in milliseconds); ``check`` and npm's ``install``
    from their containers' start and finish (whole seconds); ``total`` from the Job's start
    and completion times (whole seconds, as ``kubectl get job`` shows). A phase that did not
    run (nothing to install) is not observed.

    A build that failed: the phase of the first step that failed or never finished (the
    builder names its own); ``unknown`` when no step shows one (the Job's deadline removed
    the pod).
    """
    steps = list(_steps(_pod(job, pods)))
    if build.finished(job) == "failed":
        return metrics.BuildReport(failed_in=_failed_phase(steps))
    doc = _message(dict(steps).get(build.BUILD_CONTAINER) or {})
    reported = doc.get("seconds")
    seconds: Mapping[str, Any] = reported if isinstance(reported, Mapping) else {}
    durations: dict[str, float] = {}
    if _number(seconds.get("prepare")):
        durations["prepare"] = float(seconds["prepare"])
    check = _ran_for(dict(steps).get(build.CHECK_CONTAINER))
    if check is not None:
        durations["check"] = check
    if _number(seconds.get("dependencies")):
        durations["install"] = float(seconds["dependencies"])
    elif doc.get("dependencyLayer") and not doc.get("dependenciesReused"):
        npm = _ran_for(dict(steps).get("npm"))
        if npm is not None:
            durations["install"] = npm
    if _number(seconds.get("layers")) and _number(seconds.get("push")):
        durations["push"] = float(seconds["layers"]) + float(seconds["push"])
    status_ = job.get("status") or {}
    total = _between(status_.get("startTime"), status_.get("completionTime"))
    if total is not None:
        durations["total"] = total
    return metrics.BuildReport(durations=durations)


def _pod(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The Job's pod (the last one made, should there be several); empty if it has none."""
    uid = (job.get("metadata") or {}).get("uid")
    own = [
        pod
        for pod in pods
        if any(
            ref.get("uid") == uid
            for ref in (pod.get("metadata") or {}).get("ownerReferences") or []
        )
    ]
    own.sort(key=lambda pod: str((pod.get("metadata") or {}).get("creationTimestamp") or ""))
    return own[-1] if own else {}


def _steps(pod: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Each step of the pod (init containers, then the build container), in the order they
    run, with its state."""
    pod_status = pod.get("status") or {}
    for cs in [
        *(pod_status.get("initContainerStatuses") or []),
        *(pod_status.get("containerStatuses") or []),
    ]:
        yield str(cs.get("name")), cs.get("state") or {}


def _failed_phase(steps: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    for name, state in steps:
        term = state.get("terminated")
        if term and term.get("exitCode", 0) == 0:
            continue
        named = _message(state).get("phase")
        if named in _BUILDER_PHASES:
            return str(named)
        return STEP_PHASES.get(name, "unknown")
    return "unknown"


def _message(state: Mapping[str, Any]) -> dict[str, Any]:
    """A terminated step's termination message, when it is the builder's JSON."""
    text = str((state.get("terminated") or {}).get("message") or "")
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _ran_for(state: Mapping[str, Any] | None) -> float | None:
    """How long a step ran, from its container's start and finish (whole seconds)."""
    term = (state or {}).get("terminated") or {}
    if term.get("exitCode", 1) != 0:
        return None
    return _between(term.get("startedAt"), term.get("finishedAt"))


def _between(start: Any, end: Any) -> float | None:
    """Seconds from one Kubernetes time to another, or None when either is missing or bad."""
    try:
        began = datetime.datetime.fromisoformat(str(start))
        ended = datetime.datetime.fromisoformat(str(end))
    except ValueError:
        return None
    seconds = (ended - began).total_seconds()
    return seconds if seconds >= 0 else None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
