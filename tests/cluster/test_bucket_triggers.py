"""Bucket Triggers on the local cluster: versitygw pushes to kfn-bucket, or kfn-bucket polls it.

The function POSTs every event it receives to a sink this test runs on the node address
(10.244.0.1), so the test sees exactly what the handler saw. The store's webhook is one
global URL, fire-and-forget: every event it sends must be handled by the worker, across a
rolling restart too, or it is lost for good, which is what these tests look for.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kfn.triggers.bucket import poll
from kfncluster import fnimage
from tests.cluster import stores
from tests.cluster.kubeutil import (
    NODE,
    apply,
    kubectl,
    kubectl_json,
    python_function,
    scratch_namespace,
    wait_at_zero,
    wait_for,
)

pytestmark = pytest.mark.cluster

HANDLER = """\
import json, os, urllib.request


def handler(event, context):
    body = json.dumps({"event": event, "id": getattr(context, "aws_request_id", "")}).encode()
    request = urllib.request.Request(os.environ["SINK_URL"], data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).read()
    return {"ok": True}
"""
BURST = 120


class Sink:
    """Records what functions POST, on the node address only. A POST about a key in
    ``fail_once`` is refused (500, so the handler raises) the first time, and kept in
    ``refused``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[dict[str, Any]] = []
        self.fail_once: set[str] = set()
        self.refused: list[dict[str, Any]] = []
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                item = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                keys = {r["s3"]["object"]["key"] for r in item["event"].get("Records", [])}
                with sink.lock:
                    refuse = bool(keys & sink.fail_once)
                    sink.fail_once -= keys
                    (sink.refused if refuse else sink.received).append(item)
                self.send_response(500 if refuse else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        with socket.socket() as probe:
            probe.bind((NODE, 0))
            port = probe.getsockname()[1]
        self.server = http.server.ThreadingHTTPServer((NODE, port), Handler)
        self.url = f"http://{NODE}:{port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def records(self, trigger: str) -> list[dict[str, Any]]:
        with self.lock:
            seen = list(self.received)
        return [
            record
            for item in seen
            for record in item["event"].get("Records", [])
            if record["s3"]["configurationId"] == trigger
        ]

    def keys(self, trigger: str) -> list[str]:
        return [r["s3"]["object"]["key"] for r in self.records(trigger)]


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    made = Sink()
    try:
        yield made
    finally:
        made.server.shutdown()
        made.server.server_close()


@pytest.fixture(scope="module")
def image(cluster: object) -> str:
    return fnimage.push_python_function("tests/bucket", "v1", {"app.py": HANDLER})


@pytest.fixture(scope="module")
def namespace(kfn: str) -> Iterator[str]:
    kubectl("-n", kfn, "rollout", "status", "deployment/kfn-bucket", "--timeout=120s")
    kubectl("-n", kfn, "rollout", "status", "deployment/kfn-activator", "--timeout=120s")
    with scratch_namespace("bucket") as name:
        yield name


@pytest.fixture(scope="module")
def store(kfn: str, namespace: str) -> stores.S3Store:
    return stores.deploy_s3_store(namespace, webhook_url=stores.events_url(kfn, namespace))


def function(namespace: str, name: str, image: str, sink: Sink) -> None:
    python_function(namespace, name, image, env=[{"name": "SINK_URL", "value": sink.url}],
                    scale={"idleTimeout": "10s"})  # fmt: skip


def bucket_trigger(namespace: str, name: str, function_name: str, **bucket: Any) -> None:
    apply(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"functionRef": {"name": function_name}, "bucket": bucket},
        }
    )


