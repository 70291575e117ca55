"""The event sources of the local cluster: Kafka and NATS on the node, an S3 store in a pod.

Kafka (``10.244.0.1:9092``) and NATS JetStream (``nats://10.244.0.1:4222``) are
started by ``kfncluster up``; the S3 store is deployed per test by
:mod:`tests.cluster.stores`. Nothing here listens anywhere but on the node address.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kfncluster import brokers, config
from kfncluster import cluster as kcluster
from tests.cluster import kubeutil, stores

pytestmark = pytest.mark.cluster

REPO = pathlib.Path(__file__).resolve().parents[2]


def _listeners() -> dict[int, set[str]]:
    """Listening TCP addresses by port (from ``ss``), e.g. {9092: {"10.244.0.1"}}."""
    out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
    found: dict[int, set[str]] = {}
    for line in out.splitlines():
        local = line.split()[3]
        host, port = local.rsplit(":", 1)
        found.setdefault(int(port), set()).add(host.removeprefix("[::ffff:").rstrip("]"))
    return found


def test_the_brokers_listen_on_the_node_address_and_their_control_ports_on_loopback(
    cluster: pathlib.Path,
) -> None:
    listening = _listeners()
    assert listening[config.KAFKA_PORT] == {config.NODE_IP}
    assert listening[config.NATS_PORT] == {config.NODE_IP}
    assert listening[config.KAFKA_CONTROLLER_PORT] == {"127.0.0.1"}
    assert listening[config.NATS_MONITOR_PORT] == {"127.0.0.1"}
    sup = kcluster.supervisor(config.Paths())
    for name in brokers.BROKERS:
        record = sup.record(name)
        assert record is not None
        assert record.alive(), name


# --- Kafka -------------------------------------------------------------------------------


@pytest.fixture
def kafka_topic(cluster: pathlib.Path) -> Iterator[str]:
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415
    from confluent_kafka.cimpl import NewTopic  # noqa: PLC0415

    admin = AdminClient({"bootstrap.servers": config.KAFKA_BOOTSTRAP})
    topic = f"brokers-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(30)
    try:
        yield topic
    finally:
        admin.delete_topics([topic])[topic].result(30)


def test_kafka_round_trips_keyed_records_from_the_host_through_a_consumer_group(
    kafka_topic: str,
) -> None:
    from confluent_kafka import Consumer, Producer  # noqa: PLC0415

    producer = Producer(
        {"bootstrap.servers": config.KAFKA_BOOTSTRAP, "enable.idempotence": True, "acks": "all"}
    )
    sent = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(20)}
    for key, value in sent.items():
        producer.produce(kafka_topic, value=value, key=key)
    assert producer.flush(30) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": config.KAFKA_BOOTSTRAP,
            "group.id": f"{kafka_topic}-group",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([kafka_topic])
    received: dict[bytes, bytes] = {}
    deadline = time.monotonic() + 60
    try:
        while len(received) < len(sent) and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            assert message.error() is None, message.error()
            received[message.key() or b""] = message.value() or b""
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert received == sent


def test_kafka_does_not_create_a_topic_on_first_use(cluster: pathlib.Path) -> None:
    from confluent_kafka import KafkaError, Producer  # noqa: PLC0415

    producer = Producer({"bootstrap.servers": config.KAFKA_BOOTSTRAP, "message.timeout.ms": 3000})
    errors: list[KafkaError | None] = []
    missing = f"brokers-missing-{uuid.uuid4().hex[:8]}"
    producer.produce(missing, b"x", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(10)
    assert errors, "the record was neither delivered nor failed"
    assert errors[0] is not None
    assert errors[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._MSG_TIMED_OUT)
    brokers_seen, cluster_id = brokers.kafka_brokers()
    assert cluster_id == brokers.KAFKA_CLUSTER_ID
    assert brokers_seen == [(brokers.KAFKA_NODE_ID, config.NODE_IP, config.KAFKA_PORT)]


# --- NATS --------------------------------------------------------------------------------


def test_nats_jetstream_keeps_published_messages_for_a_durable_pull_consumer(
    cluster: pathlib.Path,
) -> None:
    import nats  # noqa: PLC0415

    stream = f"BROKERS_{uuid.uuid4().hex[:8].upper()}"
    subject = f"brokers.{stream.lower()}"

    async def scenario() -> list[bytes]:
        nc = await nats.connect(config.NATS_URL, connect_timeout=5)
        try:
            js = nc.jetstream()
            await js.add_stream(name=stream, subjects=[subject])
            try:
                for i in range(5):
                    ack = await js.publish(subject, f"event-{i}".encode())
                    assert ack.stream == stream
                sub = await js.pull_subscribe(subject, durable="worker")
                messages = await sub.fetch(5, timeout=10)
                for message in messages:
                    await message.ack()
                info = await js.consumer_info(stream, "worker")
                assert info.num_pending == 0
                return [m.data for m in messages]
            finally:
                await js.delete_stream(stream)
        finally:
            await nc.close()

    assert asyncio.run(scenario()) == [f"event-{i}".encode() for i in range(5)]


# --- from a pod ----------------------------------------------------------------------------

_POD_PROBE = """
import json, socket, struct, sys
result = {}
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as s:
    result["nats"] = s.recv(4096).split(b" ", 1)[0].decode()
with socket.create_connection((sys.argv[1], int(sys.argv[3])), timeout=5) as s:
    s.sendall(bytes.fromhex(sys.argv[4]))
    size = struct.unpack(">i", s.recv(4))[0]
    result["kafka_response_bytes"] = size
