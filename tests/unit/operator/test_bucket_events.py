"""The operator writes each namespace's kfn-bucket-events Secret on its bucket Triggers'
events, against a stand-in API server on loopback."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from kfn import expiring, kube
from kfn.authn import webhooks
from kfn.operator import bucket_events, settings
from tests.unit.operator import kubeapi

SECRETS = "/api/v1/namespaces/media/secrets"
KEY = b"events-key"
LOGGER = logging.getLogger("test")


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[kubeapi.KubeApi, list[str]]]:
    fake = kubeapi.KubeApi()
    calls: list[str] = []
    answer = fake.answer

    def counted(method: str, path: str, body: Any) -> tuple[int, Any]:
        calls.append(f"{method} {path.partition('?')[0]}")
        return answer(method, path, body)

    monkeypatch.setattr(fake, "answer", counted)
    served = fake.serve()
    url = next(served)
    monkeypatch.setattr(kube, "_api", client.ApiClient(client.Configuration(host=url)))
    monkeypatch.setattr(bucket_events, "_written", expiring.Expiring())
    monkeypatch.setattr(bucket_events, "_foreign", set())
    monkeypatch.setenv("KFN_BUCKET_EVENTS_KEY", KEY.decode())
    monkeypatch.setenv("KFN_BUCKET_URL", "http://kfn-bucket.kfn-system.svc.cluster.local:80")
    settings.bucket_events_settings.cache_clear()
    yield fake, calls
    settings.bucket_events_settings.cache_clear()
    next(served, None)


def body(name: str, namespace: str = "media", **bucket: Any) -> dict[str, Any]:
    spec = {"endpoint": "http://s3:7070", "bucket": "bkt", "events": ["s3:ObjectCreated:*"]}
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
        "spec": {"functionRef": {"name": "fn"}, "bucket": spec | bucket},
    }


def event(kind: str, obj: dict[str, Any], *others: dict[str, Any]) -> None:
    """A Trigger's event as kopf hands it over, with the index of every Trigger."""
    index = {(o["metadata"]["namespace"], o["metadata"]["name"]): [o] for o in others}
    bucket_events.bucket_trigger_event(
        event={"type": kind, "object": obj}, logger=LOGGER, triggers_by_name=index
    )


def _data(api: kubeapi.KubeApi) -> dict[str, str]:
    secret = api.get(SECRETS, webhooks.SECRET_NAME)
    assert secret is not None
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_a_push_trigger_gets_its_namespaces_secret_with_its_own_entries(
    api: tuple[kubeapi.KubeApi, list[str]],
) -> None:
    fake, _ = api
    event("ADDED", body("thumbs"))
    data = _data(fake)
    assert data["token"] == webhooks.token(KEY, "media")
    assert data["thumbs.token"] == webhooks.token(KEY, "media", "thumbs")
    assert data["url"].startswith("http://kfn:")
    secret = fake.get(SECRETS, webhooks.SECRET_NAME)
    assert secret is not None
    assert [o["name"] for o in secret["metadata"]["ownerReferences"]] == ["thumbs"]


def test_the_secret_follows_the_namespaces_push_triggers_and_is_not_written_again_unchanged(
    api: tuple[kubeapi.KubeApi, list[str]],
) -> None:
    fake, calls = api
    thumbs, audit = body("thumbs"), body("audit")
    event("ADDED", thumbs)
    event("ADDED", audit, thumbs)
    assert "audit.token" in _data(fake)
    secret = fake.get(SECRETS, webhooks.SECRET_NAME)
    assert secret is not None
    assert sorted(o["name"] for o in secret["metadata"]["ownerReferences"]) == ["audit", "thumbs"]
    calls.clear()
    # A status write by the bucket worker is an event too: it costs no API call.
    event("MODIFIED", audit, thumbs, audit)
    assert calls == []


def test_triggers_that_need_no_token_get_no_secret(
    api: tuple[kubeapi.KubeApi, list[str]],
) -> None:
    fake, calls = api
    event("ADDED", body("listed", mode="Poll"))
    event("ADDED", {**body("web"), "spec": {"functionRef": {"name": "fn"}, "http": {}}})
    assert fake.get(SECRETS, webhooks.SECRET_NAME) is None
    assert calls == []


def test_a_secret_of_that_name_kfn_did_not_make_is_left_alone_and_said_once(
    api: tuple[kubeapi.KubeApi, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    fake, _ = api
    theirs = {"metadata": {"name": webhooks.SECRET_NAME, "namespace": "media"}, "data": {}}
    fake.put(SECRETS, theirs)
    with caplog.at_level(logging.WARNING):
        event("ADDED", body("thumbs"))
        event("MODIFIED", body("thumbs"))
    assert fake.get(SECRETS, webhooks.SECRET_NAME) == theirs
    assert caplog.text.count("was not made by kfn") == 1


def test_without_signed_notifications_no_secret_is_written(
    api: tuple[kubeapi.KubeApi, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, calls = api
    monkeypatch.delenv("KFN_BUCKET_EVENTS_KEY")
    settings.bucket_events_settings.cache_clear()
    event("ADDED", body("thumbs"))
    assert calls == []


def test_a_deleted_secret_is_put_back_once_the_written_copy_is_looked_at_again(
    api: tuple[kubeapi.KubeApi, list[str]],
) -> None:
    fake, _ = api
    config = settings.bucket_events_settings()
    assert config is not None
    bodies: list[dict[str, Any]] = [body("thumbs")]
    bucket_events.sync(config, "media", bodies, LOGGER, now=0.0)
    fake.objects[SECRETS].clear()
    bucket_events.sync(config, "media", bodies, LOGGER, now=bucket_events.RECHECK - 1)
    assert fake.get(SECRETS, webhooks.SECRET_NAME) is None
    bucket_events.sync(config, "media", bodies, LOGGER, now=bucket_events.RECHECK)
    assert fake.get(SECRETS, webhooks.SECRET_NAME) is not None
