"""Publishing versions: what one records, when one is published, which ones are kept."""

from __future__ import annotations

from typing import Any

from kfn.api import function, function_version
from kfn.resources import deployment, network, objects, versions
from tests.unit import statuses

IMAGE = "registry.kfn.localhost/fn/team-a/hello@sha256:" + "1" * 64
OTHER_IMAGE = "registry.kfn.localhost/fn/team-a/hello@sha256:" + "2" * 64


def _function(status: dict[str, Any] | None = None, **spec: Any) -> function.Function:
    body: dict[str, Any] = {
        "metadata": {"name": "hello", "namespace": "team-a", "uid": "u-1"},
        "spec": {
            "runtime": "python3.13",
            "handler": "app.handler",
            "source": {"inline": {"files": [{"name": "app.py", "content": "x = 1\n"}]}},
            **spec,
        },
    }
    if status is not None:
        body["status"] = status
    return function.Function.model_validate(body)


def _version(
    fn: function.Function, number: int, image: str = IMAGE
) -> function_version.FunctionVersion:
    publication = versions.Publication(
        number, versions.template(fn, image), versions.config_hash(versions.template(fn, image))
    )
    body = versions.build_function_version(fn, publication, source_hash=None)
    body["metadata"]["creationTimestamp"] = f"2026-12-05T03:0{number % 10}:00Z"
    return function_version.FunctionVersion.model_validate(body)


def test_a_version_records_the_image_and_configuration_but_not_the_functions_own_settings() -> None:
    fn = _function(
        env=[{"name": "GREETING", "value": "hi"}],
        aliases=[{"name": "live", "version": 1}],
        scale={"maxReplicas": 3},
        dependencies=["requests==2.32.3"],
    )
    spec = versions.template(fn, IMAGE)
    assert spec.source.image == IMAGE
    assert spec.env[0].value == "hi"
    assert (spec.aliases, spec.dependencies, spec.scale.max_replicas) == ([], [], 10)


def test_changing_only_aliases_or_scale_publishes_nothing_new() -> None:
    fn = _function()
    first = versions.template(fn, IMAGE)
    moved = _function(aliases=[{"name": "live", "version": 1}], scale={"maxReplicas": 2})
    assert versions.config_hash(versions.template(moved, IMAGE)) == versions.config_hash(first)


def test_the_first_deploy_publishes_version_one_and_an_unchanged_one_publishes_nothing() -> None:
    fn = _function()
    publication = versions.to_publish(fn, IMAGE, [], requested=False)
    assert publication is not None
    assert publication.number == 1
    assert versions.to_publish(fn, IMAGE, [_version(fn, 1)], requested=False) is None


def test_new_code_or_new_configuration_publishes_the_next_number() -> None:
    fn = _function()
    existing = [_version(fn, 1), _version(fn, 2, OTHER_IMAGE)]
    publication = versions.to_publish(fn, IMAGE, existing, requested=False)
    assert publication is not None
    assert publication.number == 3
    changed = _function(timeout="45s")
    again = versions.to_publish(changed, IMAGE, [_version(fn, 1)], requested=False)
    assert again is not None
    assert again.number == 2


def test_numbers_are_never_reused_after_a_version_is_deleted() -> None:
    fn = _function(status={"latestVersion": 7})
    publication = versions.to_publish(fn, IMAGE, [], requested=False)
    assert publication is not None
    assert publication.number == 8


def test_on_request_publishes_only_when_asked() -> None:
    fn = _function(publish="OnRequest")
    assert versions.to_publish(fn, IMAGE, [], requested=False) is None
    publication = versions.to_publish(fn, IMAGE, [], requested=True)
    assert publication is not None
    assert publication.number == 1