print(json.dumps(result))
"""


def test_a_pod_reaches_kafka_and_nats_on_the_node_address(cluster: pathlib.Path) -> None:
    with kubeutil.scratch_namespace("brokers") as ns:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "probe", "namespace": ns},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 65532,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "probe",
                        "image": config.BASE_PYTHON_IMAGE,
                        "command": [
                            "python3",
                            "-c",
                            _POD_PROBE,
                            config.NODE_IP,
                            str(config.NATS_PORT),
                            str(config.KAFKA_PORT),
                            brokers.metadata_request(7).hex(),
                        ],
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            },
        }
        kubeutil.kubectl("apply", "-f", "-", input=json.dumps(pod))

        def finished() -> str | None:
            phase = kubeutil.kubectl_json("-n", ns, "get", "pod", "probe")["status"].get("phase")
            return phase if phase in ("Succeeded", "Failed") else None

        phase = kubeutil.wait_for("the probe pod to finish", finished, timeout=90)
        logs = kubeutil.kubectl("-n", ns, "logs", "probe")
        assert phase == "Succeeded", logs
        result = json.loads(logs.strip().splitlines()[-1])
        assert result["nats"] == "INFO"
        assert result["kafka_response_bytes"] > 0


# --- the S3 store and its webhook ------------------------------------------------------------


class _Sink(http.server.ThreadingHTTPServer):
    """Collects the JSON documents POSTed to it."""

    def __init__(self) -> None:
        super().__init__((config.NODE_IP, 0), _SinkHandler)
        self.received: list[dict[str, Any]] = []
        self.changed = threading.Condition()

    def wait_for(self, what: str, match: Any, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for doc in self.received:
                    if match(doc):
                        return doc
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {what} within {timeout}s; got {self.received}")
                self.changed.wait(left)


class _SinkHandler(http.server.BaseHTTPRequestHandler):
    server: _Sink

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.end_headers()
        with self.server.changed:
            self.server.received.append(json.loads(body))
            self.server.changed.notify_all()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[_Sink]:
    server = _Sink()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _record(doc: dict[str, Any], event: str, key: str) -> dict[str, Any] | None:
    for record in doc.get("Records", []):
        if record["eventName"] == event and record["s3"]["object"]["key"] == key:
            return dict(record)
    return None


def test_an_object_put_and_delete_in_the_s3_store_post_s3_event_records_to_its_webhook(
    cluster: pathlib.Path, sink: _Sink
) -> None:
    port = sink.server_address[1]
    with kubeutil.scratch_namespace("brokers-s3") as ns:
        store = stores.deploy_s3_store(ns, webhook_url=f"http://{config.NODE_IP}:{port}/events")
        sink.wait_for("test event", lambda d: d.get("Event") == "s3:TestEvent")
        assert store.endpoint == f"http://s3.{ns}.svc.cluster.local:7070"
        secret = kubeutil.kubectl_json("-n", ns, "get", "secret", store.secret_name)
        assert set(secret["data"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}

        store.create_bucket("photos")
        etag = store.put_object("photos", "2024/cat.jpg", b"meow" * 100)
        assert store.get_object("photos", "2024/cat.jpg") == b"meow" * 100

        doc = sink.wait_for(
            "ObjectCreated:Put record",
            lambda d: _record(d, "s3:ObjectCreated:Put", "2024/cat.jpg"),
        )
        put = _record(doc, "s3:ObjectCreated:Put", "2024/cat.jpg")
        assert put is not None
        assert put["eventSource"] == "aws:s3"
        assert put["awsRegion"] == "us-east-1"
        assert put["s3"]["bucket"]["name"] == "photos"
        assert put["s3"]["object"]["size"] == 400
        assert put["s3"]["object"]["eTag"].strip('"') == etag
        assert put["eventTime"]

        store.delete_object("photos", "2024/cat.jpg")
        sink.wait_for(
            "ObjectRemoved:Delete record",
            lambda d: _record(d, "s3:ObjectRemoved:Delete", "2024/cat.jpg"),
        )


def test_a_request_with_a_wrong_secret_is_refused_by_the_s3_store(cluster: pathlib.Path) -> None:
    with kubeutil.scratch_namespace("brokers-s3") as ns:
        store = stores.deploy_s3_store(ns, webhook_url=None)
        wrong = stores.S3Store(
            namespace=ns,
            endpoint=store.endpoint,
            host_endpoint=store.host_endpoint,
            access_key=store.access_key,
            secret_key=store.secret_key + "x",
            secret_name=store.secret_name,
        )
        assert wrong.request("GET", "/").status == 403
        assert store.request("GET", "/").status == 200


# --- supervision ------------------------------------------------------------------------------


def test_up_restarts_a_dead_broker_and_leaves_the_running_cluster_alone(
    cluster: pathlib.Path,
) -> None:
    paths = config.Paths()
    sup = kcluster.supervisor(paths)
    apiserver, nats = sup.record("kube-apiserver"), sup.record("nats")
    assert apiserver is not None
    assert nats is not None
    os.kill(nats.pid, signal.SIGKILL)
    kubeutil.wait_for("nats to die", lambda: not nats.alive(), timeout=10)
    assert not kcluster.running(paths)

    env = {**os.environ, "PYTHONPATH": f"{REPO / 'operator'}:{REPO / 'hack' / 'cluster'}"}
    result = subprocess.run(
        [sys.executable, "-m", "kfncluster", "up"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "started nats" in result.stdout
    restarted = sup.record("nats")
    assert restarted is not None
    assert restarted.pid != nats.pid
    assert restarted.alive()
    assert apiserver.alive(), "the API server was restarted"
    assert kcluster.running(paths)
