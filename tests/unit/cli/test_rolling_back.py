"""``kubectl kfn rollback``: the version it goes back to, what it refuses, and the patch."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kfn.api import function
from kfn.cli import errors, rollingback

from .conftest import Run

IMAGE = "registry.kfn.svc:5000/team-a/hello@sha256:" + "1" * 64


def _fn(
    aliases: list[dict[str, Any]] | None = None,
    versions: tuple[int, ...] = (3, 2, 1),
    status_aliases: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "hello", "namespace": "team-a", "resourceVersion": "41"},
        "spec": {
            "runtime": "python3.13",
            "handler": "app.handler",
            "source": {"inline": {"files": [{"name": "app.py", "content": "x = 2"}]}},
            "dependencies": ["requests==2.32.3"],
            "timeout": "30s",
            "env": [{"name": "MODE", "value": "new"}],
            "publish": "Always",
            "versionRetention": 10,
            "aliases": aliases or [],
            **spec,
        },
        "status": {
            "versions": [
                {"version": n, "image": IMAGE, "configHash": "a" * 64, "published": ""}
                for n in versions
            ],
            "latestVersion": max(versions, default=None),
        },
    }
    if status_aliases is not None:
        body["status"]["aliases"] = status_aliases
    return body


def _version(number: int, **template: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "FunctionVersion",
        "metadata": {"name": f"hello-v{number}", "namespace": "team-a"},
        "spec": {
            "function": "hello",
            "version": number,
            "configHash": "b" * 64,
            "template": {
                "runtime": "python3.13",
                "handler": "app.handler",
                "source": {"image": IMAGE},
                "dependencies": [],
                "layers": [],
                "timeout": "30s",
                "env": [{"name": "MODE", "value": "old"}],
                "publish": "Always",
                "versionRetention": 10,
                "aliases": [],
                "scale": {"minReplicas": 0, "maxReplicas": 10, "idleTimeout": "60s"},
                **template,
            },
        },
    }


LIVE = {"name": "live", "version": 3}
BETA = {"name": "beta", "version": 1, "additionalVersion": {"version": 2, "weight": 10}}


# --- which version an alias goes back to -------------------------------------------------------


def test_an_alias_goes_back_to_the_version_its_rollout_moved_it_from() -> None:
    rollout = {"from": 1, "to": 3, "step": 1, "stepStarted": "", "outcome": "Promoted"}
    fn = _fn([LIVE], status_aliases=[{"name": "live", "routes": [], "rollout": rollout}])

    assert rollingback.alias_target(fn, "live", None) == 1


def test_an_alias_whose_rollout_was_to_another_version_goes_back_to_the_next_older_one() -> None:
    # The rollout 1 -> 2 finished; the spec then moved live to 3 without a rollout.
    rollout = {"from": 1, "to": 2, "step": 1, "stepStarted": "", "outcome": "Promoted"}
    fn = _fn([LIVE], status_aliases=[{"name": "live", "routes": [], "rollout": rollout}])

    assert rollingback.alias_target(fn, "live", None) == 2


def test_an_alias_without_a_rollout_goes_back_to_the_newest_older_version_that_exists() -> None:
    fn = _fn([{"name": "live", "version": 5}], versions=(5, 3, 1))

    assert rollingback.alias_target(fn, "live", None) == 3


def test_an_alias_goes_where_to_says_when_that_version_exists() -> None:
    assert rollingback.alias_target(_fn([LIVE]), "live", 1) == 1


def test_an_alias_that_does_not_exist_is_refused_naming_the_aliases_there_are() -> None:
    with pytest.raises(errors.CliError, match=r'no alias "prod" \(its aliases: live, beta\)'):
        rollingback.alias_target(_fn([LIVE, BETA]), "prod", None)


def test_an_alias_on_the_oldest_version_is_refused_asking_for_to() -> None:
    with pytest.raises(errors.CliError, match=r"no older version exists.*pass --to VERSION"):
        rollingback.alias_target(_fn([{"name": "live", "version": 1}]), "live", None)


def test_a_version_that_is_not_published_is_refused_listing_those_that_are() -> None:
    with pytest.raises(errors.CliError, match=r"no version 7 \(its versions: 3, 2, 1\)"):
        rollingback.alias_target(_fn([LIVE]), "live", 7)


# --- the alias's patch -------------------------------------------------------------------------


def test_the_alias_patch_points_it_at_one_version_and_keeps_the_other_aliases_in_order() -> None:
    rolled = {**LIVE, "rollout": {"steps": [10, 50], "interval": "5m"}}
    fn = _fn([BETA, rolled, {"name": "canary", "version": 2}])

    patch = rollingback.alias_patch(fn, "live", 2)

    assert patch == {
        "metadata": {"resourceVersion": "41"},
        "spec": {
            "aliases": [BETA, {"name": "live", "version": 2}, {"name": "canary", "version": 2}]
        },
    }
    assert fn["spec"]["aliases"][1] == rolled  # the Function read is not changed


def test_the_alias_patch_removes_the_additional_version_and_says_so() -> None:
    patch = rollingback.alias_patch(_fn([BETA]), "beta", 1)

    assert patch is not None
    assert patch["spec"]["aliases"] == [{"name": "beta", "version": 1}]
    assert rollingback.alias_dropped(BETA) == ["additional version 2 at 10 % removed"]


def test_an_alias_already_on_the_version_alone_needs_no_patch() -> None:
    assert rollingback.alias_patch(_fn([LIVE]), "live", 3) is None


def test_an_alias_is_settled_once_the_status_routes_it_to_the_version_alone() -> None:
    fn = _fn([{"name": "live", "version": 2}])
    fn["metadata"]["generation"] = 4
    fn["status"]["observedGeneration"] = 3
    assert not rollingback.alias_settled(fn, "live", 2)

    fn["status"]["observedGeneration"] = 4
    assert rollingback.alias_settled(fn, "live", 2)  # no status entry: the spec routes

    stale = [{"version": 2, "weight": 50}, {"version": 3, "weight": 50}]
    fn["status"]["aliases"] = [{"name": "live", "routes": stale}]
    assert not rollingback.alias_settled(fn, "live", 2)

    done = [{"version": 2, "weight": 100}, {"version": 3, "weight": 0}]
    fn["status"]["aliases"] = [{"name": "live", "routes": done}]
    assert rollingback.alias_settled(fn, "live", 2)


# --- which version $LATEST goes back to --------------------------------------------------------


def test_latest_goes_back_to_the_newest_version_older_than_the_latest() -> None:
    assert rollingback.latest_target(_fn(versions=(4, 2, 1)), None) == 2


def test_latest_with_a_single_version_is_refused_asking_for_to() -> None:
    with pytest.raises(errors.CliError, match=r"no version older than its latest, 1.*--to"):
        rollingback.latest_target(_fn(versions=(1,)), None)


def test_latest_without_any_version_is_refused() -> None:
    with pytest.raises(errors.CliError, match="has no published version"):
        rollingback.latest_target(_fn(versions=()), None)


def test_latest_refuses_a_version_the_status_does_not_list() -> None:
    with pytest.raises(errors.CliError, match="no version 9"):
        rollingback.latest_target(_fn(), 9)


# --- the spec $LATEST gets ---------------------------------------------------------------------


def test_latest_takes_the_versions_template_and_keeps_the_functions_own_settings() -> None:
    url = {"invokeMode": "Buffered"}
    scale = {"minReplicas": 1, "maxReplicas": 3}
    fn = _fn([LIVE], publish="OnRequest", versionRetention=5, url=url, scale=scale)

    spec = rollingback.rolled_back_spec(fn, _version(1))

    assert spec["source"] == {"image": IMAGE}
    assert spec["env"] == [{"name": "MODE", "value": "old"}]
    assert spec["dependencies"] == []
    assert (spec["publish"], spec["versionRetention"], spec["aliases"]) == ("OnRequest", 5, [LIVE])
    assert (spec["url"], spec["scale"]) == (url, scale)
    function.FunctionSpec.model_validate(spec)


def test_the_latest_patch_replaces_the_source_and_removes_what_the_version_lacks() -> None:
    # The version's scale is not the Function's: the Function has none, and keeps none.
    fn = _fn([LIVE], logging={"logFormat": "JSON"})

    patch = rollingback.latest_patch(fn, _version(1))

    assert patch == {
        "metadata": {"resourceVersion": "41"},
        "spec": {
            "source": {"inline": None, "image": IMAGE},
            "dependencies": [],
            "layers": [],
            "env": [{"name": "MODE", "value": "old"}],
            "logging": None,
        },
    }


def test_latest_already_running_the_version_needs_no_patch() -> None:
    fn = _fn()
    fn["spec"] = copy.deepcopy(_version(1)["spec"]["template"])

    assert rollingback.latest_patch(fn, _version(1)) is None


def test_a_version_whose_template_breaks_the_functions_settings_is_refused() -> None:
    # The Function's scale aims at 4 requests a pod; version 1 took one at a time.
    fn = _fn(scale={"targetConcurrency": 4}, concurrency=4)

    with pytest.raises(errors.CliError, match="targetConcurrency must not be greater"):
        rollingback.rolled_back_spec(fn, _version(1, concurrency=1))


@pytest.mark.parametrize(
    ("old", "new", "patch"),
    [
        ({"a": 1, "b": 2}, {"a": 1, "b": 3}, {"b": 3}),
        ({"a": 1, "b": 2}, {"a": 1}, {"b": None}),
        ({"m": {"x": 1, "y": 2}}, {"m": {"x": 1}}, {"m": {"y": None}}),
        ({"m": {"x": 1}}, {"m": {}}, {"m": {"x": None}}),
        ({"l": [1, 2]}, {"l": [2]}, {"l": [2]}),
        ({}, {"m": {}}, {"m": {}}),
        ({"a": 1}, {"a": 1}, {}),
    ],
)
def test_a_merge_patch_makes_the_old_object_into_the_new_one(
    old: dict[str, Any], new: dict[str, Any], patch: dict[str, Any]
) -> None:
    assert rollingback.merge_patch(old, new) == patch
    assert _apply_merge_patch(old, patch) == new


def _apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386's MergePatch, as the API server applies it."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _apply_merge_patch(result.get(key), value)
    return result


def test_the_latest_patch_applied_gives_the_rolled_back_spec() -> None:
    fn = _fn([BETA], logging={"logFormat": "JSON"}, url={})

    patch = rollingback.latest_patch(fn, _version(2))

    assert patch is not None
    applied = _apply_merge_patch(fn["spec"], patch["spec"])
    assert applied == rollingback.rolled_back_spec(fn, _version(2))


# --- the command line --------------------------------------------------------------------------


def test_rollback_refuses_a_version_that_is_no_number_before_reaching_a_cluster(kfn: Run) -> None:
    result = kfn("rollback", "hello", "--to", "v2")

    assert result.code == 2
    assert 'invalid version "v2"' in result.err


def test_rollback_refuses_a_bad_timeout_before_reaching_a_cluster(kfn: Run) -> None:
    result = kfn("rollback", "hello", "--timeout", "soon")

    assert result.code == 1
    assert result.err.startswith("error: --timeout: invalid duration")


# --- the apply $LATEST's rollback sends ----------------------------------------------------------


def _managed(fn: dict[str, Any]) -> dict[str, Any]:
    fn["metadata"]["labels"] = {"team": "a", "added-by-hand": "yes"}
    fn["metadata"]["annotations"] = {
        "kfn.dev/source-hash": "c" * 64,
        "owner": "ana",
        "kfn.dev/publish": "2026-12-05T05:00:00Z",
    }
    fn["metadata"]["managedFields"] = [
        {
            "manager": "kubectl-kfn",
            "operation": "Apply",
            "fieldsV1": {
                "f:metadata": {
                    "f:labels": {"f:team": {}},
                    "f:annotations": {"f:kfn.dev/source-hash": {}, "f:owner": {}},
                },
                "f:spec": {"f:runtime": {}, "f:aliases": {}},
            },
        },
        {
            "manager": "kubectl-kfn",
            "operation": "Update",
            "fieldsV1": {"f:metadata": {"f:annotations": {"f:kfn.dev/publish": {}}}},
        },
        {
            "manager": "kubectl-edit",
            "operation": "Update",
            "fieldsV1": {"f:metadata": {"f:labels": {"f:added-by-hand": {}}}},
        },
    ]
    return fn


def test_the_apply_keeps_the_labels_and_annotations_deploy_applied_but_the_source_hash() -> None:
    fn = _managed(_fn([LIVE]))
    spec = rollingback.rolled_back_spec(fn, _version(1))

    body = rollingback.apply_body(fn, spec, "kubectl-kfn")

    # Of the Function's own settings, only the aliases were applied by kubectl-kfn.
    sent = {k: v for k, v in spec.items() if k not in ("publish", "versionRetention")}
    assert body == {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Function",
        "metadata": {
            "name": "hello",
            "namespace": "team-a",
            "resourceVersion": "41",
            "labels": {"team": "a"},
            "annotations": {"owner": "ana"},
        },
        "spec": sent,
    }
    assert sent["aliases"] == [LIVE]


def test_settings_the_manager_never_applied_are_left_out_of_its_apply() -> None:
    spec = {"runtime": "python3.13", "aliases": [LIVE], "publish": "Always"}

    body = rollingback.apply_body(_fn(), spec, "kubectl-kfn")

    assert set(body["metadata"]) == {"name", "namespace", "resourceVersion"}
    assert body["spec"] == {"runtime": "python3.13"}


def test_fields_another_manager_set_are_leftovers_of_the_apply() -> None:
    spec = rollingback.rolled_back_spec(_fn(), _version(1))
    clean = {"spec": copy.deepcopy(spec)}
    kept_inline = {"spec": {**copy.deepcopy(spec), "logging": {"logFormat": "JSON"}}}
    kept_inline["spec"]["source"]["inline"] = {"files": []}

    assert rollingback.leftovers(clean, spec) == []
    assert rollingback.leftovers(kept_inline, spec) == ["logging", "source"]


def test_the_function_printed_has_no_managed_fields_as_kubectls_output() -> None:
    fn = _managed(_fn())

    shown = rollingback.shown(fn)

    assert "managedFields" not in shown["metadata"]
    assert shown["metadata"]["labels"] == fn["metadata"]["labels"]
    assert "managedFields" in fn["metadata"]  # the object read is left as it is
