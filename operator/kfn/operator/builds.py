"""Turning a Function's source into an image: find it in the registry, or build it.

Level-based like the rest of the reconcile: every call looks at the registry and the build Job
as they are now and decides.

* The namespace's registry credential is made sure of first (:mod:`kfn.operator.credentials`);
  the registry is asked with it, as the build Job will push with it.
* The image ``<registry>/fn/<ns>/<name>:<build hash>`` exists → use its digest. An unchanged
  Function is never rebuilt, and neither is one whose build finished before the operator saw
  the Job end.
* Else the Job named by the build hash exists → Building, or BuildFailed with the tail of its
  error (read from the failed step's termination message).
* Else start it (its source ConfigMap first), unless ``KFN_MAX_CONCURRENT_BUILDS`` builds
  already run cluster-wide: then the Function waits, and is looked at again shortly.

While a build runs or after it failed, the image the Function ran before (``status.image``)
keeps serving.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from kfn import kube, oci
from kfn.api import function
from kfn.operator import credentials, settings
from kfn.resources import build, objects, source, status

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


def previous_image(fn: function.Function) -> str | None:
    return fn.status.image if fn.status else None


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


def resolve(fn: function.Function) -> Resolution:  # noqa: PLR0911 - one per outcome
    """Finds or builds the image of ``fn``'s current source (which is not ``source.image``)."""
    cfg = settings.builds()
    old = previous_image(fn)
    files = _files(fn)
    if isinstance(files, str):
        missing = status.Verdict("False", function.Reason.SOURCE_NOT_FOUND, files)
        return Resolution(
            missing,
            missing,
            old,
            fn.status.source_hash or "" if fn.status else "",
            False,
            RETRY_SECONDS * 6,
        )
    hash_src = source.source_hash(fn, files if fn.spec.source.config_map_ref else None)
    source_ok = status.Verdict("True", function.Reason.SOURCE_RESOLVED, _describe_source(fn))
    hash_ = build.build_hash(fn, hash_src, cfg)
    target = oci.Reference.parse(build.target(fn, hash_, cfg))
    missing_credentials = credentials.ensure(fn)
    if missing_credentials is not None:
        return Resolution(
            source_ok, missing_credentials, old, hash_src, False, CREDENTIALS_RETRY_SECONDS
        )
    try:
        found = credentials.registry_client(fn.metadata.namespace).get_manifest(target)
    except oci.RegistryAuthError as exc:
        refused = status.Verdict("False", function.Reason.REGISTRY_REFUSED, str(exc))
        return Resolution(source_ok, refused, old, hash_src, False, CREDENTIALS_RETRY_SECONDS)
    except oci.RegistryError as exc:
        waiting = status.Verdict(
            "Unknown", function.Reason.BUILDING, f"registry unreachable: {exc}"
        )
        return Resolution(source_ok, waiting, old, hash_src, False, RETRY_SECONDS)
    if found is not None:
        image = str(target.with_digest(found[0]))
        built = status.Verdict("True", function.Reason.BUILT, f"image {image}")
        return Resolution(source_ok, built, image, hash_src, True)
    job = kube.get("batch/v1", "Job", fn.metadata.namespace, build.job_name(fn, hash_))
    if job is not None:
        return _from_job(fn, job, source_ok, old, hash_src)
    return _start(fn, hash_, files, source_ok=source_ok, old=old, hash_src=hash_src)


def _from_job(
    fn: function.Function,
    job: Mapping[str, Any],
    source_ok: status.Verdict,
    old: str | None,
    hash_src: str,
) -> Resolution:
    """The state of an existing build Job whose image is not in the registry (yet)."""
    ns, name = fn.metadata.namespace, job["metadata"]["name"]
    outcome = build.finished(job)
    if outcome == "failed":
        pods = kube.list_objects("v1", "Pod", ns, f"batch.kubernetes.io/job-name={name}")
        return Resolution(source_ok, failed_build(ns, name, job, pods), old, hash_src, False)
    if outcome == "succeeded":
        # Pushed, yet not found a moment ago: look again soon.
        return Resolution(source_ok, _building(name, "finishing"), old, hash_src, False, 1.0)
    return Resolution(source_ok, _building(name, "running"), old, hash_src, False)


def failed_build(
    ns: str, name: str, job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]
) -> status.Verdict:
    """BuildSucceeded of a failed build: CodeCheckFailed with the checker's files and lines,
    or BuildFailed with the tail of the failed step's error."""
    message = build.failure_message(job, pods)
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


def _start(
    fn: function.Function,
    hash_: str,
    files: Mapping[str, bytes] | None,
    *,
    source_ok: status.Verdict,
    old: str | None,
    hash_src: str,
) -> Resolution:
    """Starts the build (source ConfigMap, then Job) if a build slot is free."""
    cfg = settings.builds()
    running = _running_builds()
    if running >= cfg.max_concurrent:
        waiting = status.Verdict(
            "Unknown",
            function.Reason.BUILDING,
            f"waiting for a build slot: {running} of {cfg.max_concurrent} builds are running",
        )
        return Resolution(source_ok, waiting, old, hash_src, False, RETRY_SECONDS)
    if files is not None:
        kube.apply(build.build_source_config_map(fn, hash_, files, cfg))
    kube.apply(build.build_job(fn, hash_, cfg, files=files))
    return Resolution(
        source_ok, _building(build.job_name(fn, hash_), "started"), old, hash_src, False
    )


def _building(job: str, state: str) -> status.Verdict:
    return status.Verdict("Unknown", function.Reason.BUILDING, f"build {job} {state}")


def _describe_source(fn: function.Function) -> str:
    src = fn.spec.source
    if src.inline is not None:
        return f"{len(src.inline.files)} inline file(s)"
    if src.config_map_ref is not None:
        return f"ConfigMap {src.config_map_ref.name}"
    if src.archive is not None:
        return f"archive {src.archive.url} (sha256 {src.archive.sha256[:12]}…)"
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
