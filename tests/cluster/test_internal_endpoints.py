"""kfn's internal endpoints on the cluster take only kfn's own components and the stores
signed for their namespace: the autoscaler's /stats (tried from an activator's pod, the only
one its NetworkPolicy lets through) and the bucket worker's /events (from the node), each
with no token, someone else's, and the right one."""

from __future__ import annotations

import base64
import http.client
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kfn import stats
from kfn.authn import webhooks
from tests.cluster import stores
from tests.cluster.kubeutil import apply, kubectl, kubectl_json, scratch_namespace, wait_for

pytestmark = pytest.mark.cluster

#: A report about no function: taken, it changes no replica count.
EMPTY_REPORT = stats.encode(stats.StatMessage("internal-endpoints-test", time.time(), ()))
TEST_EVENT = json.dumps({"Service": "S3", "Event": "s3:TestEvent"}).encode()


def _post(
    address: tuple[str, int], path: str, body: bytes, authorization: str | None
) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection(*address, timeout=10)
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    try:
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else {}
    finally:
        connection.close()


#: Run in an activator's container: its NetworkPolicy admits only the activators to the
#: autoscaler's port, so the token check is tried from where the network lets one through.
_POST_FROM_POD = """
import http.client, json, sys
host, token, body = sys.argv[1], sys.argv[2], sys.argv[3].encode()
headers = {"Content-Type": "application/json"}
if token:
    headers["Authorization"] = "Bearer " + token
connection = http.client.HTTPConnection(host, 8090, timeout=10)
connection.request("POST", "/stats", body, headers)
answer = connection.getresponse()
print(json.dumps({"status": answer.status, "body": answer.read().decode()}))
"""


def _report_from_an_activator(kfn: str, token: str | None) -> tuple[int, dict[str, Any]]:
    """POSTs an empty report to the autoscaler from an activator's pod, with ``token``."""
    host = f"kfn-autoscaler.{kfn}.svc"
    out = kubectl(
        "-n", kfn, "exec", "deployment/kfn-activator", "-c", "activator", "--",
        "python3", "-c", _POST_FROM_POD, host, token or "", EMPTY_REPORT.decode(),
    )  # fmt: skip
    answer = json.loads(out)
    return answer["status"], json.loads(answer["body"]) if answer["body"] else {}


def _address(kfn: str, deployment: str, port: int) -> tuple[str, int]:
    kubectl("-n", kfn, "rollout", "status", f"deployment/{deployment}", "--timeout=120s")
    return kubectl_json("-n", kfn, "get", "service", deployment)["spec"]["clusterIP"], port


@pytest.fixture(scope="module")
def outsider(kfn: str) -> Iterator[str]:
    """A tenant's namespace with a ServiceAccount of its own."""
    with scratch_namespace("outsider") as name:
        kubectl("-n", name, "create", "serviceaccount", "prober")
        yield name


def test_the_autoscaler_takes_stats_only_with_the_activators_token(kfn: str, outsider: str) -> None:
    _address(kfn, "kfn-autoscaler", 8090)  # rolled out
    status, body = _report_from_an_activator(kfn, None)
    assert status == 401, body
    assert "kfn-stats" in body["message"]
    own = kubectl("-n", outsider, "create", "token", "prober", "--audience=kfn-stats").strip()
    status, body = _report_from_an_activator(kfn, own)
    assert status == 403, body
    assert f"system:serviceaccount:{outsider}:prober may not send stats" in body["message"]
    # The activator's own ServiceAccount, but a token for the invoke door's audience.
    invoke = kubectl("-n", kfn, "create", "token", "kfn-activator", "--audience=kfn").strip()
    assert _report_from_an_activator(kfn, invoke)[0] == 401
    token = kubectl("-n", kfn, "create", "token", "kfn-activator", "--audience=kfn-stats").strip()
    assert _report_from_an_activator(kfn, token)[0] == 204


def test_no_activator_was_refused_by_the_autoscaler(kfn: str) -> None:
    """Scale from zero (test_scale_from_zero) needs the activators' reports taken; this says
    why when they are not: the autoscaler's answer is in the activator's log."""
    pods = kubectl_json("-n", kfn, "get", "pods", "-l", "app.kubernetes.io/component=activator")
    for pod in pods["items"]:
        log = kubectl("-n", kfn, "logs", pod["metadata"]["name"], "--since=10m")
        refused = [
            line for line in log.splitlines() if "the autoscaler answered b'HTTP/1.1 4" in line
        ]
        assert refused == [], refused[-3:]


def test_the_bucket_worker_takes_a_namespaces_notifications_only_signed_for_it(
    kfn: str, outsider: str
) -> None:
    bucket = _address(kfn, "kfn-bucket", 80)
    path = webhooks.path(outsider)
    status, body = _post(bucket, path, TEST_EVENT, None)
    assert status == 401, body
    assert f"Secret kfn-bucket-events in namespace {outsider}" in body["message"]
    key = stores.events_key(kfn)
    elsewhere = webhooks.token(key, "kfn-tests-elsewhere")
    assert _post(bucket, path, TEST_EVENT, f"Bearer {elsewhere}")[0] == 403
    # The cluster-wide path takes no namespace's token.
    assert _post(bucket, "/events", TEST_EVENT, f"Bearer {webhooks.token(key, outsider)}")[0] == 403
    own = webhooks.token(key, outsider)
    assert _post(bucket, path, TEST_EVENT, f"Bearer {own}") == (200, {"message": "test event"})
    basic = "Basic " + base64.b64encode(f"kfn:{own}".encode()).decode()
    assert _post(bucket, path, TEST_EVENT, basic)[0] == 200


def test_a_push_trigger_gets_its_namespaces_tokens_in_a_secret_and_not_in_its_status(
    kfn: str, outsider: str
) -> None:
    apply(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": "pushed", "namespace": outsider},
            "spec": {
                "functionRef": {"name": "nothing"},
                "bucket": {"endpoint": "http://s3:7070", "bucket": "bkt",
                           "events": ["s3:ObjectCreated:*"]},
            },
        }
    )  # fmt: skip

    def written() -> dict[str, str] | None:
        found = kubectl(
            "-n", outsider, "get", "secret", webhooks.SECRET_NAME, "-o", "json", check=False
        )
        if not found.strip().startswith("{"):
            return None
        data = json.loads(found)["data"]
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    data = wait_for("the operator to write the Secret kfn-bucket-events", written, timeout=60)
    key = stores.events_key(kfn)
    assert data["token"] == webhooks.token(key, outsider)
    assert data["url"] == stores.events_url(kfn, outsider)
    assert data["pushed.token"] == webhooks.token(key, outsider, "pushed")
    trigger = kubectl_json("-n", outsider, "get", "trigger", "pushed")
    assert data["token"] not in json.dumps(trigger)
    kubectl("-n", outsider, "delete", "trigger", "pushed")
    wait_for(
        "the Secret to go with its last Push Trigger",
        lambda: written() is None,
        timeout=60,
    )
