"""Each namespace's registry credential Secret, its renewal, and the pull Secrets of a pod."""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import pytest

from kfn import ociauth
from kfn.api import function
from kfn.registry_auth import policy
from kfn.resources import credentials, objects, platform, status

NOW = datetime.datetime(2026, 12, 3, 12, 0, tzinfo=datetime.UTC)
KEY = b"k" * 32
SETTINGS = credentials.Settings(
    mode="managed",
    secret_name="kfn-registry",
    registry="registry.example.com:5443",
    robot_key=KEY,
    validity=datetime.timedelta(days=30),
)
OWNER: objects.OwnerReference = {
    "apiVersion": "kfn.dev/v1alpha1",
    "kind": "Function",
    "name": "hello",
    "uid": "uid-1",
    "controller": True,
    "blockOwnerDeletion": True,
}


def _function(**spec: Any) -> function.Function:
    return function.Function.model_validate(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": "hello", "namespace": "team-a", "uid": "uid-1"},
            "spec": {"source": {"image": "r.example/x@sha256:" + "0" * 64}} | spec,
        }
    )


def _login(secret: dict[str, Any]) -> ociauth.Credentials:
    creds = credentials.credentials_of(secret, SETTINGS.registry, "Secret team-a/kfn-registry")
    assert creds is not None
    return creds


# --- the Secret --------------------------------------------------------------------------------


def test_a_managed_credential_is_a_dockerconfigjson_of_the_namespaces_robot() -> None:
    secret = credentials.robot_secret(SETTINGS, "team-a", [OWNER], NOW)
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert secret["metadata"]["name"] == "kfn-registry"
    assert secret["metadata"]["labels"][credentials.LABEL_CREDENTIALS] == "managed"
    login = _login(secret)
    assert login.username == "kfn+team-a"
    subject = policy.verify(
        login.username, login.password, robot_key=KEY, admin_password="", now=NOW
    )
    assert subject == policy.robot("team-a")
    assert (
        secret["metadata"]["annotations"][credentials.ANNOTATION_EXPIRES] == "2027-01-02T12:00:00Z"
    )


def test_every_function_owns_the_secret_and_none_controls_it() -> None:
    secret = credentials.robot_secret(SETTINGS, "team-a", [OWNER], NOW)
    (owner,) = secret["metadata"]["ownerReferences"]
    assert owner["uid"] == "uid-1"
    assert owner["controller"] is False
    assert not credentials.missing_owner(secret, OWNER)
    assert credentials.missing_owner(secret, {**OWNER, "uid": "uid-2"})
    patch = credentials.owner_patch({**OWNER, "uid": "uid-2"})
    assert patch["metadata"]["ownerReferences"][0]["uid"] == "uid-2"


def test_a_shared_credential_is_a_copy_of_its_source() -> None:
    config = ociauth.docker_config(SETTINGS.registry, "ci", "secret")
    source = {"data": {".dockerconfigjson": base64.b64encode(config).decode()}}
    shared = dataclasses_replace(SETTINGS, mode="shared")
    copy = credentials.shared_secret(shared, "team-b", source, [OWNER])
    assert copy["metadata"]["labels"][credentials.LABEL_CREDENTIALS] == "shared"
    assert not credentials.copy_differs(copy, source)
    changed = {"data": {".dockerconfigjson": base64.b64encode(b'{"auths":{}}').decode()}}
    assert credentials.copy_differs(copy, changed)


def dataclasses_replace(settings: credentials.Settings, **changes: Any) -> credentials.Settings:
    import dataclasses  # noqa: PLC0415

    return dataclasses.replace(settings, **changes)


# --- renewal ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "due"),
    [
        (datetime.timedelta(days=1), False),
        (datetime.timedelta(days=14, hours=23), False),
        (datetime.timedelta(days=15), True),
        (datetime.timedelta(days=31), True),
    ],
)
def test_a_managed_credential_is_renewed_once_half_its_validity_has_passed(
    age: datetime.timedelta, due: bool
) -> None:
    secret = credentials.robot_secret(SETTINGS, "team-a", [OWNER], NOW)
    assert credentials.renewal_due(SETTINGS, secret, "team-a", NOW + age) is due


def test_an_unreadable_managed_credential_is_renewed() -> None:
    secret = credentials.robot_secret(SETTINGS, "team-a", [OWNER], NOW)
    secret["data"][".dockerconfigjson"] = base64.b64encode(b"not json").decode()
    assert credentials.renewal_due(SETTINGS, secret, "team-a", NOW)


@pytest.mark.parametrize(
    "change",
    ["another namespace's robot", "an edited password", "an earlier robot key"],
)
def test_a_managed_credential_that_is_not_this_namespaces_valid_robot_is_issued_again(
    change: str,
) -> None:
    secret = credentials.robot_secret(SETTINGS, "team-a", [OWNER], NOW)
    if change == "another namespace's robot":
        secret = credentials.robot_secret(SETTINGS, "team-b", [OWNER], NOW)
    elif change == "an edited password":
        login = _login(secret)
        config = ociauth.docker_config(SETTINGS.registry, login.username, login.password + "x")
        secret["data"][".dockerconfigjson"] = base64.b64encode(config).decode()
    else:
        secret = credentials.robot_secret(
            dataclasses_replace(SETTINGS, robot_key=b"o" * 32), "team-a", [OWNER], NOW
        )
    assert credentials.renewal_due(SETTINGS, secret, "team-a", NOW)