def test_a_version_object_is_owned_by_its_function_and_labelled_with_its_number() -> None:
    fn = _function()
    body = versions.build_function_version(
        fn, versions.to_publish(fn, IMAGE, [], requested=False) or _never(), source_hash="a" * 64
    )
    assert body["metadata"]["name"] == "hello-v1"
    assert body["metadata"]["labels"][objects.LABEL_VERSION] == "1"
    assert body["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert body["spec"]["template"]["source"] == {"image": IMAGE}
    function_version.FunctionVersion.model_validate(body)


def _never() -> versions.Publication:
    raise AssertionError("expected a publication")


def test_retention_deletes_the_oldest_versions_but_never_a_routed_one() -> None:
    fn = _function(
        versionRetention=2,
        aliases=[{"name": "live", "version": 1, "additionalVersion": {"version": 2, "weight": 10}}],
    )
    existing = [_version(fn, n) for n in range(1, 7)]
    assert versions.to_delete(fn, existing) == ["hello-v3", "hello-v4"]


def test_both_ends_of_a_rollout_in_progress_are_kept() -> None:
    fn = _function(
        status=statuses.rollout_in_progress("2026-12-05T03:00:00Z"),
        versionRetention=1,
        aliases=[{"name": "live", "version": 3, "rollout": {}}],
    )
    existing = [_version(fn, n) for n in range(1, 5)]
    assert versions.routed(fn) == {2, 3}
    assert versions.to_delete(fn, existing) == ["hello-v1"]


def test_status_lists_versions_newest_first() -> None:
    fn = _function()
    listed = versions.records([_version(fn, 1), _version(fn, 3), _version(fn, 2)], limit=2)
    assert [r.version for r in listed] == [3, 2]
    assert listed[0].image == IMAGE
    assert listed[0].published == "2026-12-05T03:03:00Z"


def test_a_versions_deployment_runs_apart_from_latest_and_names_its_version() -> None:
    fn = _function()
    built = deployment.build_deployment(
        fn, image=IMAGE, source_hash="h", initial_replicas=0, version=deployment.Version(3)
    )
    latest = deployment.build_deployment(fn, image=IMAGE, source_hash="h", initial_replicas=None)
    assert built["metadata"]["name"] == "hello-v3"
    selector = built["spec"]["selector"]["matchLabels"]
    pod_labels = built["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    # The $LATEST Deployment's selector must never take a version's pods.
    assert not latest["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pod_labels[objects.LABEL_VERSION] == "3"
    env = {
        e["name"]: e.get("value") for e in built["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "3"


def test_the_network_policy_guards_the_pods_of_every_version_too() -> None:
    fn = _function()
    policy = network.build_network_policy(
        fn, network.Peers(namespace="kfn-system", pod_labels={"app": "activator"})
    )
    selector = policy["spec"]["podSelector"]
    version_pods = deployment.build_deployment(
        fn,
        image=IMAGE,
        source_hash="h",
        initial_replicas=0,
        version=deployment.Version(2),
    )["spec"]["template"]["metadata"]["labels"]
    latest_pods = deployment.build_deployment(fn, image=IMAGE, source_hash="h", initial_replicas=0)[
        "spec"
    ]["template"]["metadata"]["labels"]
    for labels in (version_pods, latest_pods):
        assert selector["matchLabels"].items() <= labels.items()
        (expression,) = selector.get("matchExpressions", [])
        assert labels[expression["key"]] in expression["values"]


def _rolling(outcome: str, *, to: int = 3, message: str = "") -> function.Function:
    status = {
        "aliases": [
            {
                "name": "live",
                "routes": [{"version": 2, "weight": 100}],
                "rollout": {
                    "from": 2,
                    "to": to,
                    "step": 1,
                    "stepStarted": "2026-12-05T03:00:00Z",
                    "outcome": outcome,
                    "message": message,
                },
            }
        ]
    }
    return _function(status=status, aliases=[{"name": "live", "version": 3, "rollout": {}}])


def test_a_rolled_back_rollout_makes_rolled_out_false_with_why_and_what_to_do() -> None:
    verdict = versions.rolled_out(
        _rolling("RolledBack", message="version 3 failed 19.4 % of 31 against 0.0 % of 241")
    )
    assert verdict is not None
    status, reason, message = verdict
    assert (status, reason) == ("False", "RolledBack")
    assert message.startswith("alias live: version 3 failed 19.4 % of 31 against 0.0 % of 241")
    assert "point the alias at it" in message


def test_a_rollout_under_way_is_unknown_and_a_promoted_one_true() -> None:
    moving = versions.rolled_out(_rolling("Progressing", message="step 2: 50 %"))
    assert moving == ("Unknown", "Progressing", "alias live: step 2: 50 %")
    assert versions.rolled_out(_rolling("Promoted")) == (
        "True",
        "Promoted",
        "alias live serves version 3",
    )


def test_no_condition_without_a_rollout_or_once_the_alias_moved_on() -> None:
    assert versions.rolled_out(_function()) is None
    # the user pointed the alias at another version since: that rollout is history
    assert versions.rolled_out(_rolling("RolledBack", to=4)) is None


def test_a_versions_routed_condition_names_the_aliases_that_route_to_it() -> None:
    fn = _function(
        aliases=[
            {"name": "beta", "version": 1, "additionalVersion": {"version": 2, "weight": 10}},
            {"name": "live", "version": 2},
        ]
    )
    assert versions.routed_condition(fn, 2) == ("True", "Alias", "alias beta, alias live")
    assert versions.routed_condition(fn, 1) == ("True", "Alias", "alias beta")
    status, reason, message = versions.routed_condition(fn, 3)
    assert (status, reason) == ("False", "NotRouted")
    assert "point an alias at it" in message
    assert versions.routed(fn) == {1, 2}
