"""The examples in examples/ run as their headers say, and each does its job.

Every example's ``function.yaml`` starts with the commands that run it ("Run it on the local
cluster"). A test copies the example into a scratch folder with ``namespace: default`` (and
the ``.default.svc`` addresses) rewritten to a scratch namespace, points a kubeconfig of its
own at that namespace, and runs those very commands with bash from the copy's root, as a user
would from the repository root. Nothing of the examples is repeated here: the handlers and
YAML under test are the files in examples/.

Function logs are the record of what a handler did; they are read from the function's pods
while they run (a function scaled to zero takes its logs with it), and every line seen is
kept, so a pod that goes away between two reads loses nothing already read.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import hmac
import http.client
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import time
import uuid
import zoneinfo
from collections.abc import Iterator
from typing import Any

import confluent_kafka
import confluent_kafka.admin as admin_
import pytest

from kfncluster import gateway
from tests.cluster import stores
from tests.cluster.edge import ensure_gateway, request, served
from tests.cluster.invoking import activator_address
from tests.cluster.kubeutil import (
    KUBECTL,
    NODE,
    REPO,
    kubectl,
    kubectl_json,
    require_listening,
    scratch_namespace,
    wait_for,
)

pytestmark = pytest.mark.cluster

EXAMPLES = REPO / "examples"
BOOTSTRAP = f"{NODE}:9092"
RUN_MARKER = "Run it on the local cluster"
#: First builds install boto3 and Pillow through the PyPI proxy, next to other builds.
BUILD_TIMEOUT = 900.0


# --- running an example as its header says ----------------------------------------------------


def run_commands(example: str) -> list[str]:
    """The commands under "Run it on the local cluster" in the example's function.yaml."""
    lines = (EXAMPLES / example / "function.yaml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if RUN_MARKER in line)
    commands: list[str] = []
    for line in lines[start + 1 :]:
        if not line.startswith("#"):
            break
        text = line[1:]
        if text.startswith("   ") and text.strip():
            commands.append(text.strip())
        elif commands:
            break
    assert commands, f"examples/{example}/function.yaml says no commands under {RUN_MARKER!r}"
    return commands


def localised(text: str, namespace: str) -> str:
    return text.replace("namespace: default", f"namespace: {namespace}").replace(
        ".default.svc", f".{namespace}.svc"
    )


def run_example(example: str, namespace: str) -> list[str]:
    """Runs the example's commands against ``namespace``; returns them."""
    commands = run_commands(example)
    with tempfile.TemporaryDirectory(prefix=f"kfn-example-{example}-") as tmp:
        root = pathlib.Path(tmp)
        copy = root / "examples" / example
        shutil.copytree(EXAMPLES / example, copy)
        for path in copy.glob("*.yaml"):
            text = path.read_text()
            if "Transform: AWS::Serverless" in text:
                continue  # the SAM template from-sam ports, not for Kubernetes
            assert "namespace: default" in text, f"{path.name} names no namespace"
            path.write_text(localised(text, namespace))
        kubeconfig = root / "kubeconfig"
        kubeconfig.write_text(kubectl("config", "view", "--raw", "--minify"))
        subprocess.run(
            [str(KUBECTL), f"--kubeconfig={kubeconfig}", "config", "set-context", "--current",
             f"--namespace={namespace}"],
            check=True, capture_output=True,
        )  # fmt: skip
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "PATH": f"{KUBECTL.parent}:{os.environ.get('PATH', '')}",
        }
        for command in commands:
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", command],
                cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert result.returncode == 0, f"`{command}` failed: {result.stderr.strip()}"
    return commands


