"""What a build Job is given: resources, archive bounds and networks, recorded layers; what the
operator refuses before any Job; and what it says when a build pod was evicted (pure)."""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

import pytest

from kfn import urls
from kfn.api import function
from kfn.resources import build, provenance, status
from tests.unit.resources.buildsettings import SETTINGS

LAYER = function.DependencyLayerRecord.model_validate(
    {
        "key": "1" * 64,
        "digest": "sha256:" + "2" * 64,
        "size": 10,
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "diffId": "sha256:" + "2" * 64,
    }
)


def _function(source: dict[str, Any], runtime: str = "python3.11") -> function.Function:
    return function.Function.model_validate(
        {
            "metadata": {"name": "hello", "namespace": "team", "uid": "u", "generation": 1},
            "spec": {"runtime": runtime, "handler": "app.handler", "source": source},
        }
    )


INLINE = {"inline": {"files": [{"name": "app.py", "content": "x = 1\n"}]}}
SHA = "a" * 64


def _archive(url: str) -> dict[str, Any]:
    return {"archive": {"url": url, "sha256": SHA}}


def _steps(job: build.Job) -> list[dict[str, Any]]:
    pod = job["spec"]["template"]["spec"]
    return [*pod["initContainers"], *pod["containers"]]


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


# --- resources --------------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["python3.11", "nodejs18"])
def test_every_step_of_a_build_pod_has_cpu_memory_and_ephemeral_storage_limits(
    runtime: str,
) -> None:
    job = build.build_job(_function(INLINE, runtime), SHA, SETTINGS, files={})
    for step in _steps(job):
        assert step["resources"] == {
            "requests": {"cpu": "250m", "memory": "256Mi", "ephemeral-storage": "1Gi"},
            "limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "6Gi"},
        }, step["name"]


def test_the_charts_build_resources_replace_the_defaults() -> None:
    chart = {"requests": {"cpu": 0.5, "ephemeral-storage": "2Gi"}, "limits": {"cpu": 2}}
    settings = dataclasses.replace(SETTINGS, resources=build.parse_resources(chart))
    job = build.build_job(_function(INLINE), SHA, settings, files={})
    assert {json.dumps(step["resources"], sort_keys=True) for step in _steps(job)} == {
        json.dumps(
            {"requests": {"cpu": "0.5", "ephemeral-storage": "2Gi"}, "limits": {"cpu": "2"}},
            sort_keys=True,
        )
    }


def test_build_resources_the_chart_does_not_give_are_the_defaults() -> None:
    assert build.parse_resources(None) == build.DEFAULT_RESOURCES
    with pytest.raises(ValueError, match=r"builder\.resources must be an object"):
        build.parse_resources(["1Gi"])


# --- archives: bounds and networks ------------------------------------------------------------


def test_an_archive_build_is_given_its_unpacking_bounds_and_the_allowed_networks() -> None:
    settings = dataclasses.replace(
        SETTINGS,
        max_unpacked_mib=64,
        max_files=500,
        allowed_networks=urls.parse_networks(["10.0.0.0/8", "fd00::/8"]),
    )
    fn = _function(_archive("https://h.example/code.zip?sig=x"))
    env = _env(_steps(build.build_job(fn, SHA, settings, files=None))[0])
    assert env["KFN_BUILD_MAX_UNPACKED_BYTES"] == str(64 * 2**20)
    assert env["KFN_BUILD_MAX_FILES"] == "500"
    assert env["KFN_BUILD_ALLOWED_CIDRS"] == "10.0.0.0/8,fd00::/8"
    assert env["KFN_BUILD_ARCHIVE_URL"] == "https://h.example/code.zip?sig=x"


def test_a_build_from_files_has_no_archive_settings() -> None:
    env = _env(_steps(build.build_job(_function(INLINE), SHA, SETTINGS, files={}))[0])
    assert not {k for k in env if k.startswith(("KFN_BUILD_MAX", "KFN_BUILD_ALLOWED"))}


def test_the_recorded_dependency_layers_are_given_to_the_build_and_nothing_else() -> None:
    fn = _function(INLINE)
    with_layers = build.build_job(fn, SHA, SETTINGS, files={}, dependency_layers=[LAYER])
    given = json.loads(_env(_steps(with_layers)[0])["KFN_BUILD_DEPENDENCY_LAYERS"])
    assert given == [LAYER.model_dump(mode="json", by_alias=True)]
    without = build.build_job(fn, SHA, SETTINGS, files={})
    assert "KFN_BUILD_DEPENDENCY_LAYERS" not in _env(_steps(without)[0])


