"""What kfn takes as built: a build Job's reported result, and the records kept of it (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kfn.api import function
from kfn.resources import build, provenance

REPOSITORY = "registry.local/fn/team/hello"
DIGEST = "sha256:" + "d" * 64
JOB = {"metadata": {"name": "hello-build-abc", "uid": "job-uid"}}
LAYER = {
    "key": "1" * 64,
    "digest": "sha256:" + "2" * 64,
    "size": 10240,
    "mediaType": "application/vnd.oci.image.layer.v1.tar",
    "diffId": "sha256:" + "2" * 64,
}


def _pod(
    message: Any,
    *,
    owner: str = "job-uid",
    controller: bool = True,
    container: str = build.BUILD_CONTAINER,
    exit_code: int = 0,
) -> dict[str, Any]:
    text = message if isinstance(message, str) else json.dumps(message)
    return {
        "metadata": {"ownerReferences": [{"kind": "Job", "uid": owner, "controller": controller}]},
        "status": {
            "containerStatuses": [
                {
                    "name": container,
                    "state": {"terminated": {"exitCode": exit_code, "message": text}},
                }
            ]
        },
    }


RESULT = {"image": f"{REPOSITORY}@{DIGEST}", "digest": DIGEST, "dependencyLayer": None}

# --- job_result: only what kfn's own build reported -------------------------------------------

JOB_RESULTS = [
    pytest.param([_pod(RESULT)], provenance.Result(f"{REPOSITORY}@{DIGEST}"),
                 id="the digest the build container reported, by digest"),
    pytest.param([_pod({**RESULT, "dependencyLayer": LAYER})],
                 provenance.Result(f"{REPOSITORY}@{DIGEST}",
                                   function.DependencyLayerRecord.model_validate(LAYER)),
                 id="with the dependency layer it made"),
    pytest.param([_pod({**RESULT, "dependencyLayer": {**LAYER, "digest": "latest"}})],
                 provenance.Result(f"{REPOSITORY}@{DIGEST}"),
                 id="a malformed dependency layer is not recorded"),
    pytest.param([], provenance.Missing, id="no pod: build again"),
    pytest.param([_pod(RESULT, owner="another-uid")], provenance.Missing,
                 id="a pod another Job controls is not this Job's"),
    pytest.param([_pod(RESULT, controller=False)], provenance.Missing,
                 id="a pod the Job merely owns is not its own"),
    pytest.param([_pod(RESULT, container="prepare")], provenance.Missing,
                 id="only the build container reports a result"),
    pytest.param([_pod(RESULT, exit_code=1)], provenance.Missing,
                 id="a build container that failed reports no result"),
    pytest.param([_pod("not json")], provenance.Rejected, id="an unreadable result"),
    pytest.param([_pod(["a", "list"])], provenance.Rejected, id="a result that is no object"),
    pytest.param([_pod({**RESULT, "image": f"{REPOSITORY}:latest"})], provenance.Rejected,
                 id="an image by tag"),
    pytest.param([_pod({**RESULT, "image": f"registry.local/fn/other/x@{DIGEST}"})],
                 provenance.Rejected, id="an image of another repository"),
    pytest.param([_pod({**RESULT, "digest": "sha256:abc", "image": f"{REPOSITORY}@sha256:abc"})],
                 provenance.Rejected, id="a digest that is not one"),
]  # fmt: skip


@pytest.mark.parametrize(("pods", "expected"), JOB_RESULTS)
def test_a_build_is_what_its_own_job_reported_and_nothing_else(
    pods: list[dict[str, Any]], expected: Any
) -> None:
    found = provenance.job_result(JOB, pods, REPOSITORY)
    if expected is provenance.Rejected:
        assert isinstance(found, provenance.Rejected)
        assert found.message.startswith("build hello-build-abc reported ")
    elif expected is provenance.Missing:
        assert found == provenance.Missing("it succeeded, but its result went with its pod")
    else:
        assert found == expected


# --- records: bounded, newest first -----------------------------------------------------------


def _hash(n: int) -> str:
    return f"{n:064x}"


def _image(n: int) -> str:
    return f"{REPOSITORY}@sha256:{n:064x}"


def _layer(key: int) -> function.DependencyLayerRecord:
    return function.DependencyLayerRecord.model_validate({**LAYER, "key": f"{key:064x}"})


def test_a_finished_build_is_recorded_first_and_the_oldest_is_forgotten() -> None:
    records = provenance.Records()
    for n in range(1, 5):
        records = records.built(_hash(n), provenance.Result(_image(n)))
    assert [b.hash for b in records.builds] == [_hash(4), _hash(3), _hash(2)]
    assert len(records.builds) == function.BUILD_RECORDS
    assert records.image(_hash(3)) == _image(3)
    assert records.image(_hash(1)) is None


def test_a_build_recorded_again_moves_to_the_front_once() -> None:
    records = provenance.Records()
    for n in (1, 2, 1):
        records = records.built(_hash(n), provenance.Result(_image(n)))
    assert [b.hash for b in records.builds] == [_hash(1), _hash(2)]


def test_dependency_layers_are_kept_most_recently_used_first() -> None:
    records = provenance.Records()
    for n, key in enumerate((1, 2, 3, 1, 4)):
        records = records.built(_hash(n), provenance.Result(_image(n), _layer(key)))
    assert [int(la.key, 16) for la in records.layers] == [4, 1, 3]


def test_a_build_without_dependencies_keeps_the_recorded_layers() -> None:
    records = provenance.Records().built(_hash(1), provenance.Result(_image(1), _layer(7)))
    records = records.built(_hash(2), provenance.Result(_image(2)))
    assert [int(la.key, 16) for la in records.layers] == [7]


def test_a_build_the_registry_lost_is_forgotten_and_the_others_kept() -> None:
    records = provenance.Records()
    for n in (1, 2):
        records = records.built(_hash(n), provenance.Result(_image(n), _layer(n)))
    records = records.without(_hash(2))
    assert [b.hash for b in records.builds] == [_hash(1)]
    assert len(records.layers) == 2


def test_records_are_read_from_the_status_the_operator_wrote() -> None:
    status = function.FunctionStatus.model_validate(
        {
            "builds": [{"hash": _hash(1), "image": _image(1)}],
            "dependencyLayers": [LAYER],
        }
    )
    records = provenance.Records.of(status)
    assert records.image(_hash(1)) == _image(1)
    assert records.layers[0].diff_id == LAYER["diffId"]
    assert provenance.Records.of(function.FunctionStatus()) == provenance.Records()
    assert provenance.Records.of(None) == provenance.Records()


def test_a_status_record_of_an_image_by_tag_is_not_a_valid_status() -> None:
    with pytest.raises(ValueError, match="builds"):
        function.FunctionStatus.model_validate(
            {"builds": [{"hash": _hash(1), "image": f"{REPOSITORY}:latest"}]}
        )


# --- layers of spec.layers ----------------------------------------------------------------------


def _spec_layer(key: int) -> dict[str, Any]:
    return {**LAYER, "key": f"{key:064x}", "digest": f"sha256:{key + 100:064x}"}


def test_the_layers_a_build_reports_are_recorded_by_their_content() -> None:
    pod = _pod({**RESULT, "layers": [_spec_layer(1), _spec_layer(2), _spec_layer(1)]})
    result = provenance.job_result(JOB, [pod], REPOSITORY)
    assert isinstance(result, provenance.Result)
    assert [int(la.key, 16) for la in result.layers] == [1, 2]


def test_a_malformed_layer_in_a_result_is_left_out() -> None:
    bad = {**_spec_layer(3), "digest": "sha256:short"}
    result = provenance.job_result(
        JOB, [_pod({**RESULT, "layers": [bad, _spec_layer(4)]})], REPOSITORY
    )
    assert isinstance(result, provenance.Result)
    assert [int(la.key, 16) for la in result.layers] == [4]


def test_layers_are_kept_most_recently_used_first_up_to_the_bound() -> None:
    records = provenance.Records()
    batches = [(1, 2, 3, 4, 5), (6, 7, 8, 9, 10), (11, 2)]
    for n, keys in enumerate(batches):
        layers = tuple(function.LayerRecord.model_validate(_spec_layer(k)) for k in keys)
        records = records.built(_hash(n), provenance.Result(_image(n), None, layers))
    kept = [int(la.key, 16) for la in records.extra_layers]
    assert kept == [11, 2, 6, 7, 8, 9, 10, 1, 3, 4]
    assert len(kept) == function.LAYER_RECORDS


def test_layer_records_survive_a_round_trip_through_the_status() -> None:
    layer = function.LayerRecord.model_validate(_spec_layer(5))
    records = provenance.Records().built(_hash(1), provenance.Result(_image(1), None, (layer,)))
    known = function.FunctionStatus(layers=list(records.extra_layers))
    assert provenance.Records.of(known).extra_layers == (layer,)
