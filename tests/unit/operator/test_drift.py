"""When a child of a Function has drifted from what kfn wants: ``contains`` and ``drifted``.

A child event reconciles its Function at once only when the child no longer carries every
field kfn applied; the server's own defaults and other managers' additions are not drift.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kfn import resources
from kfn.api import function
from kfn.operator import reconcile, settings
from kfn.resources import build, objects

IMAGE = "registry.local/fn/team/web@sha256:" + "a" * 64
OLD_IMAGE = "registry.local/fn/team/web@sha256:" + "b" * 64

# --- contains ---------------------------------------------------------------------------------

CONTAINS_CASES = [
    pytest.param(80, 80, True, id="an equal value is contained"),
    pytest.param("80", 80, False, id="a number is not its string"),
    pytest.param({"a": 1, "b": 2}, {"a": 1}, True,
                 id="fields the server added beside kfn's are ignored"),
    pytest.param({"a": 1}, {}, True, id="an empty mapping asks for nothing"),
    pytest.param({"b": 2}, {"a": 1}, False, id="a field kfn set that is gone is missing"),
    pytest.param({}, {"a": None}, False, id="a field kfn set to null must still be there"),
    pytest.param({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}, False,
                 id="a changed value deep inside is found"),
    pytest.param([{"name": "x", "extra": 1}, {"name": "y"}], [{"name": "x"}, {"name": "y"}], True,
                 id="list elements may carry server defaults"),
    pytest.param([{"name": "y"}, {"name": "x"}], [{"name": "x"}, {"name": "y"}], False,
                 id="a list in another order has drifted"),
    pytest.param([{"name": "x"}, {"name": "y"}], [{"name": "x"}], False,
                 id="a list with an element more has drifted"),
    pytest.param([{"name": "x"}], [{"name": "x"}, {"name": "y"}], False,
                 id="a list with an element less has drifted"),
    pytest.param("text", {"a": 1}, False, id="a scalar where kfn set a mapping has drifted"),
    pytest.param({"0": "x"}, ["x"], False, id="a mapping where kfn set a list has drifted"),
]  # fmt: skip


@pytest.mark.parametrize(("live", "desired", "expected"), CONTAINS_CASES)
def test_contains_compares_only_what_kfn_set(live: Any, desired: Any, expected: bool) -> None:
    assert reconcile.contains(live, desired) is expected


# --- drifted ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def operator_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The operator's environment as the chart sets it; its settings are read once, so the
    cache is cleared around each test."""
    monkeypatch.setenv("KFN_IMAGE_REGISTRY", "registry.local")
    monkeypatch.setenv("KFN_BUILDER_IMAGE", "registry.local/kfn/kfn:0.1.0")
    for runtime in function.RUNTIMES:
        monkeypatch.setenv(
            build.runtime_image_env(runtime), f"registry.local/kfn/runtime-{runtime}:0.1.0"
        )
    settings.builds.cache_clear()
    yield
    settings.builds.cache_clear()


def prebuilt(**spec: Any) -> dict[str, Any]:
    """A Function body running a prebuilt image, as kopf hands it over."""
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "web", "namespace": "team", "uid": "uid-1", "generation": 1},
        "spec": {"runtime": "python3.11", "handler": "app.handler", "source": {"image": IMAGE}}
        | spec,
    }


def built(status: dict[str, Any] | None) -> dict[str, Any]:
    """A Function body built from inline source, with the status the operator last wrote."""
    body = prebuilt(source={"inline": {"files": [{"name": "app.py", "content": "x = 1"}]}})
    body["status"] = status
    return body


def applied(body: dict[str, Any], kind: str, source_hash: str | None = None) -> dict[str, Any]:
    """The child of ``kind`` as kfn applies it, plus what the API server adds to what it stores."""
    fn = function.Function.model_validate(body)
    _, _, image = reconcile.resolve_source(fn)
    assert image is not None
    hash_ = source_hash if source_hash is not None else resources.source_hash(fn)
    children = reconcile.desired_children(fn, image, hash_, initial_replicas=None)
    child = copy.deepcopy(next(c for c in children if c["kind"] == kind))
    child["metadata"] |= {"resourceVersion": "42", "creationTimestamp": "2024-05-01T00:00:00Z"}
    child["status"] = {"observedGeneration": 1}
    if kind == "Deployment":
        child["spec"]["replicas"] = 3
        child["spec"]["progressDeadlineSeconds"] = 600
        pod = child["spec"]["template"]["spec"]
        pod["dnsPolicy"] = "ClusterFirst"
        pod["containers"][0]["terminationMessagePath"] = "/dev/termination-log"
    if kind == "Service":
        child["spec"]["clusterIP"] = "10.96.0.12"
    return child