ARCHIVE_REFUSALS = [
    pytest.param("http://169.254.169.254/latest/meta-data/?x=1", (),
                 "refusing to fetch http://169.254.169.254/latest/meta-data/: 169.254.169.254, "
                 "a cloud metadata address", id="the metadata address, its query not shown"),
    pytest.param("http://metadata.google.internal/computeMetadata/v1/", (),
                 "metadata.google.internal is a cloud metadata service", id="the metadata name"),
    pytest.param("http://127.0.0.1:8080/code.zip", (), "127.0.0.1, a loopback address",
                 id="a loopback address"),
    pytest.param("http://[fe80::1]/code.zip", (), "fe80::1, a link-local address",
                 id="an IPv6 link-local address"),
    pytest.param("http://127.0.0.1:8080/code.zip", ("127.0.0.0/8",), None,
                 id="a network the admin allows"),
    pytest.param("https://archive.example.com/code.zip", (), None,
                 id="a name: the builder checks what it resolves to"),
    pytest.param("http://10.244.0.1:8000/code.zip", (), None, id="a private address"),
]  # fmt: skip


@pytest.mark.parametrize(("url", "allowed", "expected"), ARCHIVE_REFUSALS)
def test_an_archive_url_that_names_a_refused_address_is_refused_before_any_job(
    url: str, allowed: tuple[str, ...], expected: str | None
) -> None:
    settings = dataclasses.replace(SETTINGS, allowed_networks=urls.parse_networks(allowed))
    found = build.archive_refusal(_function(_archive(url)), settings)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert expected in found
        assert "?" not in found
        assert found.endswith(urls.ADVICE)


def test_a_source_that_is_no_archive_is_never_refused() -> None:
    assert build.archive_refusal(_function(INLINE), SETTINGS) is None


# --- failures ---------------------------------------------------------------------------------


STORAGE = "Pod ephemeral local storage usage exceeds the total limit of containers 6Gi."


