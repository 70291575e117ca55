"""A Kafka stream Trigger against a broker that takes clients only over SASL/SCRAM-SHA-512.

The module starts a second single-node KRaft broker from the cluster's Kafka runtime: its
client listener on the node address (where pods reach it), its controller on loopback, the
SCRAM users written at format time, and stops it by PID afterwards. The function is the one
of the plain Kafka tests, posting what it got to their sink.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import pathlib
import secrets
import socket
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import confluent_kafka
import pytest
from confluent_kafka import admin as admin_

from kfncluster import brokers, config, fnimage
from tests.cluster.kubeutil import NODE, kubectl, kubectl_json, scratch_namespace, wait_for
from tests.cluster.test_stream_triggers import (
    HANDLER,
    POISON,
    Sink,
    check_order,
    condition,
    deploy_function,
    trigger,
)

pytestmark = pytest.mark.cluster

MECHANISM = "SCRAM-SHA-512"


@dataclasses.dataclass(frozen=True)
class SecuredKafka:
    bootstrap: str
    user: str
    password: str
    log: pathlib.Path

    def client(self, **extra: str) -> dict[str, str]:
        """librdkafka settings of the SCRAM user."""
        return {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": MECHANISM,
            "sasl.username": self.user,
            "sasl.password": self.password,
            **extra,
        }


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _properties(root: pathlib.Path, port: int, controller: int, admin: str) -> dict[str, str]:
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="admin" password="{admin}";'
    )
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller}",
        "listeners": f"SASL_PLAINTEXT://{NODE}:{port},CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": f"SASL_PLAINTEXT://{NODE}:{port}",
        "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        f"listener.name.sasl_plaintext.{MECHANISM.lower()}.sasl.jaas.config": jaas,
        "log.dirs": str(root / "data"),
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "2",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
    }


@pytest.fixture(scope="module")
def secured(
    cluster: pathlib.Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecuredKafka]:
    paths = config.Paths()
    root = tmp_path_factory.mktemp("secured-kafka")
    port, controller = _free_port(NODE), _free_port("127.0.0.1")
    admin, password = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    props = root / "server.properties"
    props.write_text(brokers.render_properties(_properties(root, port, controller, admin)))
    log = root / "kafka.log"
    fmt = brokers.kafka_java(
        paths, "kafka.tools.StorageTool", "format",
        "--cluster-id", base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode(),
        "--config", str(props),
        "--add-scram", f"{MECHANISM}=[name=admin,password={admin}]",
        "--add-scram", f"{MECHANISM}=[name=fn,password={password}]",
    )  # fmt: skip
    with log.open("wb") as out:
        done = subprocess.run(fmt, stdout=out, stderr=out, check=False, timeout=120)
        assert done.returncode == 0, f"formatting the secured Kafka failed; read {log}"
        server = subprocess.Popen(
            brokers.kafka_java(paths, "kafka.Kafka", str(props)), stdout=out, stderr=out
        )
    kafka = SecuredKafka(f"{NODE}:{port}", "fn", password, log)
    try:

        def answers() -> bool:
            assert server.poll() is None, f"the secured Kafka exited; read {log}"
            try:
                metadata = admin_.AdminClient(kafka.client()).list_topics(timeout=2)
            except confluent_kafka.KafkaException:
                return False
            return bool(metadata.brokers)

        wait_for(f"the secured Kafka (log: {log})", answers, timeout=90, every=1)
        yield kafka
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    collected = Sink()
    yield collected
    collected.close()


@pytest.fixture(scope="module")
def image(cluster: pathlib.Path, sink: Sink) -> str:
    handler = HANDLER.format(sink=sink.url, poison=POISON)
    return fnimage.push_python_function("tests/stream-sasl", "v1", {"app.py": handler})


@pytest.fixture(scope="module")
def namespace(kfn: str) -> Iterator[str]:
    kubectl("-n", kfn, "rollout", "status", "deployment/kfn-stream", "--timeout=120s")
    with scratch_namespace("kafka-sasl") as name:
        yield name


def test_a_scram_secured_broker_is_read_with_the_secrets_credentials_which_never_show(
    kfn: str, namespace: str, image: str, sink: Sink, secured: SecuredKafka
) -> None:
    topic = f"secured-{uuid.uuid4().hex[:8]}"
    admin_client = admin_.AdminClient(secured.client())
    for future in admin_client.create_topics([admin_.NewTopic(topic, 2, 1)]).values():
        future.result(30)
    values = [f"sasl-{i}" for i in range(200)]
    producer = confluent_kafka.Producer(secured.client(**{"linger.ms": "10"}))
    for index, value in enumerate(values):
        producer.produce(topic, value.encode(), key=str(index).encode())
    assert producer.flush(60) == 0
    wrong = secrets.token_urlsafe(18)
    for name, password in (("kafka-scram", secured.password), ("kafka-wrong", wrong)):
        kubectl("-n", namespace, "create", "secret", "generic", name,
                f"--from-literal=username={secured.user}", f"--from-literal=password={password}",
                f"--from-literal=mechanism={MECHANISM}")  # fmt: skip
    deploy_function(namespace, "secured", image, at_zero=False)
    source = {"bootstrapServers": [secured.bootstrap], "topic": topic}
    trigger(namespace, "secured", "secured", {
        "kafka": source, "startingPosition": "Earliest", "batchSize": 50,
        "credentialsSecretRef": {"name": "kafka-scram"},
    })  # fmt: skip
    trigger(namespace, "refused", "secured", {
        "kafka": source, "startingPosition": "Earliest",
        "credentialsSecretRef": {"name": "kafka-wrong"},
    })  # fmt: skip

    def mine() -> list[tuple[int, int, str]]:
        return [r for r in sink.records() if r[2].startswith("sasl-")]

    wait_for("the 200 records of the secured topic", lambda: len({v for *_, v in mine()}) >= 200,
             timeout=180, every=0.5)  # fmt: skip
    check_order(mine(), values)

    def refused() -> dict[str, Any] | None:
        cond = condition(namespace, "refused", "SourceReachable")
        return cond if cond and cond["status"] == "False" else None

    cond = wait_for("SourceReachable=False for the wrong password", refused, timeout=120, every=1)
    print(f"\nSourceReachable: {cond['reason']}: {cond['message']}")
    assert cond["reason"] == "ConnectionFailed"
    assert f"refused the credentials of Secret {namespace}/kafka-wrong" in cond["message"]
    assert "authentication" in cond["message"].lower()
    seen = json.dumps(kubectl_json("-n", namespace, "get", "triggers"))
    seen += kubectl("-n", namespace, "get", "events", "-o", "json")
    seen += kubectl("-n", kfn, "logs", "deployment/kfn-stream", "--tail=-1")
    for password in (secured.password, wrong):
        assert password not in seen, "a Kafka password shows in status, events or logs"
    for name in ("secured", "refused"):
        kubectl("-n", namespace, "delete", "trigger", name, "--wait=true")
