"""The operator's verdicts on a Function: Deployed, Active and the Ready summary, as tables.

Each row is one state the cluster can show (a live Deployment, pods stuck on something) and
the condition a user then reads; :mod:`kfn.resources.status` decides them without I/O.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from kfn.api import function, meta
from kfn.resources import status

NOW = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
LATER = NOW + datetime.timedelta(minutes=5)
IMAGE = "registry.local/fn/team/hello@sha256:" + "0" * 64

SOURCE_OK = status.Verdict("True", function.Reason.IMAGE_PROVIDED, "prebuilt image")
BUILD_OK = status.Verdict("True", function.Reason.IMAGE_PROVIDED, "nothing to build")


def deployment(
    *,
    wanted: int = 1,
    generation: int = 1,
    conditions: list[dict[str, Any]] | None = None,
    **st: int,
) -> dict[str, Any]:
    """A live Deployment; ``st`` sets status counters (observedGeneration defaults to current)."""
    counters = {"observedGeneration": generation, **st}
    return {
        "metadata": {"name": "hello", "generation": generation},
        "spec": {"replicas": wanted},
        "status": {**counters, "conditions": conditions or []},
    }


def rolled_out(wanted: int) -> dict[str, Any]:
    return deployment(wanted=wanted, replicas=wanted, updatedReplicas=wanted, readyReplicas=wanted)


def rolling(ready: int, wanted: int) -> str:
    return f"rolling out: {ready} of {wanted} pods ready with the current version"


STUCK = ["hello-7d9-x: ImagePullBackOff: Back-off pulling image"]

# --- Deployed ---------------------------------------------------------------------------------

DEPLOYED_CASES = [
    pytest.param(None, [], [], ("Unknown", "Deploying", "creating the Deployment"),
                 id="no Deployment yet is still being deployed"),
    pytest.param(rolled_out(2), [], [], ("True", "Deployed", ""),
                 id="every wanted pod ready with the current version is deployed"),
    pytest.param(rolled_out(0), [], [], ("True", "Deployed", ""),
                 id="a Deployment at zero replicas is deployed"),
    pytest.param(deployment(generation=3, observedGeneration=2, replicas=1, updatedReplicas=1,
                            readyReplicas=1), [], [],
                 ("Unknown", "Deploying", "the Deployment controller is catching up"),
                 id="a spec the Deployment controller has not seen yet is still deploying"),
    pytest.param(deployment(wanted=2, replicas=2, updatedReplicas=1, readyReplicas=2), [], [],
                 ("Unknown", "Deploying", rolling(1, 2)),
                 id="pods not yet updated to the current version mean a rollout in progress"),
    pytest.param(deployment(wanted=1, replicas=2, updatedReplicas=1, readyReplicas=1), [], [],
                 ("Unknown", "Deploying", rolling(1, 1)),
                 id="old pods still running mean a rollout in progress"),
    pytest.param(deployment(wanted=2, replicas=2, updatedReplicas=2, readyReplicas=1), [], [],
                 ("Unknown", "Deploying", rolling(1, 2)),
                 id="updated pods that are not ready yet mean a rollout in progress"),
    pytest.param(deployment(conditions=[{"type": "ReplicaFailure", "status": "True",
                                         "message": "pods \"hello\" is forbidden"}]), [], [],
                 ("False", "DeploymentFailed", "pods \"hello\" is forbidden"),
                 id="a replica failure fails the deployment with the controller's message"),
    pytest.param(deployment(conditions=[{"type": "Progressing", "status": "False",
                                         "reason": "ProgressDeadlineExceeded",
                                         "message": "exceeded its progress deadline"}]), [], [],
                 ("False", "DeploymentFailed", "exceeded its progress deadline"),
                 id="a rollout past its progress deadline fails the deployment"),
    pytest.param(deployment(conditions=[{"type": "Progressing", "status": "False",
                                         "reason": "Paused", "message": "paused"}],
                            replicas=1, updatedReplicas=1, readyReplicas=1), [], [],
                 ("True", "Deployed", ""),
                 id="a Progressing condition without a deadline exceeded is no failure"),
    pytest.param(rolled_out(1), STUCK, [], ("False", "PodsFailing", STUCK[0]),
                 id="pods stuck on a failure make Deployed false naming them"),
    pytest.param(rolled_out(1), [f"p{i}: CrashLoopBackOff" for i in range(5)], [],
                 ("False", "PodsFailing",
                  "p0: CrashLoopBackOff; p1: CrashLoopBackOff; p2: CrashLoopBackOff"),
                 id="the message names at most three stuck pods"),
    pytest.param(deployment(conditions=[{"type": "ReplicaFailure", "status": "True",
                                         "message": "quota exceeded"}]), STUCK, [],
                 ("False", "DeploymentFailed", "quota exceeded"),
                 id="a failing Deployment is reported before its stuck pods"),
]  # fmt: skip


@pytest.mark.parametrize(("live", "problems", "missing", "expected"), DEPLOYED_CASES)
def test_deployed_says_whether_the_deployment_runs_the_current_spec(
    live: dict[str, Any] | None,
    problems: list[str],
    missing: list[str],
    expected: tuple[str, str, str],
) -> None:
    verdict = status.deployed(live, problems, missing)
    assert (verdict.status, verdict.reason, verdict.message) == expected


def test_a_pull_secret_the_kubelet_misses_is_named_with_where_it_was_asked_for() -> None:
    verdict = status.deployed(rolled_out(1), STUCK, ["team-pull", "other"])
    assert (verdict.status, verdict.reason) == ("False", "ImagePullSecretNotFound")
    assert verdict.message.startswith("the image pull Secret(s) team-pull, other do not exist")
    assert "spec.imagePullSecrets" in verdict.message
    assert verdict.message.endswith("create them: " + STUCK[0])


def test_a_missing_pull_secret_without_stuck_pods_is_not_reported() -> None:
    verdict = status.deployed(rolled_out(1), [], ["team-pull"])
    assert (verdict.status, verdict.reason) == ("True", "Deployed")


# --- Active -----------------------------------------------------------------------------------

ACTIVE_CASES = [
    pytest.param(None, ("False", "ScaledToZero", "no pods"),
                 id="no Deployment has no pods"),
    pytest.param(rolled_out(0), ("False", "ScaledToZero",
                                 "scaled to zero; the next request starts a pod"),
                 id="a Deployment at zero is scaled to zero"),
    pytest.param(deployment(wanted=2, replicas=2, readyReplicas=0),
                 ("False", "Activating", "starting 2 pod(s)"),
                 id="wanted pods none of which is ready yet are activating"),
    pytest.param(deployment(wanted=3, replicas=3, readyReplicas=1),
                 ("True", "Active", "1 pod(s) ready"),
                 id="one ready pod is enough to be active"),
    pytest.param(deployment(wanted=0, replicas=1, readyReplicas=1),
                 ("True", "Active", "1 pod(s) ready"),
                 id="a pod still ready while scaling to zero keeps the function active"),
]  # fmt: skip


@pytest.mark.parametrize(("live", "expected"), ACTIVE_CASES)
def test_active_says_whether_pods_are_running(
    live: dict[str, Any] | None, expected: tuple[str, str, str]
) -> None:
    verdict = status.active(live)
    assert (verdict.status, verdict.reason, verdict.message) == expected


# --- Ready, the summary -----------------------------------------------------------------------


def _function(
    generation: int = 4, status_: dict[str, Any] | None = None, timeout: str = "30s"
) -> function.Function:
    return function.Function.model_validate(
        {
            "metadata": {
                "name": "hello",
                "namespace": "team",
                "uid": "u",
                "generation": generation,
            },
            "spec": {
                "runtime": "python3.11",
                "handler": "app.handler",
                "source": {"image": IMAGE},
                "timeout": timeout,
            },
            "status": status_,
        }
    )


def _facts(
    source: status.Verdict = SOURCE_OK,
    build: status.Verdict = BUILD_OK,
    image: str | None = IMAGE,
    live: dict[str, Any] | None = None,
    problems: tuple[str, ...] = (),
) -> status.Facts:
    return status.Facts(source, build, image, "hash", live, problems)


def _conditions(result: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in result["conditions"]}


BUILDING = status.Verdict("Unknown", function.Reason.BUILDING, "build hello-abc running")
BUILD_FAILED = status.Verdict("False", function.Reason.BUILD_FAILED, "pip: no such package")
NOT_FOUND = status.Verdict("False", function.Reason.SOURCE_NOT_FOUND, "ConfigMap code is missing")

SUMMARY_CASES = [
    pytest.param(_facts(live=rolled_out(1)),
                 {"Ready": ("True", "Ready"), "Deployed": ("True", "Deployed"),
                  "Active": ("True", "Active")},
                 id="a deployed function with a ready pod is ready and active"),
    pytest.param(_facts(live=rolled_out(0)),
                 {"Ready": ("True", "Ready"), "Active": ("False", "ScaledToZero")},
                 id="a function scaled to zero stays ready while not active"),
    pytest.param(_facts(live=deployment(wanted=1, replicas=1, updatedReplicas=1)),
                 {"Ready": ("Unknown", "Deploying"), "Active": ("False", "Activating")},
                 id="a rollout in progress leaves ready unknown"),
    pytest.param(_facts(live=rolled_out(1), problems=tuple(STUCK)),
                 {"Ready": ("False", "PodsFailing"), "Active": ("True", "Active")},
                 id="stuck pods make the function not ready with their reason"),
    pytest.param(_facts(build=BUILD_FAILED, live=rolled_out(1)),
                 {"Ready": ("False", "BuildFailed"), "Deployed": ("True", "Deployed")},
                 id="a failed build makes it not ready while the previous image keeps serving"),
    pytest.param(_facts(build=BUILDING, image=None),
                 {"Ready": ("Unknown", "Building"), "Deployed": ("Unknown", "Deploying"),
                  "Active": ("False", "ScaledToZero")},
                 id="a first build leaves ready unknown and nothing deployed"),
    pytest.param(_facts(source=NOT_FOUND, build=BUILDING, image=None),
                 {"Ready": ("False", "SourceNotFound"),
                  "Deployed": ("False", "SourceNotFound")},
                 id="a missing source means nothing to deploy, for its own reason"),
]  # fmt: skip


@pytest.mark.parametrize(("facts", "expected"), SUMMARY_CASES)
def test_ready_summarises_source_build_and_deployment_but_never_active(
    facts: status.Facts, expected: dict[str, tuple[str, str]]
) -> None:
    result = status.compute(_function(), facts, now=NOW, url="http://a/invoke")
    found = _conditions(result)
    assert {type_: found[type_] for type_ in expected} == expected


def test_nothing_to_deploy_says_why_in_the_deployed_message() -> None:
    result = status.compute(
        _function(), _facts(source=NOT_FOUND, build=BUILDING, image=None), now=NOW, url=None
    )
    deployed = next(c for c in result["conditions"] if c["type"] == "Deployed")
    assert deployed["message"] == "nothing to deploy: ConfigMap code is missing"


def test_every_condition_is_written_in_a_fixed_order_for_the_current_generation() -> None:
    result = status.compute(_function(generation=7), _facts(live=rolled_out(1)), now=NOW, url="u")
    types = [c["type"] for c in result["conditions"]]
    assert types == ["Ready", "SourceReady", "BuildSucceeded", "Deployed", "Active"]
    assert {c["observedGeneration"] for c in result["conditions"]} == {7}
    assert result["observedGeneration"] == 7
    assert (result["image"], result["url"], result["sourceHash"]) == (IMAGE, "u", "hash")
    assert (result["replicas"], result["readyReplicas"]) == (1, 1)


def test_a_condition_keeps_its_transition_time_until_its_status_changes() -> None:
    first = status.compute(_function(), _facts(live=rolled_out(1)), now=NOW, url="u")
    previous = function.FunctionStatus.model_validate(first).conditions
    scaled_down = status.compute(
        _function(), _facts(live=rolled_out(0)), now=LATER, url="u", previous=previous
    )
    times = {c["type"]: c["lastTransitionTime"] for c in scaled_down["conditions"]}
    assert times["Ready"] == times["Deployed"] == meta.format_time(NOW)
    assert times["Active"] == meta.format_time(LATER)


def test_the_previous_conditions_default_to_the_functions_own_status() -> None:
    first = status.compute(_function(), _facts(live=rolled_out(1)), now=NOW, url="u")
    again = status.compute(_function(status_=first), _facts(live=rolled_out(1)), now=LATER, url="u")
    assert status.same(first, again)


# --- the warm pool ---------------------------------------------------------------------------

NOT_OPTED_IN = status.Verdict("False", function.Reason.NAMESPACE_NOT_OPTED_IN, "label it")


def test_the_warm_pool_condition_is_written_last_and_never_makes_a_function_not_ready() -> None:
    facts = dataclasses.replace(_facts(live=rolled_out(1)), warm_pool=NOT_OPTED_IN)
    result = status.compute(_function(), facts, now=NOW, url="u")
    assert [c["type"] for c in result["conditions"]][-1] == "WarmPool"
    found = _conditions(result)
    assert found["WarmPool"] == ("False", "NamespaceNotOptedIn")
    assert found["Ready"] == ("True", "Ready")


def test_an_unknown_namespace_leaves_the_warm_pool_condition_as_it_was() -> None:
    facts = dataclasses.replace(_facts(live=rolled_out(1)), warm_pool=NOT_OPTED_IN)
    first = status.compute(_function(), facts, now=NOW, url="u")
    again = status.compute(_function(status_=first), _facts(live=rolled_out(1)), now=LATER, url="u")
    assert status.same(first, again)
    assert "WarmPool" not in _conditions(status.compute(_function(), _facts(), now=NOW, url="u"))


# --- a timeout longer than the installation serves ----------------------------------------------


@pytest.mark.parametrize(
    ("timeout", "maximum", "refused"),
    [("15m", 900, False), ("14m1s", 840, True), ("5m", 300, False), ("5m1s", 300, True),
     ("10m", 60, True), ("1s", 1, False)],
)  # fmt: skip
def test_a_timeout_is_refused_only_when_longer_than_the_installations_maximum(
    timeout: str, maximum: float, refused: bool
) -> None:
    assert (status.timeout_refused(_function(timeout=timeout), maximum) is not None) == refused


def test_a_refused_timeout_makes_deployed_and_ready_false_saying_what_to_change() -> None:
    fn = _function(timeout="12m")
    refusal = status.timeout_refused(fn, 600)
    assert refusal is not None
    # Even with pods of an earlier spec serving, the current spec is not deployed.
    facts = status.Facts(SOURCE_OK, BUILD_OK, IMAGE, "hash", rolled_out(1), refused=refusal)
    result = status.compute(fn, facts, now=NOW, url="u")
    found = {c["type"]: c for c in result["conditions"]}
    for type_ in ("Deployed", "Ready"):
        assert (found[type_]["status"], found[type_]["reason"]) == (
            "False",
            "TimeoutAboveMaximum",
        )
    assert found["Deployed"]["message"] == (
        "spec.timeout 12m is longer than the 600s this kfn installation serves (the chart's "
        "functions.maxTimeoutSeconds, which sizes the activator's drain): lower the timeout, "
        "or ask the cluster admin to raise the maximum"
    )
    assert found["Active"]["status"] == "True"


# --- what pods and events tell ----------------------------------------------------------------


def pod(name: str, *waiting: tuple[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {
            "containerStatuses": [
                {"state": {"waiting": {"reason": reason, "message": message}}}
                for reason, message in waiting
            ]
        },
    }


POD_CASES = [
    pytest.param([pod("a", ("ContainerCreating", ""))], [], [],
                 id="a container being created is no problem"),
    pytest.param([pod("a", ("CrashLoopBackOff", "back-off 5m"))],
                 ["a: CrashLoopBackOff: back-off 5m"], [],
                 id="a crash loop is a problem that does not need a pull secret"),
    pytest.param([pod("a", ("ImagePullBackOff", " Back-off pulling  "))],
                 ["a: ImagePullBackOff: Back-off pulling"], ["a"],
                 id="a pod that cannot pull its image is a problem worth asking the events about"),
    pytest.param([pod("a", ("CreateContainerConfigError", ""))],
                 ["a: CreateContainerConfigError"], [],
                 id="a problem without a message names only the reason"),
    pytest.param([pod("a", ("ErrImagePull", "x"), ("ErrImagePull", "y")), pod("b")],
                 ["a: ErrImagePull: x", "a: ErrImagePull: y"], ["a"],
                 id="each stuck container is listed and each pulling pod once"),
    pytest.param([{"metadata": {"name": "new"}, "status": {}}], [], [],
                 id="a pod without container statuses yet is no problem"),
]  # fmt: skip


@pytest.mark.parametrize(("pods", "problems", "pulling"), POD_CASES)
def test_pod_problems_and_pulling_pods_come_from_the_containers_waiting_reasons(
    pods: list[dict[str, Any]], problems: list[str], pulling: list[str]
) -> None:
    assert status.pod_problems(pods) == problems
    assert status.pulling_pods(pods) == pulling


def test_missing_pull_secrets_are_read_from_the_kubelets_events_sorted_and_once() -> None:
    events = [
        {"message": "Unable to retrieve some image pull secrets (b-pull, a-pull); attempting"},
        {"message": "Unable to retrieve some image pull secrets (a-pull); attempting"},
        {"message": "Pulling image"},
    ]
    assert status.missing_pull_secrets(events) == ["a-pull", "b-pull"]


# --- init errors ------------------------------------------------------------------------------


def runtime_pod(
    name: str,
    *,
    started: bool | None,
    ready: bool,
    running: bool = True,
    deleting: bool = False,
    container: str = "function",
) -> dict[str, Any]:
    meta_: dict[str, Any] = {"name": name}
    if deleting:
        meta_["deletionTimestamp"] = "2024-05-01T12:00:00Z"
    container_status: dict[str, Any] = {
        "name": container,
        "ready": ready,
        "state": {"running": {}} if running else {"waiting": {"reason": "CrashLoopBackOff"}},
    }
    if started is not None:
        container_status["started"] = started
    return {"metadata": meta_, "status": {"containerStatuses": [container_status]}}


SUSPECT_CASES = [
    pytest.param(runtime_pod("a", started=True, ready=False), ["a"],
                 id="a runtime that finished loading, runs and is not ready may have failed"),
    pytest.param(runtime_pod("a", started=False, ready=False), [],
                 id="a runtime still loading is not suspected"),
    pytest.param(runtime_pod("a", started=None, ready=False), [],
                 id="a container the kubelet has not judged yet is not suspected"),
    pytest.param(runtime_pod("a", started=True, ready=True), [],
                 id="a ready runtime loaded its handler"),
    pytest.param(runtime_pod("a", started=True, ready=False, running=False), [],
                 id="a container that is not running has no runtime to ask"),
    pytest.param(runtime_pod("a", started=True, ready=False, deleting=True), [],
                 id="a pod being deleted is draining, not failing"),
    pytest.param(runtime_pod("a", started=True, ready=False, container="sidecar"), [],
                 id="only the function container runs the handler"),
]  # fmt: skip


@pytest.mark.parametrize(("pod_", "suspects"), SUSPECT_CASES)
def test_pods_are_suspected_of_an_init_error_from_their_function_containers_probes(
    pod_: dict[str, Any], suspects: list[str]
) -> None:
    assert status.init_error_suspects([pod_]) == suspects


REPORT = (
    'kfn runtime: init error {"errorType": "Runtime.ImportModuleError", '
    "\"errorMessage\": \"Unable to import module 'app': No module named 'requests'\"}"
)
IMPORT_ERROR = status.InitError(
    "hello-7d9-x",
    "Runtime.ImportModuleError",
    "Unable to import module 'app': No module named 'requests'",
)

LOG_CASES = [
    pytest.param(f"kfn runtime: python listening on *:8080\n{REPORT}\n", IMPORT_ERROR,
                 id="the report line of the runtime gives the error"),
    pytest.param('kfn runtime: init error {"errorType": "Runtime.HandlerNotFound", '
                 '"errorMessage": "old"}\n' + REPORT, IMPORT_ERROR,
                 id="the last report counts"),
    pytest.param(f"{REPORT}\nkfn runtime: init error {{not json\n", IMPORT_ERROR,
                 id="a report that is not JSON is skipped"),
    pytest.param("user output: kfn runtime: init error {}\n", None,
                 id="the prefix must start the line"),
    pytest.param("kfn runtime: python listening on *:8080\nSTART RequestId: 1\n", None,
                 id="a log without a report tells of no init error"),
    pytest.param("", None, id="an empty log tells nothing"),
]  # fmt: skip


@pytest.mark.parametrize(("log", "expected"), LOG_CASES)
def test_an_init_error_is_read_from_the_runtimes_report_line(
    log: str, expected: status.InitError | None
) -> None:
    assert status.init_error_in_log("hello-7d9-x", log) == expected


def test_an_init_error_makes_deployed_false_with_lambdas_error_and_what_to_do() -> None:
    live = deployment(wanted=1, replicas=1, updatedReplicas=1, readyReplicas=0)
    verdict = status.deployed(live, [], [], [IMPORT_ERROR])
    assert (verdict.status, verdict.reason) == ("False", "InitError")
    assert verdict.message == (
        "the handler could not be loaded: Runtime.ImportModuleError: Unable to import module "
        "'app': No module named 'requests' (pod hello-7d9-x). Every invocation is answered with "
        "this error until a pod loads the handler: fix the code, its dependencies or "
        "spec.handler."
    )


def test_an_init_error_is_reported_before_the_rollout_it_stalls_fails() -> None:
    live = deployment(
        conditions=[
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        ]
    )
    assert status.deployed(live, [], [], [IMPORT_ERROR]).reason == "InitError"


def _failed_to_load(generation: int = 4) -> list[meta.Condition]:
    """The conditions written when a pod of ``IMAGE`` reported an init error."""
    live = deployment(wanted=1, replicas=1, updatedReplicas=1, readyReplicas=0)
    facts = status.Facts(
        SOURCE_OK, BUILD_OK, IMAGE, "hash", live, init_errors=[IMPORT_ERROR], last_image=IMAGE
    )
    result = status.compute(_function(generation), facts, now=NOW, url="u")
    assert _conditions(result)["Ready"] == ("False", "InitError")
    return function.FunctionStatus.model_validate(result).conditions


OTHER_IMAGE = "registry.local/fn/team/hello@sha256:" + "1" * 64

STICKY_CASES = [
    pytest.param(4, rolled_out(0), IMAGE, (), ("False", "InitError"),
                 id="scaled to zero, the init error stays until a pod loads"),
    pytest.param(4, deployment(wanted=1, replicas=1, updatedReplicas=1, readyReplicas=0), IMAGE,
                 (), ("False", "InitError"),
                 id="a new pod still starting does not clear it"),
    pytest.param(4, rolled_out(1), IMAGE, (), ("True", "Deployed"),
                 id="a pod that loaded the handler clears it"),
    pytest.param(5, rolled_out(0), IMAGE, (), ("True", "Deployed"),
                 id="a changed spec (a new handler name) clears it"),
    pytest.param(4, rolled_out(0), OTHER_IMAGE, (), ("True", "Deployed"),
                 id="a new image (new code) clears it"),
    pytest.param(4, rolled_out(1), IMAGE, tuple(STUCK), ("False", "PodsFailing"),
                 id="another failure is the news"),
]  # fmt: skip


@pytest.mark.parametrize(("generation", "live", "last_image", "problems", "expected"), STICKY_CASES)
def test_an_init_error_stays_reported_until_a_pod_of_the_same_spec_and_image_loads(
    generation: int,
    live: dict[str, Any],
    last_image: str,
    problems: tuple[str, ...],
    expected: tuple[str, str],
) -> None:
    facts = status.Facts(SOURCE_OK, BUILD_OK, IMAGE, "hash", live, problems, last_image=last_image)
    result = status.compute(
        _function(generation), facts, now=LATER, url="u", previous=_failed_to_load()
    )
    assert _conditions(result)["Deployed"] == expected
    if expected[1] == "InitError":
        ready = next(c for c in result["conditions"] if c["type"] == "Ready")
        assert "No module named 'requests'" in ready["message"]
        assert ready["lastTransitionTime"] == meta.format_time(NOW)


def _deployed_at_zero(generation: int = 4) -> list[meta.Condition]:
    """The conditions of a function deployed and scaled to zero."""
    facts = status.Facts(SOURCE_OK, BUILD_OK, IMAGE, "hash", rolled_out(0), last_image=IMAGE)
    result = status.compute(_function(generation), facts, now=NOW, url="u")
    assert _conditions(result)["Ready"] == ("True", "Ready")
    return function.FunctionStatus.model_validate(result).conditions


SCALE_UP_CASES = [
    pytest.param(4, deployment(wanted=1, replicas=1, updatedReplicas=1, readyReplicas=0), IMAGE,
                 ("True", "Deployed"), id="a scale from zero keeps a deployed function Ready"),
    pytest.param(4, deployment(wanted=3, replicas=3, updatedReplicas=3, readyReplicas=1), IMAGE,
                 ("True", "Deployed"), id="a scale up under load keeps it Ready"),
    pytest.param(4, deployment(generation=3, observedGeneration=2, wanted=1), IMAGE,
                 ("True", "Deployed"),
                 id="the controller taking in a new replica count keeps it Ready"),
    pytest.param(5, deployment(wanted=1, replicas=1, updatedReplicas=1, readyReplicas=0), IMAGE,
                 ("Unknown", "Deploying"), id="a new spec's first pod starting is a rollout"),
    pytest.param(4, deployment(wanted=1, replicas=1, updatedReplicas=1, readyReplicas=0),
                 OTHER_IMAGE, ("Unknown", "Deploying"), id="a new image's pods starting too"),
    pytest.param(4, deployment(wanted=1, replicas=2, updatedReplicas=1, readyReplicas=1), IMAGE,
                 ("Unknown", "Deploying"), id="old pods still running are a rollout"),
]  # fmt: skip


@pytest.mark.parametrize(("generation", "live", "last_image", "expected"), SCALE_UP_CASES)
def test_pods_starting_for_a_scale_up_are_no_rollout(
    generation: int, live: dict[str, Any], last_image: str, expected: tuple[str, str]
) -> None:
    facts = status.Facts(SOURCE_OK, BUILD_OK, IMAGE, "hash", live, last_image=last_image)
    result = status.compute(
        _function(generation), facts, now=LATER, url="u", previous=_deployed_at_zero()
    )
    assert _conditions(result)["Deployed"] == expected