def condition(namespace: str, trigger: str, type_: str) -> dict[str, Any]:
    status = kubectl_json("-n", namespace, "get", "trigger", trigger).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def test_an_upload_wakes_the_function_at_zero_with_a_correct_s3_event_and_filters_hold(
    namespace: str, store: stores.S3Store, image: str, sink: Sink
) -> None:
    function(namespace, "push-fn", image, sink)
    wait_at_zero(namespace, "push-fn", timeout=120)
    store.create_bucket("photos")
    bucket_trigger(
        namespace, "photos-jpg", "push-fn", endpoint=store.endpoint, bucket="photos",
        events=["s3:ObjectCreated:*"], filter={"prefix": "in/", "suffix": ".jpg"},
        credentialsSecretRef={"name": store.secret_name},
    )  # fmt: skip
    wait_for("the Trigger to be reachable",
             lambda: condition(namespace, "photos-jpg", "SourceReachable").get("status") == "True",
             timeout=30, every=0.5)  # fmt: skip
    store.put_object("photos", "out/skip.jpg", b"no")
    store.put_object("photos", "in/skip.png", b"no")
    data = b"a cat, in jpeg"
    etag = store.put_object("photos", "in/cat 1.jpg", data)
    wait_for("the upload to reach the function", lambda: sink.records("photos-jpg"),
             timeout=120, every=0.5)  # fmt: skip
    [record] = sink.records("photos-jpg")
    assert record["eventSource"] == "aws:s3"
    assert record["eventName"] == "ObjectCreated:Put"
    assert record["s3"]["bucket"]["name"] == "photos"
    assert record["s3"]["bucket"]["arn"] == "arn:aws:s3:::photos"
    assert record["s3"]["object"]["key"] == "in/cat+1.jpg"
    assert record["s3"]["object"]["size"] == len(data)
    assert record["s3"]["object"]["eTag"] == etag
    store.put_object("photos", "in/dog.jpg", b"woof")
    wait_for("a second upload", lambda: len(sink.records("photos-jpg")) >= 2, timeout=30)
    time.sleep(2)
    assert sorted(sink.keys("photos-jpg")) == ["in/cat+1.jpg", "in/dog.jpg"]


def test_a_delete_is_reported_as_object_removed_when_selected(
    namespace: str, store: stores.S3Store, image: str, sink: Sink
) -> None:
    function(namespace, "push-fn", image, sink)
    store.create_bucket("removals")
    bucket_trigger(namespace, "removals", "push-fn", endpoint=store.endpoint, bucket="removals",
                   events=["s3:ObjectRemoved:*"],
                   credentialsSecretRef={"name": store.secret_name})  # fmt: skip
    wait_for("the Trigger to be reachable",
             lambda: condition(namespace, "removals", "SourceReachable").get("status") == "True",
             timeout=30, every=0.5)  # fmt: skip
    store.put_object("removals", "old.txt", b"bye")
    store.delete_object("removals", "old.txt")
    wait_for("the delete to reach the function", lambda: sink.records("removals"), timeout=60)
    time.sleep(1)
    [record] = sink.records("removals")
    assert record["eventName"] == "ObjectRemoved:Delete"
    assert record["s3"]["object"]["key"] == "old.txt"


def test_a_rolling_restart_during_a_burst_of_pushed_uploads_loses_no_event(
    kfn: str, namespace: str, store: stores.S3Store, image: str, sink: Sink
) -> None:
    """The first five uploads fail once, so their retry (a minute later) is still pending
    when the replicas holding them stop: those hand them over, and the retry runs on a new
    replica as the same event."""
    function(namespace, "push-fn", image, sink)
    store.create_bucket("burst")
    bucket_trigger(namespace, "burst", "push-fn", endpoint=store.endpoint, bucket="burst",
                   events=["s3:ObjectCreated:*"],
                   credentialsSecretRef={"name": store.secret_name})  # fmt: skip
    wait_for("the Trigger to be reachable",
             lambda: condition(namespace, "burst", "SourceReachable").get("status") == "True",
             timeout=30, every=0.5)  # fmt: skip
    keys = [f"k{i:04d}" for i in range(BURST)]
    sink.fail_once |= set(keys[:5])
    for key in keys[:20]:
        store.put_object("burst", key, key.encode())
    kubectl("-n", kfn, "rollout", "restart", "deployment/kfn-bucket")
    for key in keys[20:]:
        store.put_object("burst", key, key.encode())
        time.sleep(0.1)
    kubectl("-n", kfn, "rollout", "status", "deployment/kfn-bucket", "--timeout=180s")

    def all_arrived() -> bool:
        missing = sorted(set(keys) - set(sink.keys("burst")))
        assert not missing, f"{len(missing)} not delivered: {missing[:10]}"
        return True

    try:
        wait_for(f"all {BURST} uploads to reach the function", all_arrived, timeout=180, every=1)
    except AssertionError as exc:
        store_log = kubectl("-n", namespace, "logs", f"deployment/{stores.NAME}", "--tail=20",
                            check=False)  # fmt: skip
        # The replicas that took the hand-offs say what they received, took over and lost.
        worker_log = kubectl("-n", kfn, "logs", "-l", "app.kubernetes.io/component=bucket",
                             "--tail=60", "--prefix", check=False)  # fmt: skip
        raise AssertionError(
            f"{exc}\nthe store's last log lines:\n{store_log}\n"
            f"the bucket workers' last log lines:\n{worker_log}"
        ) from None
    got = sink.keys("burst")
    print(f"\n{BURST} uploads across a rolling restart: {len(got)} invocations, "
          f"{len(got) - len(set(got))} duplicates")  # fmt: skip
    with sink.lock:
        first_tries = {item["event"]["Records"][0]["s3"]["object"]["key"]: item["id"]
                       for item in sink.refused}  # fmt: skip
    assert sorted(first_tries) == keys[:5]
    retried = {r["event"]["Records"][0]["s3"]["object"]["key"]: r["id"] for r in sink.received}
    assert {key: retried[key] for key in first_tries} == first_tries