def setting(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit of a live child: sets the field at a dotted ``path`` (numbers index lists)."""

    def edit(child: dict[str, Any]) -> None:
        parent, key = _parent(child, path)
        parent[key] = value

    return edit


def removing(path: str) -> Callable[[dict[str, Any]], None]:
    """An edit of a live child: deletes the field or list element at a dotted ``path``."""

    def edit(child: dict[str, Any]) -> None:
        parent, key = _parent(child, path)
        del parent[key]

    return edit


def _parent(child: dict[str, Any], path: str) -> tuple[Any, Any]:
    keys: list[Any] = [int(k) if k.lstrip("-").isdigit() else k for k in path.split(".")]
    node: Any = child
    for key in keys[:-1]:
        node = node[key]
    return node, keys[-1]


CONTAINER = "spec.template.spec.containers.0"

DRIFT_CASES = [
    pytest.param("Deployment", None, False,
                 id="a Deployment with only the server's defaults and the autoscaler's replicas "
                    "has not drifted"),
    pytest.param("Deployment", setting(f"{CONTAINER}.image", OLD_IMAGE), True,
                 id="a Deployment running another image has drifted"),
    pytest.param("Deployment", removing(f"{CONTAINER}.env.-1"), True,
                 id="a Deployment missing an environment variable kfn set has drifted"),
    pytest.param("Deployment", removing("metadata.ownerReferences"), True,
                 id="a Deployment no longer owned by its Function has drifted"),
    pytest.param("Service", None, False,
                 id="a Service with a cluster IP assigned has not drifted"),
    pytest.param("Service", setting("spec.selector", {"app": "someone-else"}), True,
                 id="a Service selecting other pods has drifted"),
    pytest.param("Service", setting("metadata.labels.team", "payments"), False,
                 id="a label someone else added to a Service is not drift"),
    pytest.param("ServiceAccount", None, False,
                 id="an unchanged ServiceAccount has not drifted"),
    pytest.param("ServiceAccount", setting("automountServiceAccountToken", True), True,
                 id="a ServiceAccount that mounts its token again has drifted"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "edit", "expected"), DRIFT_CASES)
def test_a_child_has_drifted_when_it_lacks_a_field_kfn_applied(
    kind: str, edit: Callable[[dict[str, Any]], None] | None, expected: bool
) -> None:
    body = prebuilt()
    live = applied(body, kind)
    if edit is not None:
        edit(live)
    assert reconcile.drifted(body, live) is expected


def test_a_child_of_another_kind_is_never_drift() -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}}
    assert reconcile.drifted(prebuilt(), config_map) is False


def test_a_function_whose_spec_cannot_be_used_has_no_children_to_drift() -> None:
    body = prebuilt(runtime="cobol")
    live = applied(prebuilt(), "Deployment")
    setting(f"{CONTAINER}.image", OLD_IMAGE)(live)
    assert reconcile.drifted(body, live) is False


def test_a_built_function_without_an_image_yet_has_no_children_to_drift() -> None:
    live = applied(prebuilt(), "Deployment")
    assert reconcile.drifted(built(None), live) is False


def test_a_deployment_still_serving_an_earlier_build_is_compared_with_that_build() -> None:
    """While the next build runs, the Deployment keeps the image and the hash it was built
    from (its own annotation says which), so it has not drifted; its pods must carry that
    hash too."""
    body = built({"image": OLD_IMAGE, "sourceHash": "hash-of-the-previous-version"})
    live = applied(body, "Deployment", source_hash="hash-of-the-previous-version")
    assert live["metadata"]["annotations"][objects.ANNOTATION_SOURCE_HASH] != (
        resources.source_hash(function.Function.model_validate(body))
    )
    assert reconcile.drifted(body, live) is False
    live["spec"]["template"]["metadata"]["annotations"][objects.ANNOTATION_SOURCE_HASH] = "other"
    assert reconcile.drifted(body, live) is True