def wait_ready(namespace: str, kind: str, name: str, timeout: float) -> None:
    def ready() -> bool:
        obj = kubectl_json("-n", namespace, "get", kind, name)
        conditions = (obj.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    wait_for(f"{kind} {name} to be Ready", ready, timeout=timeout, every=2)


def condition(namespace: str, trigger: str, type_: str) -> dict[str, Any]:
    status = kubectl_json("-n", namespace, "get", "trigger", trigger).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


class FunctionLogs:
    """Every log line the function's pods printed, gathered over repeated reads."""

    def __init__(self, namespace: str, function: str) -> None:
        self.namespace = namespace
        self.function = function
        self.seen: set[str] = set()

    def read(self) -> set[str]:
        out = kubectl(
            "-n", self.namespace, "logs", "-l", f"kfn.dev/function={self.function}",
            "--tail=-1", "--prefix", "--max-log-requests=20", check=False,
        )  # fmt: skip
        self.seen.update(line for line in out.splitlines() if line.strip())
        return self.seen

    def matching(self, pattern: re.Pattern[str]) -> list[re.Match[str]]:
        return [m for line in sorted(self.read()) if (m := pattern.search(line))]


@pytest.fixture(scope="module")
def workers(kfn: str) -> str:
    for deployment in ("kfn-operator", "kfn-activator", "kfn-cron", "kfn-stream", "kfn-bucket"):
        kubectl("-n", kfn, "rollout", "status", f"deployment/{deployment}", "--timeout=180s")
    return kfn


@contextlib.contextmanager
def timed(what: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    print(f"\n{what}: {time.monotonic() - started:.1f}s")


# --- cron-report -----------------------------------------------------------------------------

REPORT = re.compile(r"morning report for (\w+ \d{4}-\d\d-\d\d) \(week \d+\): due (\S+),")


def test_the_cron_report_is_scheduled_for_seven_in_berlin_on_a_weekday_and_logs_its_report(
    workers: str,
) -> None:
    with scratch_namespace("examples-cron") as namespace:
        run_example("cron-report", namespace)
        with timed("cron-report built and Ready"):
            wait_ready(namespace, "function", "cron-report", BUILD_TIMEOUT)
        wait_ready(namespace, "trigger", "cron-report", 120)
        status = kubectl_json("-n", namespace, "get", "trigger", "cron-report")["status"]
        next_fire = datetime.datetime.fromisoformat(status["nextFireTime"].replace("Z", "+00:00"))
        berlin = next_fire.astimezone(zoneinfo.ZoneInfo("Europe/Berlin"))
        now = datetime.datetime.now(datetime.UTC)
        print(f"next report: {berlin.isoformat()} ({status['nextFireTime']})")
        assert (berlin.hour, berlin.minute, berlin.second) == (7, 0, 0)
        assert berlin.weekday() < 5, f"{berlin:%A} is no weekday"
        assert now < next_fire <= now + datetime.timedelta(days=3, hours=1)

        kubectl("-n", namespace, "patch", "trigger", "cron-report", "--type=merge",
                "-p", json.dumps({"spec": {"cron": {"schedule": "@every 2s"}}}))  # fmt: skip
        logs = FunctionLogs(namespace, "cron-report")
        with timed("first report after @every 2s"):
            reports = wait_for("a report in the function's log",
                               lambda: logs.matching(REPORT), timeout=300, every=2)  # fmt: skip
        day, due = reports[0].groups()
        due_local = datetime.datetime.fromisoformat(due)
        assert due_local.utcoffset() in (datetime.timedelta(hours=1), datetime.timedelta(hours=2))
        assert day == due_local.strftime("%A %Y-%m-%d")
        assert abs((due_local - datetime.datetime.now(datetime.UTC)).total_seconds()) < 600


# --- orders-stream ---------------------------------------------------------------------------

SUMMARY = re.compile(r'(\{"message":"orders aggregated".*\})\s*$')


def delete_topics(admin_: Any, names: list[str]) -> None:
    admin = admin_.AdminClient({"bootstrap.servers": BOOTSTRAP})
    existing = set(admin.list_topics(timeout=30).topics)
    stale = [name for name in names if name in existing]
    if stale:
        for future in admin.delete_topics(stale).values():
            future.result(30)


def fresh_topics(admin_: Any, names: list[str], partitions: int) -> None:
    """The topics, empty: deleted if they exist, then created (retried while the deletion
    of an old one is still under way)."""
    delete_topics(admin_, names)
    admin = admin_.AdminClient({"bootstrap.servers": BOOTSTRAP})

    def created() -> bool:
        have = set(admin.list_topics(timeout=30).topics)
        missing = [name for name in names if name not in have]
        if not missing:
            return True
        for future in admin.create_topics(
            [admin_.NewTopic(name, partitions, 1) for name in missing]
        ).values():
            try:
                future.result(30)
            except Exception as exc:  # still being deleted: try again
                print(f"creating a topic: {exc}")
        return False

    wait_for(f"fresh topics {names}", created, timeout=90, every=2)


def test_the_orders_stream_logs_the_total_and_sends_the_malformed_record_to_orders_failed(
    workers: str,
) -> None:
    require_listening(9092, "kafka")
    topics = ["orders", "orders-failed"]
    fresh_topics(admin_, topics, partitions=3)
    try:
        check_the_orders_example(confluent_kafka)
    finally:
        delete_topics(admin_, topics)


def check_the_orders_example(confluent_kafka: Any) -> None:
    run = uuid.uuid4().hex[:8]
    amounts = [round(4.75 + 1.5 * i, 2) for i in range(20)]
    orders = [
        {"id": f"o-{run}-{i}", "customer": f"c-{i % 4}", "amount": amount, "currency": "EUR"}
        for i, amount in enumerate(amounts)
    ]
    malformed = f'{{"id": "o-{run}-broken", "amount": '.encode()
    expected_cents = sum(round(amount * 100) for amount in amounts)

    with scratch_namespace("examples-orders") as namespace:
        run_example("orders-stream", namespace)
        with timed("orders-stream built and Ready"):
            wait_ready(namespace, "function", "orders-stream", BUILD_TIMEOUT)
        producer = confluent_kafka.Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 5})
        for index, order in enumerate(orders):
            producer.produce("orders", json.dumps(order).encode(), key=str(order["customer"]))
            if index == 9:
                producer.produce("orders", malformed, key=b"c-1")
        assert producer.flush(60) == 0
        logs = FunctionLogs(namespace, "orders-stream")

        def batches() -> dict[tuple[str, int, int], dict[str, Any]]:
            found = {}
            for match in logs.matching(SUMMARY):
                summary = json.loads(match.group(1))
                found[(summary["partition"], summary["firstOffset"], summary["lastOffset"])] = (
                    summary
                )
            return found

        def all_counted() -> dict[tuple[str, int, int], dict[str, Any]] | None:
            found = batches()
            return found if sum(s["orders"] for s in found.values()) >= len(orders) else None

        with timed("20 orders counted"):
            found = wait_for("the 20 orders in the logged summaries", all_counted, timeout=300,
                             every=2)  # fmt: skip
        counted = sum(s["orders"] for s in found.values())
        total = sum(round(float(s["totals"]["EUR"]) * 100) for s in found.values())
        print(f"{len(found)} summaries: {counted} orders, EUR {total / 100:.2f}")
        assert counted == len(orders)
        assert total == expected_cents

        with timed("the malformed record in orders-failed"):
            record = failure_record(confluent_kafka, "orders-failed", malformed)
        assert record["requestContext"]["condition"] == "RetriesExhausted"
        assert record["KafkaBatchInfo"]["topic"] == "orders"
        assert record["KafkaBatchInfo"]["batchSize"] == 1
        assert logs.matching(re.compile(r"malformed order at orders-\d+@\d+"))
        # Stop consuming before the topics go.
        kubectl("-n", namespace, "delete", "trigger", "orders-stream", "--wait=true")