def test_a_secret_kfn_did_not_make_is_never_renewed() -> None:
    theirs = {"metadata": {"labels": {}}, "data": {}}
    assert not credentials.managed_by_kfn(theirs)
    later = NOW + datetime.timedelta(days=365)
    assert not credentials.renewal_due(SETTINGS, theirs, "team-a", later)


# --- settings ----------------------------------------------------------------------------------


def test_settings_come_from_the_operators_environment() -> None:
    env = {
        "KFN_REGISTRY_CREDENTIALS": "managed",
        "KFN_REGISTRY_SECRET_NAME": "pushes",
        "KFN_REGISTRY_ROBOT_KEY": "k" * 32 + "\n",
        "KFN_REGISTRY_CREDENTIAL_VALIDITY": "48h",
    }
    settings = credentials.from_env(env, "r.example")
    assert (settings.mode, settings.secret_name, settings.robot_key) == ("managed", "pushes", KEY)
    assert settings.validity == datetime.timedelta(hours=48)
    shared = credentials.from_env(
        {"KFN_REGISTRY_CREDENTIALS": "shared", "KFN_REGISTRY_SHARED_SECRET": "one",
         "KFN_NAMESPACE": "platform"},
        "r.example",
    )  # fmt: skip
    assert shared.shared_secret == "platform/one"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KFN_REGISTRY_CREDENTIALS": "managed"}, "robot key"),
        ({"KFN_REGISTRY_CREDENTIALS": "shared"}, "KFN_REGISTRY_SHARED_SECRET"),
        ({"KFN_REGISTRY_CREDENTIALS": "everyone"}, "must be one of"),
        (
            {"KFN_REGISTRY_CREDENTIALS": "managed", "KFN_REGISTRY_ROBOT_KEY": "k" * 32,
             "KFN_REGISTRY_CREDENTIAL_VALIDITY": "30d"},
            "720h",
        ),
    ],
)  # fmt: skip
def test_incomplete_settings_say_what_is_missing(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        credentials.from_env(env, "r.example")


# --- pull Secrets and placement of pods --------------------------------------------------------


def test_a_pod_pulls_with_the_namespace_credential_then_the_defaults_then_its_own_each_once() -> (
    None
):
    settings = platform.Platform(credentials_secret="kfn-registry", pull_secrets=("cluster", "x"))
    fn = _function(imagePullSecrets=[{"name": "own"}, {"name": "cluster"}])
    assert settings.pull_secrets_for(fn) == ["kfn-registry", "cluster", "x", "own"]
    assert platform.Platform().pull_secrets_for(_function()) == []


def test_a_functions_scheduling_replaces_the_defaults_field_by_field() -> None:
    default = platform.Placement.parse(
        {"nodeSelector": {"pool": "fn"}, "tolerations": [{"key": "fn", "operator": "Exists"}],
         "priorityClassName": "low"}
    )  # fmt: skip
    fn = _function(scheduling={"nodeSelector": {"zone": "b"}, "priorityClassName": "high"})
    fields = default.overridden_by(fn.spec.scheduling).pod_fields()
    assert fields == {
        "nodeSelector": {"zone": "b"},
        "tolerations": [{"key": "fn", "operator": "Exists"}],
        "priorityClassName": "high",
    }
    assert default.overridden_by(None) == default
    assert platform.Placement().pod_fields() == {}


def test_an_empty_node_selector_on_a_function_clears_the_default() -> None:
    default = platform.Placement.parse({"nodeSelector": {"pool": "fn"}})
    fn = _function(scheduling={"nodeSelector": {}})
    assert "nodeSelector" not in default.overridden_by(fn.spec.scheduling).pod_fields()


def test_platform_settings_are_read_from_the_operators_environment() -> None:
    env = {
        "KFN_REGISTRY_CREDENTIALS": "provided",
        "KFN_REGISTRY_SECRET_NAME": "pulls",
        "KFN_IMAGE_PULL_SECRETS": json.dumps(["cluster"]),
        "KFN_FUNCTION_SCHEDULING": json.dumps({"priorityClassName": "fn"}),
        "KFN_BUILD_SCHEDULING": json.dumps({"nodeSelector": {"pool": "b"}}),
    }
    settings = platform.from_env(env)
    assert settings.credentials_secret == "pulls"
    assert settings.pull_secrets == ("cluster",)
    assert settings.functions.priority_class_name == "fn"
    assert settings.builds.pod_fields() == {"nodeSelector": {"pool": "b"}}
    assert platform.from_env({}).credentials_secret is None


# --- a missing pull Secret --------------------------------------------------------------------


def test_the_kubelets_missing_pull_secret_events_name_the_secrets() -> None:
    events = [
        {"message": "Unable to retrieve some image pull secrets (own, other); attempting to "
                    "pull the image may not succeed."},
        {"message": "Unable to retrieve some image pull secrets (own); attempting"},
        {"message": "something else"},
    ]  # fmt: skip
    assert status.missing_pull_secrets(events) == ["other", "own"]


def test_a_pod_that_cannot_pull_with_a_missing_secret_says_which_secret() -> None:
    pod = {
        "metadata": {"name": "hello-1"},
        "status": {"containerStatuses": [{"state": {"waiting": {
            "reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]},
    }  # fmt: skip
    assert status.pulling_pods([pod]) == ["hello-1"]
    deployment = {"metadata": {"generation": 1}, "spec": {"replicas": 1}, "status": {}}
    verdict = status.deployed(deployment, status.pod_problems([pod]), ["own"])
    assert (verdict.status, verdict.reason) == ("False", "ImagePullSecretNotFound")
    assert "own" in verdict.message
    assert status.deployed(deployment, status.pod_problems([pod])).reason == "PodsFailing"