def test_an_upload_whose_notification_never_came_reaches_the_function_once_by_listing(
    namespace: str, store: stores.S3Store, image: str, sink: Sink
) -> None:
    """The store sends its notifications to this module's namespace only, so a Push Trigger
    in another namespace hears none: the catch-up listing alone brings the upload."""
    with scratch_namespace("unheard") as other:
        secret = kubectl_json("-n", namespace, "get", "secret", store.secret_name)
        allowed = secret["metadata"]["annotations"][stores.ALLOWED_ENDPOINTS]
        apply({"apiVersion": "v1", "kind": "Secret", "type": secret.get("type", "Opaque"),
               "metadata": {"name": store.secret_name, "namespace": other,
                            "annotations": {stores.ALLOWED_ENDPOINTS: allowed}},
               "data": secret["data"]})  # fmt: skip
        function(other, "push-fn", image, sink)
        store.create_bucket("unheard")
        store.put_object("unheard", "before.txt", b"existed before the Trigger")
        bucket_trigger(other, "unheard", "push-fn", endpoint=store.endpoint, bucket="unheard",
                       events=["s3:ObjectCreated:*"], pollInterval="2s",
                       credentialsSecretRef={"name": store.secret_name})  # fmt: skip
        wait_for("the catch-up listing to take its baseline",
                 lambda: kubectl_json("-n", other, "get", "configmap", "kfn-bucket-unheard"),
                 timeout=60, every=0.5)  # fmt: skip
        started = time.monotonic()
        etag = store.put_object("unheard", "lost.txt", b"no notification for me")
        wait_for("the unannounced upload to reach the function",
                 lambda: sink.records("unheard"), timeout=90, every=0.5)  # fmt: skip
        print(f"\nan upload without a notification arrived after "
              f"{time.monotonic() - started:.1f}s")  # fmt: skip
        # Several more listings: no second delivery.
        time.sleep(poll.PUSH_SETTLE.total_seconds() + 4)
        [record] = sink.records("unheard")
        assert record["eventName"] == "ObjectCreated:Put"
        assert record["s3"]["object"]["key"] == "lost.txt"
        assert record["s3"]["object"]["eTag"] == etag
        assert "before.txt" not in sink.keys("unheard")