def failure_record(confluent_kafka: Any, topic: str, value: bytes) -> dict[str, Any]:
    """The failure record on ``topic`` whose records hold ``value``."""
    consumer = confluent_kafka.Consumer({
        "bootstrap.servers": BOOTSTRAP, "group.id": f"examples-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })  # fmt: skip
    consumer.subscribe([topic])
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            record = json.loads(message.value())
            values = [
                base64.b64decode(r["value"])
                for rs in record["requestPayload"]["records"].values()
                for r in rs
            ]
            if values == [value]:
                return dict(record)
    finally:
        consumer.close()
    raise AssertionError(f"no failure record holding {value!r} on {topic}")


# --- thumbnails ------------------------------------------------------------------------------


CREDENTIALS = "s3-credentials"
"""The Secret store.yaml creates, with the store's root keys."""


def jpeg(width: int, height: int) -> bytes:
    image_ = pytest.importorskip("PIL.Image")
    picture = image_.new("RGB", (width, height))
    picture.putdata(
        [(x * 255 // width, y * 255 // height, 128) for y in range(height) for x in range(width)]
    )
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=90)
    return out.getvalue()


def keys(store: stores.S3Store, bucket: str, prefix: str) -> list[str]:
    resp = store.request("GET", f"/{bucket}", query={"list-type": "2", "prefix": prefix})
    assert resp.status == 200, resp.body[:300]
    return re.findall(r"<Key>([^<]*)</Key>", resp.body.decode())


def test_a_jpeg_uploaded_under_uploads_gets_a_thumbnail_and_other_keys_get_nothing(
    workers: str,
) -> None:
    image_ = pytest.importorskip("PIL.Image")
    original = jpeg(640, 480)
    with scratch_namespace("examples-thumbs") as namespace:
        run_example("thumbnails", namespace)
        kubectl("-n", namespace, "rollout", "status", "deployment/s3", "--timeout=180s")
        secret = kubectl_json("-n", namespace, "get", "secret", CREDENTIALS)["data"]
        service = kubectl_json("-n", namespace, "get", "service", "s3")["spec"]
        store = stores.S3Store(
            namespace=namespace,
            endpoint=f"http://s3.{namespace}.svc:{stores.PORT}",
            host_endpoint=f"http://{service['clusterIP']}:{stores.PORT}",
            access_key=base64.b64decode(secret["AWS_ACCESS_KEY_ID"]).decode(),
            secret_key=base64.b64decode(secret["AWS_SECRET_ACCESS_KEY"]).decode(),
            secret_name=CREDENTIALS,
        )
        wait_for("the store to answer a signed request",
                 lambda: store.request("GET", "/").status == 200, timeout=60, every=1)  # fmt: skip
        store.create_bucket("photos")
        with timed("thumbnails built and Ready (boto3, Pillow)"):
            wait_ready(namespace, "function", "thumbnails", BUILD_TIMEOUT)
        wait_for("the Trigger to be reachable",
                 lambda: condition(namespace, "thumbnails", "SourceReachable").get("status")
                 == "True", timeout=60, every=1)  # fmt: skip

        store.put_object("photos", "notes/readme.txt", b"not a photo")
        store.put_object("photos", "uploads/cat.jpg", original)
        with timed("thumbnails/cat.jpg after the upload"):
            wait_for("thumbnails/cat.jpg", lambda: "thumbnails/cat.jpg" in keys(
                store, "photos", "thumbnails/"), timeout=300, every=1)  # fmt: skip
        thumbnail = store.get_object("photos", "thumbnails/cat.jpg")
        with image_.open(io.BytesIO(thumbnail)) as picture:
            assert picture.format == "JPEG"
            assert max(picture.size) <= 128, picture.size
            assert picture.size == (128, 96), "the aspect ratio was not kept"
        assert len(thumbnail) < len(original)

        time.sleep(5)
        assert keys(store, "photos", "thumbnails/") == ["thumbnails/cat.jpg"]
        logs = FunctionLogs(namespace, "thumbnails").read()
        assert any("photos/uploads/cat.jpg" in line for line in logs)
        assert not any("readme.txt" in line for line in logs), "notes/readme.txt invoked it"


# --- hello (the web backend) and webhook: through the Gateway, over HTTPS ----------------------


@pytest.fixture(scope="module")
def edge(workers: str) -> str:
    return ensure_gateway()


def test_the_web_backend_answers_on_its_function_url_over_https_from_zero(edge: str) -> None:
    with scratch_namespace("examples-hello") as namespace:
        commands = run_example("hello", namespace)
        assert any("configmap hello-code" in command for command in commands)
        with timed("hello built and Ready"):
            wait_ready(namespace, "function", "hello", BUILD_TIMEOUT)
        fn = wait_for(
            "hello's Function URL",
            lambda: (kubectl_json("-n", namespace, "get", "function", "hello").get("status")
                     or {}).get("functionUrl"),
            timeout=120,
        )  # fmt: skip
        host = f"hello-{namespace}.{gateway.DOMAIN}"
        assert fn == gateway.url(host)
        with timed("GET /hello over HTTPS (from zero)"):
            status, headers, answer = served(host, "/hello?name=kfn",
                                             headers={"Origin": "https://any.example"})  # fmt: skip
        assert status == 200, answer
        assert json.loads(answer)["message"] == "Hello, kfn!"
        assert headers["access-control-allow-origin"] == "*"


def test_the_streaming_report_arrives_whole_from_node_and_python_over_https(edge: str) -> None:
    with scratch_namespace("examples-streaming") as namespace:
        commands = run_example("streaming-report", namespace)
        assert any("configmap report-py-code" in command for command in commands)
        for name in ("report-node", "report-py"):
            with timed(f"{name} built and Ready"):
                wait_ready(namespace, "function", name, BUILD_TIMEOUT)
        for name in ("report-node", "report-py"):
            host = f"{name}-{namespace}.{gateway.DOMAIN}"
            with timed(f"{name}: 20,000 rows streamed over HTTPS (from zero)"):
                status, headers, answer = served(host, "/report?rows=20000")
            assert status == 200, answer
            assert headers["content-type"] == "text/csv"
            assert headers["transfer-encoding"] == "chunked"
            lines = answer.decode().splitlines()
            assert lines[0] == "day,region,orders,revenue"
            assert len(lines) == 20_001


def test_the_webhook_answers_202_to_a_signed_delivery_and_401_to_a_bad_signature(
    edge: str,
) -> None:
    with scratch_namespace("examples-webhook") as namespace:
        commands = run_example("webhook", namespace)
        assert any("openssl rand" in command for command in commands)
        with timed("webhook built and Ready"):
            wait_ready(namespace, "function", "webhook", BUILD_TIMEOUT)
        wait_ready(namespace, "trigger", "webhook-github", 120)
        url = kubectl_json("-n", namespace, "get", "trigger", "webhook-github")["status"]["url"]
        host = "github." + gateway.DOMAIN
        assert url == gateway.url(host, "/webhooks/github")
        data = kubectl_json("-n", namespace, "get", "secret", "github-webhook")["data"]
        secret = base64.b64decode(data["secret"])
        assert len(secret) == 64, "the secret is not the one the header generates"
        body = json.dumps({"zen": "Design for failure.",
                           "repository": {"full_name": "octo/hello"}}).encode()  # fmt: skip
        signature = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-GitHub-Event": "ping",
                   "X-GitHub-Delivery": str(uuid.uuid4())}  # fmt: skip

        def post(path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
            status, _, answer = request(host, path, method="POST", headers=headers, body=body)
            return status, answer

        with timed("a signed delivery answered over HTTPS (from zero)"):
            signed = {**headers, "X-Hub-Signature-256": signature}
            status, _, answer = served(
                host, "/webhooks/github", method="POST", body=body, headers=signed
            )
        assert status == 202, answer
        assert json.loads(answer)["accepted"] == "ping"

        forged = "sha256=" + hmac.new(b"not the secret", body, hashlib.sha256).hexdigest()
        status, answer = post("/webhooks/github", body, {**headers, "X-Hub-Signature-256": forged})
        assert status == 401, answer
        status, answer = post("/webhooks/github", body, headers)
        assert status == 401, answer


# --- from-sam ----------------------------------------------------------------------------------


def test_the_sam_application_runs_unchanged_with_its_rest_events_and_schedule(
    workers: str,
) -> None:
    with scratch_namespace("examples-sam") as namespace:
        commands = run_example("from-sam", namespace)
        assert any("configmap from-sam-code" in command for command in commands)
        with timed("notes and nightly-summary built and Ready"):
            wait_ready(namespace, "function", "notes", BUILD_TIMEOUT)
            wait_ready(namespace, "function", "nightly-summary", BUILD_TIMEOUT)
            wait_ready(namespace, "trigger", "notes-api", 120)
            wait_ready(namespace, "trigger", "nightly-summary", 120)
        host, port = activator_address(workers)

        def call(method: str, target: str, body: bytes | None = None) -> tuple[int, Any, bytes]:
            conn = http.client.HTTPConnection(host, port, timeout=60)
            try:
                conn.request(method, target, body=body,
                             headers={"Content-Type": "application/json"})  # fmt: skip
                r = conn.getresponse()
                return r.status, r.headers, r.read()
            finally:
                conn.close()

        with timed("GET /notes (payload 1.0, from zero)"):
            status, headers, answer = call("GET", "/notes?tag=a&tag=b")
        assert status == 200, answer
        assert json.loads(answer) == {"notes": [], "filteredBy": ["a", "b"]}
        assert headers["X-Notes-Served-By"] == "notes"

        status, headers, answer = call("POST", "/notes", json.dumps({"text": "ported"}).encode())
        assert status == 201, answer
        note = json.loads(answer)
        assert uuid.UUID(note["id"]).version == 4
        assert headers["Location"] == f"/notes/{note['id']}"
        assert call("POST", "/notes", b"not json")[0] == 400

        # The nightly summary: the Trigger says when, and a tick made now shows the handler's
        # EventBridge event is the one it asserts on.
        next_fire = next_fire_time(namespace, "nightly-summary")
        fires_at = datetime.datetime.fromisoformat(next_fire.replace("Z", "+00:00"))
        paris = fires_at.astimezone(zoneinfo.ZoneInfo("Europe/Paris"))
        assert (paris.hour, paris.minute) == (2, 30), next_fire
        kubectl("-n", namespace, "patch", "trigger", "nightly-summary", "--type=merge",
                "-p", '{"spec":{"cron":{"schedule":"@every 5s"}}}')  # fmt: skip
        logs = FunctionLogs(namespace, "nightly-summary")
        wait_for(
            "the nightly summary to run",
            lambda: logs.matching(re.compile(r"nightly summary for \S+ \(nightly-summary\)")),
            timeout=180,
            every=3,
        )


def next_fire_time(namespace: str, trigger: str) -> str:
    def found() -> str | None:
        status = kubectl_json("-n", namespace, "get", "trigger", trigger).get("status") or {}
        return status.get("nextFireTime")

    return wait_for(f"{trigger}'s next fire time", found, timeout=60)
