"""The operator trusts only what kfn built: the digest its own build Job reported, recorded in
the Function's status, is what the Deployment runs; a tag in the registry is never a build.

The operator reconciles against a loopback stand-in of the Kubernetes API
(:mod:`tests.unit.operator.kubeapi`) and a real registry on loopback; the build Job is run by
running the builder itself on the Job's environment, and its pod is written as the kubelet
would write it.
"""

from __future__ import annotations

import json
import logging
import pathlib
import socket
from collections.abc import Iterator
from typing import Any

import prometheus_client
import pytest

from kfn import oci
from kfn.api import function
from kfn.builder import __main__ as builder
from kfn.builder.config import BuildConfig
from kfn.operator import builds, handlers, metrics, reconcile, settings
from kfn.resources import build, source
from tests.unit.operator import kubeapi

NS = "team"
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
PODS = f"/api/v1/namespaces/{NS}/pods"
FUNCTIONS = f"/apis/kfn.dev/v1alpha1/namespaces/{NS}/functions"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"
CODE = "def handler(event, context):\n    return 'built by kfn'\n"


@pytest.fixture(autouse=True)
def operator_env(monkeypatch: pytest.MonkeyPatch, registry: str, base_image: str) -> Iterator[None]:
    """The operator's environment, as the chart would set it for the loopback registry."""
    for key, value in {
        "KFN_IMAGE_REGISTRY": registry,
        "KFN_BUILDER_IMAGE": f"{registry}/kfn/kfn:test",
        **{build.runtime_image_env(r): base_image for r in function.RUNTIMES},
        "KFN_REGISTRY_PLAIN_HTTP": "true",
        "KFN_REGISTRY_CREDENTIALS": "none",
        "KFN_ACTIVATOR_URL": "http://kfn-activator.kfn-system.svc.cluster.local",
        "KFN_INVOKE_URL": "http://kfn-invoke.kfn-system.svc.cluster.local",
    }.items():
        monkeypatch.setenv(key, value)
    settings.builds.cache_clear()
    settings.registry_credentials.cache_clear()
    yield
    settings.builds.cache_clear()
    settings.registry_credentials.cache_clear()