def test_poll_mode_sees_creates_and_deletes_and_survives_a_killed_poller(
    kfn: str, namespace: str, store: stores.S3Store, image: str, sink: Sink
) -> None:
    function(namespace, "poll-fn", image, sink)
    store.create_bucket("polled")
    store.put_object("polled", "before.txt", b"existed before the Trigger")
    bucket_trigger(
        namespace, "polled", "poll-fn", endpoint=store.endpoint, bucket="polled", mode="Poll",
        pollInterval="1s", events=["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
        credentialsSecretRef={"name": store.secret_name},
    )  # fmt: skip
    wait_for("the poller to take its baseline",
             lambda: kubectl_json("-n", namespace, "get", "configmap", "kfn-bucket-polled"),
             timeout=60, every=0.5)  # fmt: skip
    reachable = wait_for("SourceReachable=True",
                         lambda: (c := condition(namespace, "polled", "SourceReachable"))
                         and c.get("status") == "True" and c, timeout=30, every=0.5)  # fmt: skip
    assert reachable["reason"] == "Connected"
    etag = store.put_object("polled", "new.txt", b"fresh")
    wait_for("the new object", lambda: "new.txt" in sink.keys("polled"), timeout=60)
    store.delete_object("polled", "new.txt")
    wait_for("the delete", lambda: len(sink.records("polled")) >= 2, timeout=60)
    created, removed = sink.records("polled")[:2]
    assert (created["eventName"], created["s3"]["object"]["eTag"]) == ("ObjectCreated:Put", etag)
    assert (removed["eventName"], removed["s3"]["object"]["key"]) == (
        "ObjectRemoved:Delete",
        "new.txt",
    )
    assert "before.txt" not in sink.keys("polled")

    keys = [f"p{i:04d}" for i in range(BURST)]
    for key in keys[: BURST // 2]:
        store.put_object("polled", key, key.encode())
    holder = kubectl_json("-n", kfn, "get", "lease", "kfn-bucket-poller")["spec"]["holderIdentity"]
    kubectl("-n", kfn, "delete", "pod", holder.rsplit("_", 1)[0], "--grace-period=0", "--force")
    for key in keys[BURST // 2 :]:
        store.put_object("polled", key, key.encode())
    wait_for(f"all {BURST} polled uploads", lambda: set(sink.keys("polled")) >= set(keys),
             timeout=180, every=1)  # fmt: skip
    got = [k for k in sink.keys("polled") if k.startswith("p")]
    print(f"\n{BURST} polled uploads across a killed poller: {len(got)} invocations")


def test_bad_credentials_make_the_source_unreachable_without_showing_the_secret(
    namespace: str, store: stores.S3Store, image: str, sink: Sink
) -> None:
    function(namespace, "poll-fn", image, sink)
    secret = "not-the-right-secret-4711"
    kubectl("-n", namespace, "create", "secret", "generic", "wrong-creds",
            "--from-literal=AWS_ACCESS_KEY_ID=nobody",
            f"--from-literal=AWS_SECRET_ACCESS_KEY={secret}")  # fmt: skip
    kubectl("-n", namespace, "annotate", "secret", "wrong-creds",
            f"{stores.ALLOWED_ENDPOINTS}={store.endpoint}")  # fmt: skip
    bucket_trigger(namespace, "wrong", "poll-fn", endpoint=store.endpoint, bucket="polled",
                   mode="Poll", pollInterval="2s", events=["s3:ObjectCreated:*"],
                   credentialsSecretRef={"name": "wrong-creds"})  # fmt: skip
    found = wait_for("SourceReachable=False",
                     lambda: (c := condition(namespace, "wrong", "SourceReachable"))
                     and c.get("status") == "False" and c,
                     timeout=60, every=0.5)  # fmt: skip
    assert found["reason"] == "ConnectionFailed"
    assert "wrong-creds" in found["message"]
    assert secret not in json.dumps(kubectl_json("-n", namespace, "get", "trigger", "wrong"))
    print(f"\nSourceReachable: {found['reason']}: {found['message']}")


def test_a_secret_its_owner_did_not_annotate_is_not_used_and_the_trigger_says_why(
    namespace: str, store: stores.S3Store, image: str, sink: Sink
) -> None:
    """Credentials follow their owner: the store's own keys, in a Secret without the
    annotation kfn.dev/allowed-endpoints, are not sent to the store."""
    function(namespace, "poll-fn", image, sink)
    kubectl("-n", namespace, "create", "secret", "generic", "unannotated",
            f"--from-literal=AWS_ACCESS_KEY_ID={store.access_key}",
            f"--from-literal=AWS_SECRET_ACCESS_KEY={store.secret_key}")  # fmt: skip
    bucket_trigger(namespace, "unannotated", "poll-fn", endpoint=store.endpoint, bucket="polled",
                   mode="Poll", pollInterval="2s", events=["s3:ObjectCreated:*"],
                   credentialsSecretRef={"name": "unannotated"})  # fmt: skip
    found = wait_for("SourceReachable=False",
                     lambda: (c := condition(namespace, "unannotated", "SourceReachable"))
                     and c.get("status") == "False" and c,
                     timeout=60, every=0.5)  # fmt: skip
    print(f"\nSourceReachable: {found['reason']}: {found['message']}")
    assert found["reason"] == "SecretNotAllowed"
    assert found["message"].startswith(
        f"Secret {namespace}/unannotated does not allow {store.endpoint}: it has no annotation "
        f"{stores.ALLOWED_ENDPOINTS}"
    )
    ready = condition(namespace, "unannotated", "Ready")
    assert (ready.get("status"), ready.get("reason")) == ("False", "SecretNotAllowed")
    assert store.secret_key not in json.dumps(
        kubectl_json("-n", namespace, "get", "trigger", "unannotated")
    )
