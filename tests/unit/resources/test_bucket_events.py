"""The kfn-bucket-events Secret: each namespace's tokens for its stores (pure)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from kfn.authn import webhooks
from kfn.resources import bucket_events

SETTINGS = bucket_events.Settings(b"key", "http://kfn-bucket.kfn-system.svc.cluster.local:80")
BASE = SETTINGS.base_url


def body(name: str, uid: str = "", **bucket: Any) -> dict[str, Any]:
    spec = {"endpoint": "http://s3:7070", "bucket": "bkt", "events": ["s3:ObjectCreated:*"]}
    return {
        "metadata": {"name": name, "namespace": "media", "uid": uid or f"uid-{name}"},
        "spec": {"functionRef": {"name": "fn"}, "bucket": spec | bucket},
    }


def _plain(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_only_push_triggers_not_being_deleted_need_tokens() -> None:
    going = body("going")
    going["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    cron = {"metadata": {"name": "tick", "uid": "u"}, "spec": {"cron": {"schedule": "* * * * *"}}}
    bodies = [body("thumbs"), body("audit"), body("listed", mode="Poll"), going, cron]
    assert bucket_events.push_triggers(bodies) == [
        bucket_events.PushTrigger("audit", "uid-audit"),
        bucket_events.PushTrigger("thumbs", "uid-thumbs"),
    ]


def test_the_secret_holds_the_namespaces_url_and_token_and_each_push_triggers() -> None:
    triggers = bucket_events.push_triggers([body("thumbs")])
    secret = bucket_events.secret(SETTINGS, "media", triggers)
    ns, thumbs = webhooks.token(b"key", "media"), webhooks.token(b"key", "media", "thumbs")
    host = "kfn-bucket.kfn-system.svc.cluster.local:80"
    assert _plain(secret) == {
        "url": f"http://kfn:{ns}@{host}/events/media",
        "endpoint": f"http://{host}/events/media",
        "token": ns,
        "thumbs.url": f"http://kfn:{thumbs}@{host}/events/media/thumbs",
        "thumbs.endpoint": f"http://{host}/events/media/thumbs",
        "thumbs.token": thumbs,
    }
    assert secret["metadata"]["name"] == "kfn-bucket-events"
    assert secret["metadata"]["namespace"] == "media"
    assert secret["type"] == "Opaque"


def test_every_push_trigger_owns_the_secret_so_it_goes_with_the_last_one() -> None:
    triggers = bucket_events.push_triggers([body("thumbs"), body("audit")])
    owners = bucket_events.secret(SETTINGS, "media", triggers)["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"], o["uid"], o["controller"]) for o in owners] == [
        ("Trigger", "audit", "uid-audit", False),
        ("Trigger", "thumbs", "uid-thumbs", False),
    ]
    assert {o["apiVersion"] for o in owners} == {"kfn.dev/v1alpha1"}


def test_a_live_secret_differs_when_its_data_or_owners_do() -> None:
    wanted = bucket_events.secret(SETTINGS, "media", bucket_events.push_triggers([body("a")]))
    assert not bucket_events.differs(wanted, wanted)
    fewer = bucket_events.secret(SETTINGS, "media", [])
    assert bucket_events.differs(fewer, wanted)
    other_owner = {**wanted, "metadata": {**wanted["metadata"], "ownerReferences": []}}
    assert bucket_events.differs(other_owner, wanted)


def test_a_secret_of_that_name_without_kfns_label_is_not_kfns() -> None:
    wanted = bucket_events.secret(SETTINGS, "media", [])
    assert bucket_events.ours(wanted)
    assert not bucket_events.ours({"metadata": {"name": "kfn-bucket-events", "labels": {}}})


def test_the_settings_come_from_the_charts_environment() -> None:
    assert bucket_events.from_env({}) is None
    env = {"KFN_BUCKET_EVENTS_KEY": "k", "KFN_BUCKET_URL": "http://b.ns.svc:80/"}
    assert bucket_events.from_env(env) == bucket_events.Settings(b"k", "http://b.ns.svc:80")
    with pytest.raises(ValueError, match="KFN_BUCKET_URL"):
        bucket_events.from_env({"KFN_BUCKET_EVENTS_KEY": "k"})