def test_a_build_pod_evicted_for_its_storage_says_so() -> None:
    pod = {
        "status": {
            "phase": "Failed",
            "reason": "Evicted",
            "message": STORAGE,
            "initContainerStatuses": [
                {"name": "prepare", "state": {"terminated": {"exitCode": 137}}}
            ],
        }
    }
    job = {"status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    assert build.failure_message(job, [pod]) == f"evicted: {STORAGE}"


# --- the status carries the records -----------------------------------------------------------


def test_the_status_carries_the_build_records_and_leaves_them_out_when_there_are_none() -> None:
    fn = _function(INLINE)
    image = "registry.local/fn/team/hello@sha256:" + "d" * 64
    records = provenance.Records().built(SHA, provenance.Result(image, LAYER))
    built = status.Verdict("True", function.Reason.BUILT, f"image {image}")
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

    def compute(records: provenance.Records) -> dict[str, Any]:
        facts = status.Facts(built, built, image, "s" * 64, None, records=records)
        return status.compute(fn, facts, now=now, url=None)

    written = compute(records)
    assert written["builds"] == [{"hash": SHA, "image": image}]
    assert written["dependencyLayers"] == [LAYER.model_dump(mode="json", by_alias=True)]
    empty = compute(provenance.Records())
    assert "builds" not in empty
    assert "dependencyLayers" not in empty


# --- runtimes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", function.RUNTIMES)
def test_each_runtime_builds_on_its_own_image_and_checks_its_language_and_node_runs_npm(
    runtime: str,
) -> None:
    images = {r: f"registry.local/kfn/runtime-{r}@sha256:{'3' * 64}" for r in function.RUNTIMES}
    settings = dataclasses.replace(SETTINGS, runtime_images=images)
    steps = {
        s["name"]: s
        for s in _steps(build.build_job(_function(INLINE, runtime), SHA, settings, files={}))
    }
    assert steps["check"]["image"] == images[runtime]
    assert _env(steps["build"])["KFN_BUILD_BASE_IMAGE"] == images[runtime]
    python = runtime in function.PYTHON_RUNTIMES
    assert steps["check"]["command"][0] == ("python3" if python else "node")
    assert ("npm" in steps) is not python
    if not python:
        assert steps["npm"]["image"] == images[runtime]


# --- layers -----------------------------------------------------------------------------------

LAYER_IMAGE = "registry.example.com/layers/tools@sha256:" + "e" * 64
SPEC_LAYER = function.LayerRecord.model_validate(
    {**LAYER.model_dump(by_alias=True), "key": "3" * 64}
)


def _with_layers(*layers: dict[str, Any]) -> function.Function:
    fn = _function(INLINE)
    return fn.model_copy(
        update={
            "spec": fn.spec.model_copy(
                update={"layers": [function.FunctionLayer.model_validate(la) for la in layers]}
            )
        }
    )


def _layer_archive(url: str, name: str = "shared") -> dict[str, Any]:
    return {"name": name, "archive": {"url": url, "sha256": SHA}}


def test_the_layers_are_given_to_the_build_in_order_with_the_archive_bounds() -> None:
    fn = _with_layers(
        _layer_archive("https://h.example/shared.zip?sig=x"),
        {"name": "tools", "image": LAYER_IMAGE},
    )
    env = _env(_steps(build.build_job(fn, SHA, SETTINGS, files={}))[-1])
    assert json.loads(env["KFN_BUILD_LAYERS"]) == [
        {"name": "shared", "archive": {"url": "https://h.example/shared.zip?sig=x", "sha256": SHA}},
        {"name": "tools", "image": LAYER_IMAGE},
    ]
    assert env["KFN_BUILD_MAX_UNPACKED_BYTES"] == str(SETTINGS.max_unpacked_mib * 2**20)
    assert "KFN_BUILD_ARCHIVE_URL" not in env


def test_the_recorded_layers_are_given_only_to_a_build_with_layers() -> None:
    fn = _with_layers(_layer_archive("https://h.example/shared.zip"))
    env = _env(_steps(build.build_job(fn, SHA, SETTINGS, files={}, layers=[SPEC_LAYER]))[-1])
    assert json.loads(env["KFN_BUILD_LAYER_RECORDS"]) == [
        SPEC_LAYER.model_dump(mode="json", by_alias=True)
    ]
    plain = _env(
        _steps(build.build_job(_function(INLINE), SHA, SETTINGS, files={}, layers=[SPEC_LAYER]))[-1]
    )
    assert not {k for k in plain if k.startswith(("KFN_BUILD_LAYER", "KFN_BUILD_MAX"))}


@pytest.mark.parametrize(("url", "allowed", "expected"), ARCHIVE_REFUSALS)
def test_a_layer_url_that_names_a_refused_address_is_refused_before_any_job(
    url: str, allowed: tuple[str, ...], expected: str | None
) -> None:
    settings = dataclasses.replace(SETTINGS, allowed_networks=urls.parse_networks(allowed))
    fn = _with_layers(_layer_archive("https://fine.example/a.zip", "a"), _layer_archive(url, "b"))
    found = build.archive_refusal(fn, settings)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert expected in found
        assert "?" not in found


@pytest.mark.parametrize(
    ("registry", "refused"),
    [("169.254.169.254", True), ("127.0.0.1:5000", True), ("localhost", False),
     ("registry.example.com", False), ("10.0.0.7:5000", False)],
)  # fmt: skip
def test_a_layer_image_from_a_refused_address_is_refused_before_any_job(
    registry: str, refused: bool
) -> None:
    fn = _with_layers({"name": "tools", "image": f"{registry}/layers/tools@sha256:{'e' * 64}"})
    found = build.archive_refusal(fn, SETTINGS)
    assert (found is not None) == refused
    if found is not None:
        assert "the layer tools" in found


def test_a_layer_image_on_kfns_own_registry_is_never_refused() -> None:
    settings = dataclasses.replace(SETTINGS, registry="127.0.0.1:5000")
    fn = _with_layers({"name": "tools", "image": f"127.0.0.1:5000/fn/team/tools@sha256:{'e' * 64}"})
    assert build.archive_refusal(fn, settings) is None
    other = _with_layers(
        {"name": "tools", "image": f"127.0.0.1:5001/fn/team/tools@sha256:{'e' * 64}"}
    )
    assert build.archive_refusal(other, settings) is not None
