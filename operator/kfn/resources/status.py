"""A Function's status, decided from what the cluster shows (pure; time passed in).

The operator gathers the facts — how the source resolved, the live Deployment,
the problems its pods report — and this module turns them into conditions a
user can act on. ``Active`` and ``WarmPool`` are computed here too but never feed
``Ready``: a function scaled to zero is Ready and not Active.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from kfn.api import conditions, function, meta
from kfn.resources import deployment as deployment_
from kfn.resources import provenance

#: Container states that will not fix themselves; they make ``Deployed`` False.
POD_FAILURES: Final = frozenset(
    {
        "CrashLoopBackOff",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One condition's status, reason and message."""

    status: meta.ConditionStatus
    reason: str
    message: str


@dataclasses.dataclass(frozen=True, order=True)
class InitError:
    """A pod whose runtime could not load the handler, and Lambda's error for it."""

    pod: str
    error_type: str
    message: str


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the operator found out about a Function in one reconcile."""

    source: Verdict
    build: Verdict
    image: str | None
    source_hash: str | None
    deployment: Mapping[str, Any] | None
    pod_problems: Sequence[str] = ()
    missing_pull_secrets: Sequence[str] = ()
    """Pull Secrets the kubelet reported missing for a pod that cannot pull its image."""
    init_errors: Sequence[InitError] = ()
    """Pods whose runtime reported that the handler could not be loaded."""
    last_image: str | None = None
    """The image the status named before (an init error stays reported while it is unchanged)."""
    refused: Verdict | None = None
    """Why the current spec is not deployed although it is valid (:func:`timeout_refused`)."""
    records: provenance.Records = dataclasses.field(default_factory=provenance.Records)
    """The builds kfn ran and the dependency layers they made, kept in the status."""
    warm_pool: Verdict | None = None
    """Whether cold starts come from the namespace's warm pool (:func:`kfn.resources.pools.
    condition`); None when the operator does not know the namespace yet (the condition is
    then left as it was)."""


def pod_problems(pods: Sequence[Mapping[str, Any]]) -> list[str]:
    """``"<pod>: <Reason>: <message>"`` for each container stuck in a failure state."""
    found = []
    for pod in pods:
        name = pod.get("metadata", {}).get("name", "?")
        statuses = pod.get("status", {}).get("containerStatuses", []) or []
        for status in statuses:
            waiting = (status.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in POD_FAILURES:
                message = (waiting.get("message") or "").strip()
                found.append(f"{name}: {reason}" + (f": {message[:300]}" if message else ""))
    return found


#: The line a runtime logs when the handler could not be loaded (runtime contract, section 5a).
INIT_ERROR_LOG_PREFIX: Final = "kfn runtime: init error "


def init_error_suspects(pods: Sequence[Mapping[str, Any]]) -> list[str]:
    """Pods whose function container finished loading (its startup probe passed), runs, and is
    not ready: the handler may have failed to load, and the runtime's log says whether.

    A runtime that is draining or has every slot stuck looks the same; its log holds no report.
    """
    found = []
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if (
                cs.get("name") == deployment_.CONTAINER_NAME
                and cs.get("started") is True
                and cs.get("ready") is False
                and "running" in (cs.get("state") or {})
            ):
                found.append(str(pod.get("metadata", {}).get("name", "")))
    return found


def init_error_in_log(pod: str, log: str) -> InitError | None:
    """The init error a runtime reported in its log (the last report, if several), or None."""
    for line in reversed(log.splitlines()):
        if not line.startswith(INIT_ERROR_LOG_PREFIX):
            continue
        try:
            report = json.loads(line.removeprefix(INIT_ERROR_LOG_PREFIX))
        except ValueError:
            continue
        if isinstance(report, dict) and report.get("errorType"):
            return InitError(pod, str(report["errorType"]), str(report.get("errorMessage", "")))
    return None


def init_error_message(errors: Sequence[InitError]) -> str:
    """What a user reads: Lambda's error, where it was seen, and what to do."""
    first = errors[0]
    pods = ", ".join(e.pod for e in errors[:3]) + (" and more" if len(errors) > 3 else "")
    return (
        f"the handler could not be loaded: {first.error_type}: {first.message[:1000]} "
        f"(pod {pods}). Every invocation is answered with this error until a pod loads the "
        "handler: fix the code, its dependencies or spec.handler."
    )


#: Waiting reasons of a container whose image cannot be pulled.
PULL_FAILURES: Final = frozenset({"ErrImagePull", "ImagePullBackOff"})
#: The kubelet's Event when a pod names a pull Secret that does not exist.
MISSING_PULL_SECRET_EVENT: Final = "FailedToRetrieveImagePullSecret"  # noqa: S105 - a reason
_MISSING_PULL_SECRET = re.compile(r"image pull secrets \(([^)]*)\)")


def pulling_pods(pods: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names of pods with a container that cannot pull its image."""
    found = []
    for pod in pods:
        for cs in (pod.get("status", {}) or {}).get("containerStatuses", []) or []:
            if ((cs.get("state") or {}).get("waiting") or {}).get("reason") in PULL_FAILURES:
                found.append(str(pod.get("metadata", {}).get("name", "")))
                break
    return found


def missing_pull_secrets(events: Sequence[Mapping[str, Any]]) -> list[str]:
    """The Secret names the kubelet's ``FailedToRetrieveImagePullSecret`` Events list."""
    names: list[str] = []
    for event in events:
        match = _MISSING_PULL_SECRET.search(str(event.get("message", "")))
        if match:
            names += [n.strip() for n in match.group(1).split(",") if n.strip()]
    return sorted(set(names))


def _failure(status: Mapping[str, Any]) -> str | None:
    """The message of a Deployment condition that says it cannot progress."""
    for cond in status.get("conditions", []) or []:
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return str(cond.get("message", "ReplicaFailure"))
        if (
            cond.get("type") == "Progressing"
            and cond.get("status") == "False"
            and cond.get("reason") == "ProgressDeadlineExceeded"
        ):
            return str(cond.get("message", "ProgressDeadlineExceeded"))
    return None


def deployed(  # noqa: PLR0911 - one return per state, in order of precedence
    deployment: Mapping[str, Any] | None,
    problems: Sequence[str],
    missing_secrets: Sequence[str] = (),
    init_errors: Sequence[InitError] = (),
) -> Verdict:
    """Whether the function's Deployment runs the current spec."""
    if deployment is None:
        return Verdict("Unknown", function.Reason.DEPLOYING, "creating the Deployment")
    if init_errors:
        return Verdict("False", function.Reason.INIT_ERROR, init_error_message(init_errors))
    status = deployment.get("status", {}) or {}
    generation = deployment.get("metadata", {}).get("generation", 0)
    failure = _failure(status)
    if failure is not None:
        return Verdict("False", function.Reason.DEPLOYMENT_FAILED, failure)
    if problems and missing_secrets:
        return Verdict(
            "False",
            function.Reason.IMAGE_PULL_SECRET_NOT_FOUND,
            f"the image pull Secret(s) {', '.join(missing_secrets)} do not exist in the "
            "namespace (named in spec.imagePullSecrets, the chart's functions.imagePullSecrets "
            "or as its registry credential); create them: " + "; ".join(problems[:2]),
        )
    if problems:
        return Verdict("False", function.Reason.PODS_FAILING, "; ".join(problems[:3]))
    if status.get("observedGeneration", 0) < generation:
        return Verdict(
            "Unknown", function.Reason.DEPLOYING, "the Deployment controller is catching up"
        )
    wanted = deployment.get("spec", {}).get("replicas", 0) or 0
    updated = status.get("updatedReplicas", 0) or 0
    total = status.get("replicas", 0) or 0
    ready = status.get("readyReplicas", 0) or 0
    if updated < wanted or total > updated or ready < wanted:
        return Verdict(
            "Unknown",
            function.Reason.DEPLOYING,
            f"rolling out: {min(ready, updated)} of {wanted} pods ready with the current version",
        )
    return Verdict("True", function.Reason.DEPLOYED, "")


def keep_init_error(
    verdict: Verdict,
    previous: meta.Condition | None,
    *,
    generation: int | None,
    image_unchanged: bool,
    ready_replicas: int,
) -> Verdict:
    """An init error stays reported until a pod loads the handler: also once its pods are gone
    (scaled to zero, or a new pod still starting), as long as the spec and the image that failed
    are the ones deployed. A changed spec or image, or a ready pod, ends it; so does any other
    failure, which is then the news.
    """
    if (
        verdict.status != "False"
        and previous is not None
        and previous.status == "False"
        and previous.reason == function.Reason.INIT_ERROR
        and previous.observed_generation == generation
        and image_unchanged
        and ready_replicas == 0
    ):
        return Verdict("False", function.Reason.INIT_ERROR, previous.message)
    return verdict


def keep_deployed_through_scale_up(
    verdict: Verdict,
    previous: meta.Condition | None,
    deployment: Mapping[str, Any] | None,
    *,
    generation: int | None,
    image_unchanged: bool,
) -> Verdict:
    """A function deployed, scaling up (from zero, or by load): its new pods run the version
    already deployed, so it stays Deployed (and Ready) while they start, and while the
    Deployment controller takes in the new replica count (a scale changes the Deployment's
    generation too); ``Active`` says they are starting. Only a new spec or image, or pods of
    an old version still running, make it a rollout again."""
    if deployment is None:
        return verdict
    status = deployment.get("status") or {}
    no_old_pods = (status.get("replicas", 0) or 0) <= (status.get("updatedReplicas", 0) or 0)
    if (
        verdict.status == "Unknown"
        and verdict.reason == function.Reason.DEPLOYING
        and previous is not None
        and previous.status == "True"
        and previous.observed_generation == generation
        and image_unchanged
        and no_old_pods
    ):
        return Verdict("True", function.Reason.DEPLOYED, "")
    return verdict


def timeout_refused(fn: function.Function, max_timeout_seconds: float) -> Verdict | None:
    """``Deployed`` False when the Function's timeout is longer than this installation serves.

    The activator drains for the longest timeout the chart allows
    (``functions.maxTimeoutSeconds``), so a rolling restart never cuts a request within
    it; a longer timeout would be cut, and silently. The operator therefore does not deploy
    the spec (a Deployment of an earlier spec keeps serving) and says what to change.
    """
    timeout = deployment_.timeout_seconds(fn)
    if timeout <= max_timeout_seconds:
        return None
    return Verdict(
        "False",
        function.Reason.TIMEOUT_ABOVE_MAXIMUM,
        f"spec.timeout {fn.spec.timeout} is longer than the {max_timeout_seconds:g}s this kfn "
        "installation serves (the chart's functions.maxTimeoutSeconds, which sizes the "
        "activator's drain): lower the timeout, or ask the cluster admin to raise the maximum",
    )


def active(deployment: Mapping[str, Any] | None) -> Verdict:
    """Whether pods are running; outside Ready on purpose."""
    if deployment is None:
        return Verdict("False", function.Reason.SCALED_TO_ZERO, "no pods")
    ready = (deployment.get("status", {}) or {}).get("readyReplicas", 0) or 0
    wanted = deployment.get("spec", {}).get("replicas", 0) or 0
    if ready > 0:
        return Verdict("True", function.Reason.ACTIVE, f"{ready} pod(s) ready")
    if wanted == 0:
        return Verdict(
            "False", function.Reason.SCALED_TO_ZERO, "scaled to zero; the next request starts a pod"
        )
    return Verdict("False", function.Reason.ACTIVATING, f"starting {wanted} pod(s)")


def compute(
    fn: function.Function,
    facts: Facts,
    *,
    now: datetime.datetime,
    url: str | None,
    previous: Sequence[meta.Condition] | None = None,
) -> dict[str, Any]:
    """The whole ``status`` to write, as JSON-ready data.

    ``previous`` are the conditions last written (they keep their transition
    times); by default those of ``fn.status``.
    """
    if previous is None:
        previous = fn.status.conditions if fn.status else []
    generation = fn.metadata.generation
    result = list(previous)
    verdicts: list[tuple[str, Verdict]] = [
        (function.ConditionType.SOURCE_READY, facts.source),
        (function.ConditionType.BUILD_SUCCEEDED, facts.build),
    ]
    if facts.refused is not None:
        verdicts.append((function.ConditionType.DEPLOYED, facts.refused))
    elif facts.image is not None:
        verdict = deployed(
            facts.deployment, facts.pod_problems, facts.missing_pull_secrets, facts.init_errors
        )
        before = next((c for c in previous if c.type == function.ConditionType.DEPLOYED), None)
        ready = ((facts.deployment or {}).get("status") or {}).get("readyReplicas", 0) or 0
        verdict = keep_init_error(
            verdict,
            before,
            generation=generation,
            image_unchanged=facts.image == facts.last_image,
            ready_replicas=ready,
        )
        verdict = keep_deployed_through_scale_up(
            verdict,
            before,
            facts.deployment,
            generation=generation,
            image_unchanged=facts.image == facts.last_image,
        )
        verdicts.append((function.ConditionType.DEPLOYED, verdict))
    else:
        verdicts.append(
            (
                function.ConditionType.DEPLOYED,
                Verdict("False", facts.source.reason, "nothing to deploy: " + facts.source.message)
                if facts.source.status == "False"
                else Verdict("Unknown", function.Reason.DEPLOYING, "waiting for an image"),
            )
        )
    verdicts.append((function.ConditionType.ACTIVE, active(facts.deployment)))
    if facts.warm_pool is not None:
        verdicts.append((function.ConditionType.WARM_POOL, facts.warm_pool))
    for type_, verdict in verdicts:
        result = conditions.set_condition(
            result,
            type_,
            verdict.status,
            verdict.reason,
            verdict.message,
            now=now,
            observed_generation=generation,
        )
    result = conditions.summarize(
        result,
        function.READY_DEPENDS_ON,
        ready_type=function.ConditionType.READY,
        ready_reason=function.Reason.READY,
        now=now,
        observed_generation=generation,
    )
    order = [t.value for t in function.ConditionType]
    result.sort(key=lambda c: order.index(c.type) if c.type in order else len(order))
    dep_status = (facts.deployment or {}).get("status", {}) or {}
    status = function.FunctionStatus(
        conditions=result,
        observed_generation=generation,
        image=facts.image,
        url=url,
        function_url=fn.status.function_url if fn.status else None,  # kfn.operator.exposure's
        replicas=dep_status.get("replicas", 0) or 0,
        ready_replicas=dep_status.get("readyReplicas", 0) or 0,
        source_hash=facts.source_hash,
        builds=list(facts.records.builds) or None,
        dependency_layers=list(facts.records.layers) or None,
        layers=list(facts.records.extra_layers) or None,
    )
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


VERSION_KEYS: Final = frozenset({"versions", "latestVersion"})
"""Status the operator writes only when it reconciles versions; other writes carry it over."""
ROLLOUT_KEYS: Final = frozenset({"aliases"})
"""Status the rollout controller (the autoscaler) writes and the operator never does: the
operator's merge patches leave it alone, and it is not compared."""


def same(current: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """True when writing ``new`` would change nothing a reader can see."""
    mine = {k: v for k, v in (current or {}).items() if k not in ROLLOUT_KEYS}
    return mine == dict(new)