def _body(api: kubeapi.KubeApi, source_: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Function as the API stand-in holds it (kopf hands the operator such a body)."""
    found = api.get(FUNCTIONS, "hello")
    if found is None:
        found = api.put(
            FUNCTIONS,
            {
                "apiVersion": "kfn.dev/v1alpha1",
                "kind": "Function",
                "metadata": {"name": "hello", "namespace": NS, "generation": 1},
                "spec": {
                    "runtime": "python3.11",
                    "handler": "app.handler",
                    "source": source_
                    or {"inline": {"files": [{"name": "app.py", "content": CODE}]}},
                },
            },
        )
    return json.loads(json.dumps(found))


@pytest.fixture(autouse=True)
def forget() -> Iterator[None]:
    yield
    reconcile.forget({"metadata": {"namespace": NS, "name": "hello"}})


def _parsed(body: dict[str, Any]) -> function.Function:
    fn = reconcile.parse(body)
    assert not isinstance(fn, str), fn
    return fn


def _hash(body: dict[str, Any]) -> str:
    fn = _parsed(body)
    return build.build_hash(fn, source.source_hash(fn), settings.builds())


def _plant(registry: str, tmp_path: pathlib.Path, ref: str, text: str) -> str:
    """Pushes an image that kfn never built under ``ref``, as anyone with push rights could."""
    root = tmp_path / f"planted-{text}"
    (root / "var" / "task").mkdir(parents=True)
    (root / "var" / "task" / "app.py").write_text(f"# {text}\n")
    store = oci.BlobStore(tmp_path / f"planted-blobs-{text}")
    image = store.image([store.layer_from_tree([("", root)])], oci.ImageConfig())
    return oci.Registry(registry, plain_http=True).push_image(image, oci.Reference.parse(ref))


def _run_job(api: kubeapi.KubeApi, name: str, tmp_path: pathlib.Path) -> dict[str, Any]:
    """Runs the build Job ``name`` with the real builder, then writes its pod and status as the
    kubelet and the Job controller would; returns the builder's result."""
    job = api.get(JOBS, name)
    assert job is not None, f"no Job {name}"
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    files = tmp_path / f"{name}-source"
    config_map = api.get(f"/api/v1/namespaces/{NS}/configmaps", name)
    assert config_map is not None
    for item in job["spec"]["template"]["spec"]["volumes"][-1]["configMap"]["items"]:
        (files / item["path"]).parent.mkdir(parents=True, exist_ok=True)
        (files / item["path"]).write_text(config_map["data"][item["key"]])
    (tmp_path / f"{name}-workspace").mkdir()
    env |= {
        "KFN_BUILD_WORKSPACE": str(tmp_path / f"{name}-workspace"),
        "KFN_BUILD_SOURCE_DIR": str(files),
        "KFN_TERMINATION_LOG": str(tmp_path / f"{name}-termination-log"),
    }
    result = builder.run("build", BuildConfig.from_env(env))
    assert result is not None
    _finish(api, name, json.dumps(result))
    return result


def _finish(api: kubeapi.KubeApi, name: str, message: str, *, owner: str | None = None) -> None:
    """The Job ``name`` succeeded, its build container ending with ``message``."""
    job = api.get(JOBS, name)
    assert job is not None
    uid = job["metadata"]["uid"] if owner is None else owner
    api.put(
        PODS,
        {
            "metadata": {
                "name": f"{name}-pod",
                "labels": {"batch.kubernetes.io/job-name": name},
                "ownerReferences": [{"kind": "Job", "name": name, "uid": uid, "controller": True}],
            },
            "status": {
                "containerStatuses": [
                    {
                        "name": build.BUILD_CONTAINER,
                        "state": {"terminated": {"exitCode": 0, "message": message}},
                    }
                ]
            },
        },
    )
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def _deployed_image(api: kubeapi.KubeApi) -> str | None:
    deployment = api.get(DEPLOYMENTS, "hello")
    if deployment is None:
        return None
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


# --- a build is what kfn's own Job reported ---------------------------------------------------


def test_a_tag_planted_in_the_functions_repository_is_not_taken_as_a_build(
    api: kubeapi.KubeApi, registry: str, tmp_path: pathlib.Path
) -> None:
    body = _body(api)
    hash_ = _hash(body)
    target = build.target(_parsed(body), hash_, settings.builds())
    planted = _plant(registry, tmp_path, target, "planted")

    started = reconcile.reconcile(body)
    assert _condition(started.status, "BuildSucceeded")["reason"] == "Building"
    assert api.names(JOBS) == [build.job_name(_parsed(body), hash_)]
    assert _deployed_image(api) is None

    result = _run_job(api, api.names(JOBS)[0], tmp_path)
    built = reconcile.reconcile(_body(api))
    image = f"{registry}/fn/{NS}/hello@{result['digest']}"
    assert result["digest"] != planted
    assert _condition(built.status, "BuildSucceeded")["reason"] == "Built"
    assert built.status["image"] == image
    assert _deployed_image(api) == image
    assert built.status["builds"] == [{"hash": hash_, "image": image}]
    assert api.get(FUNCTIONS, "hello")["status"]["builds"] == built.status["builds"]  # type: ignore[index]


def test_a_recorded_build_runs_by_its_digest_without_building_again_when_the_tag_moves(
    api: kubeapi.KubeApi, registry: str, tmp_path: pathlib.Path
) -> None:
    body = _body(api)
    reconcile.reconcile(body)
    [job] = api.names(JOBS)
    result = _run_job(api, job, tmp_path)
    first = reconcile.reconcile(_body(api))
    # The Job is gone (its time to live ran out), and someone moves the tag.
    api.answer("DELETE", f"{JOBS}/{job}", None)
    _plant(registry, tmp_path, build.target(_parsed(body), _hash(body), settings.builds()), "moved")
    again = reconcile.reconcile(_body(api))
    assert again.status["image"] == first.status["image"]
    assert again.status["image"].endswith(f"@{result['digest']}")
    assert _condition(again.status, "BuildSucceeded")["reason"] == "Built"
    assert api.names(JOBS) == []


def test_a_recorded_image_the_registry_lost_is_built_again(
    api: kubeapi.KubeApi, registry: str
) -> None:
    body = _body(api)
    lost = f"{registry}/fn/{NS}/hello@sha256:" + "e" * 64
    known = function.FunctionStatus.model_validate(
        {"image": lost, "builds": [{"hash": _hash(body), "image": lost}]}
    )
    resolution = builds.resolve(_parsed(body), known)
    assert resolution.build.reason == "Building"
    assert "the registry no longer holds" in resolution.build.message
    assert resolution.records is not None
    assert resolution.records.image(_hash(body)) is None
    again = builds.resolve(_parsed(body), function.FunctionStatus())
    assert again.build.message.endswith("started")


def test_a_succeeded_job_whose_result_is_gone_is_started_again(api: kubeapi.KubeApi) -> None:
    body = _body(api)
    reconcile.reconcile(body)
    [job] = api.names(JOBS)
    _finish(api, job, json.dumps({"image": "x"}), owner="a pod of another Job")
    outcome = reconcile.reconcile(_body(api))
    assert "to start again: " in _condition(outcome.status, "BuildSucceeded")["message"]
    assert api.names(JOBS) == []
    reconcile.reconcile(_body(api))
    assert api.names(JOBS) == [job]


def test_a_job_that_reports_an_image_of_another_repository_fails_the_build(
    api: kubeapi.KubeApi, registry: str
) -> None:
    body = _body(api)
    reconcile.reconcile(body)
    [job] = api.names(JOBS)
    digest = "sha256:" + "f" * 64
    _finish(api, job, json.dumps({"image": f"{registry}/fn/other/x@{digest}", "digest": digest}))
    outcome = reconcile.reconcile(_body(api))
    build_succeeded = _condition(outcome.status, "BuildSucceeded")
    assert (build_succeeded["status"], build_succeeded["reason"]) == ("False", "BuildFailed")
    assert f"not one of {registry}/fn/{NS}/hello by digest" in build_succeeded["message"]
    assert "builds" not in outcome.status
    assert _deployed_image(api) is None


def test_the_recorded_dependency_layers_are_handed_to_the_next_build(
    api: kubeapi.KubeApi,
) -> None:
    body = _body(api)
    layer = {
        "key": "1" * 64,
        "digest": "sha256:" + "2" * 64,
        "size": 10,
        "mediaType": oci.MEDIA_LAYER,
        "diffId": "sha256:" + "3" * 64,
    }
    known = function.FunctionStatus.model_validate({"dependencyLayers": [layer]})
    builds.resolve(_parsed(body), known)
    [job] = api.names(JOBS)
    spec = api.get(JOBS, job)["spec"]["template"]["spec"]  # type: ignore[index]
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert json.loads(env["KFN_BUILD_DEPENDENCY_LAYERS"]) == [layer]


def _layer_image(registry: str, tmp_path: pathlib.Path) -> str:
    """An image whose /opt is a layer (opt/python/tool.py), by digest."""
    root = tmp_path / "layer-root"
    (root / "opt" / "python").mkdir(parents=True)
    (root / "opt" / "python" / "tool.py").write_text("WHO = 'layer'\n")
    store = oci.BlobStore(tmp_path / "layer-blobs")
    image = store.image([store.layer_from_tree([("", root)])], oci.ImageConfig())
    ref = oci.Reference(registry, "tests/tools", "1")
    return (
        f"{registry}/tests/tools@{oci.Registry(registry, plain_http=True).push_image(image, ref)}"
    )


def test_a_functions_layers_are_recorded_and_reused_by_its_next_build(
    api: kubeapi.KubeApi, registry: str, tmp_path: pathlib.Path
) -> None:
    body = _body(api)
    body["spec"]["layers"] = [{"name": "tools", "image": _layer_image(registry, tmp_path)}]
    api.put(FUNCTIONS, body)
    reconcile.reconcile(_body(api))
    [first_job] = api.names(JOBS)
    first = _run_job(api, first_job, tmp_path)
    built = reconcile.reconcile(_body(api))
    assert built.status["layers"] == first["layers"]
    assert first["layersReused"] == 0
    # New code, same layer: the next build is handed the record and reuses the layer.
    changed = _body(api)
    changed["spec"]["source"]["inline"]["files"][0]["content"] = CODE + "# v2\n"
    changed["metadata"]["generation"] = 2
    api.put(FUNCTIONS, changed)
    reconcile.reconcile(_body(api))
    [second_job] = [name for name in api.names(JOBS) if name != first_job]
    spec = api.get(JOBS, second_job)["spec"]["template"]["spec"]  # type: ignore[index]
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert json.loads(env["KFN_BUILD_LAYER_RECORDS"]) == first["layers"]
    second = _run_job(api, second_job, tmp_path)
    assert second["layersReused"] == 1
    assert second["layers"] == first["layers"]


def test_a_layer_image_on_the_metadata_address_fails_without_a_job(api: kubeapi.KubeApi) -> None:
    body = _body(api)
    body["spec"]["layers"] = [
        {"name": "tools", "image": f"169.254.169.254/layers/tools@sha256:{'a' * 64}"}
    ]
    api.put(FUNCTIONS, body)
    outcome = reconcile.reconcile(_body(api))
    failed = _condition(outcome.status, "BuildSucceeded")
    assert (failed["status"], failed["reason"]) == ("False", "BuildFailed")
    assert "the layer tools" in failed["message"]
    assert "169.254.169.254, a cloud metadata address" in failed["message"]
    assert api.names(JOBS) == []


# --- archive URLs: refused addresses, and never shown with their query -----------------------


def test_an_archive_on_the_metadata_address_fails_without_a_job_and_is_shown_redacted(
    api: kubeapi.KubeApi,
) -> None:
    url = "http://169.254.169.254/latest/meta-data/iam/security-credentials/?token=s3cr3t"
    body = _body(api, {"archive": {"url": url, "sha256": "a" * 64}})
    outcome = reconcile.reconcile(body)
    ready = _condition(outcome.status, "Ready")
    failed = _condition(outcome.status, "BuildSucceeded")
    assert (ready["status"], failed["status"], failed["reason"]) == (
        "False",
        "False",
        "BuildFailed",
    )
    assert failed["message"].startswith(
        "refusing to fetch http://169.254.169.254/latest/meta-data/iam/security-credentials/: "
        "169.254.169.254, a cloud metadata address"
    )
    assert api.names(JOBS) == []
    assert "s3cr3t" not in json.dumps(outcome.status)


def test_a_failed_build_never_shows_the_archive_urls_query_string() -> None:
    url = "https://bucket.example/code.zip?X-Amz-Signature=s3cr3t"
    pod = {
        "status": {
            "initContainerStatuses": [
                {
                    "name": "prepare",
                    "state": {"terminated": {"exitCode": 1, "message": f"fetching {url} failed"}},
                }
            ]
        }
    }
    verdict = builds.failed_build(NS, "hello-build-1", {}, [pod], url)
    assert verdict.message.endswith("step prepare: fetching https://bucket.example/code.zip failed")


def test_a_failed_build_never_shows_a_layer_urls_query_string() -> None:
    source_url = "https://bucket.example/code.zip?sig=one"
    layer_url = "https://bucket.example/layer.zip?X-Amz-Signature=s3cr3t"
    message = f"layer shared: fetching {layer_url} failed"
    pod = {
        "status": {
            "containerStatuses": [
                {"name": "build", "state": {"terminated": {"exitCode": 1, "message": message}}}
            ]
        }
    }
    verdict = builds.failed_build(NS, "hello-build-1", {}, [pod], source_url, layer_url)
    assert verdict.message.endswith("fetching https://bucket.example/layer.zip failed")
    assert "s3cr3t" not in verdict.message


def test_a_build_job_that_is_going_is_waited_for_before_a_new_one_starts(
    api: kubeapi.KubeApi,
) -> None:
    body = _body(api)
    name = build.job_name(_parsed(body), _hash(body))
    going = {"name": name, "deletionTimestamp": "2026-01-01T00:00:00Z"}
    api.put(JOBS, {"metadata": going, "status": {"succeeded": 1}})
    resolution = builds.resolve(_parsed(body), function.FunctionStatus())
    assert resolution.build.message == f"build {name} waiting for the previous Job to go"
    assert resolution.retry_after == 1.0
    assert api.names(JOBS) == [name]


def test_a_recorded_build_stands_while_the_registry_cannot_be_reached(
    api: kubeapi.KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = _body(api)
    hash_ = _hash(body)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed = unused.getsockname()[1]
    monkeypatch.setenv("KFN_IMAGE_REGISTRY", f"127.0.0.1:{closed}")
    settings.builds.cache_clear()
    image = f"127.0.0.1:1/fn/{NS}/hello@sha256:" + "e" * 64
    known = function.FunctionStatus.model_validate(
        {"image": image, "builds": [{"hash": hash_, "image": image}]}
    )
    resolution = builds.resolve(_parsed(body), known)
    assert (resolution.build.reason, resolution.image, resolution.current) == ("Built", image, True)
    assert api.names(JOBS) == []


# --- build metrics: each finished build recorded once ----------------------------------------

LOG = logging.getLogger("tests.build_metrics")


def _sample(name: str, phase: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name, {"phase": phase}) or 0.0


def _durations() -> dict[str, tuple[float, float]]:
    """Each phase's (count, sum) of kfn_build_duration_seconds so far."""
    return {
        phase: (
            _sample("kfn_build_duration_seconds_count", phase),
            _sample("kfn_build_duration_seconds_sum", phase),
        )
        for phase in metrics.BUILD_PHASES
    }


def _timed(api: kubeapi.KubeApi, name: str) -> dict[str, Any]:
    """The finished Job ``name`` as the cluster writes it: its start and completion times, and
    its steps' containers started and finished (whole seconds, as Kubernetes keeps them)."""
    job = api.get(JOBS, name)
    pod = api.get(PODS, f"{name}-pod")
    assert job is not None
    assert pod is not None
    job["status"] |= {"startTime": "2026-12-04T10:00:00Z", "completionTime": "2026-12-04T10:00:09Z"}
    pod["status"]["initContainerStatuses"] = [
        {
            "name": "prepare",
            "state": {"terminated": {"exitCode": 0, "startedAt": "2026-12-04T10:00:01Z",
                                     "finishedAt": "2026-12-04T10:00:02Z"}},
        },
        {
            "name": build.CHECK_CONTAINER,
            "state": {"terminated": {"exitCode": 0, "startedAt": "2026-12-04T10:00:03Z",
                                     "finishedAt": "2026-12-04T10:00:05Z"}},
        },
    ]  # fmt: skip
    return job


def test_a_finished_build_is_recorded_once_with_the_times_of_its_phases(
    api: kubeapi.KubeApi, tmp_path: pathlib.Path
) -> None:
    reconcile.reconcile(_body(api))
    [name] = api.names(JOBS)
    result = _run_job(api, name, tmp_path)
    job = _timed(api, name)
    before = _durations()

    for _ in range(3):  # the Job's later events (status tidying, the operator's own) repeat it
        handlers.build_job_event(
            event={"type": "MODIFIED", "object": job}, logger=LOG, functions_by_name={}
        )

    after = _durations()
    added = {p: (after[p][0] - before[p][0], after[p][1] - before[p][1]) for p in after}
    seconds = result["seconds"]
    assert added["prepare"] == (1, pytest.approx(seconds["prepare"]))
    assert added["check"] == (1, 2.0)
    assert added["install"] == (0, 0), "nothing to install: no install phase"
    assert added["push"] == (1, pytest.approx(seconds["layers"] + seconds["push"]))
    assert added["total"] == (1, 9.0)


def test_a_build_that_ended_before_the_operator_started_is_not_counted_by_it(
    api: kubeapi.KubeApi, tmp_path: pathlib.Path
) -> None:
    reconcile.reconcile(_body(api))
    [name] = api.names(JOBS)
    _run_job(api, name, tmp_path)
    job = _timed(api, name)
    before = _durations()

    # kopf's first listing (no event type), then a later change of the same Job.
    handlers.build_job_event(event={"type": None, "object": job}, logger=LOG, functions_by_name={})
    handlers.build_job_event(
        event={"type": "MODIFIED", "object": job}, logger=LOG, functions_by_name={}
    )

    assert _durations() == before


def _ended_job(*steps: tuple[str, dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A build Job that failed (a test marks it complete instead) and its pod, whose steps
    ended as ``steps`` say."""
    job = {
        "metadata": {"name": "b", "namespace": NS, "uid": "job-uid"},
        "status": {"conditions": [{"type": "Failed", "status": "True"}], "failed": 1},
    }
    statuses = [{"name": name, "state": state} for name, state in steps]
    pod = {
        "metadata": {"name": "b-pod", "ownerReferences": [{"uid": "job-uid"}]},
        "status": {"initContainerStatuses": statuses[:-1], "containerStatuses": statuses[-1:]},
    }
    return job, [pod]


OK = {"terminated": {"exitCode": 0}}


def _failed(message: str = "", exit_code: int = 1) -> dict[str, Any]:
    return {"terminated": {"exitCode": exit_code, "message": message}}


@pytest.mark.parametrize(
    ("steps", "phase"),
    [
        (
            [
                ("prepare", _failed('{"error":"sha256 mismatch","phase":"prepare"}')),
                ("check", {"waiting": {}}),
                ("build", {"waiting": {}}),
            ],
            "prepare",
        ),
        (
            [
                ("prepare", OK),
                ("check", _failed('{"reason":"CodeCheckFailed","files":[]}')),
                ("build", {"waiting": {}}),
            ],
            "check",
        ),
        (
            [
                ("prepare", OK),
                ("check", OK),
                ("npm", _failed("npm ERR! 404")),
                ("build", {"waiting": {}}),
            ],
            "install",
        ),
        (
            [
                ("prepare", OK),
                ("check", OK),
                ("build", _failed('{"error":"pip failed","phase":"install"}')),
            ],
            "install",
        ),
        (
            [
                ("prepare", OK),
                ("check", OK),
                ("build", _failed('{"error":"401 from the registry","phase":"push"}')),
            ],
            "push",
        ),
        # Killed before it could say (out of memory): the build container runs two phases.
        ([("prepare", OK), ("check", OK), ("build", _failed("Killed", 137))], "unknown"),
        # The deadline stopped the build while npm ran.
        (
            [("prepare", OK), ("check", OK), ("npm", {"running": {}}), ("build", {"waiting": {}})],
            "install",
        ),
    ],
    ids=[
        "prepare",
        "code-check",
        "npm",
        "pip",
        "push",
        "killed-in-the-build-container",
        "deadline-during-npm",
    ],
)
def test_a_failed_build_is_counted_by_the_phase_it_failed_in(
    steps: list[tuple[str, dict[str, Any]]], phase: str
) -> None:
    job, pods = _ended_job(*steps)

    assert builds.report(job, pods) == metrics.BuildReport(failed_in=phase)


def test_a_failed_build_whose_pod_is_gone_failed_in_an_unknown_phase() -> None:
    job, _ = _ended_job(("build", {"waiting": {}}))

    assert builds.report(job, []) == metrics.BuildReport(failed_in="unknown")


def test_a_failed_build_is_counted_once_and_observes_no_durations(api: kubeapi.KubeApi) -> None:
    job, [pod] = _ended_job(("prepare", OK), ("check", _failed("{}")), ("build", {"waiting": {}}))
    pod["metadata"]["labels"] = {"batch.kubernetes.io/job-name": "b"}
    api.put(JOBS, job)
    api.put(PODS, pod)
    job = api.get(JOBS, "b") or {}
    before, failures = _durations(), _sample("kfn_build_failures_total", "check")

    for _ in range(2):
        handlers.build_job_event(
            event={"type": "MODIFIED", "object": job}, logger=LOG, functions_by_name={}
        )

    assert _sample("kfn_build_failures_total", "check") - failures == 1
    assert _durations() == before


def test_npms_install_is_timed_by_its_container_when_it_installed_something() -> None:
    message = {
        "image": "r/fn/team/hello@sha256:" + "a" * 64,
        "dependencyLayer": {"key": "k", "digest": "sha256:" + "b" * 64},
        "dependenciesReused": False,
        "seconds": {"source": 0.01, "prepare": 0.2, "layers": 0.5, "push": 1.25, "total": 2.0},
    }
    npm = {"terminated": {"exitCode": 0, "startedAt": "2026-12-04T10:00:03Z",
                          "finishedAt": "2026-12-04T10:00:07Z"}}  # fmt: skip
    job, pods = _ended_job(
        ("prepare", OK), ("npm", npm), ("build", _failed(json.dumps(message), 0))
    )
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}

    durations = builds.report(job, pods).durations

    assert durations == {"prepare": 0.2, "install": 4.0, "push": 1.75}
    message["dependenciesReused"] = True
    pods[0]["status"]["containerStatuses"][0]["state"] = _failed(json.dumps(message), 0)
    assert "install" not in builds.report(job, pods).durations
