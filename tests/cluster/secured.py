"""Brokers that take clients only with credentials, for the credentials tests.

Each runs as a process of the test on the node address (where pods reach it), from the
runtimes the local cluster already has (its nats-server build and its Kafka classpath),
with its data in a temporary folder. It is stopped by PID when its ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import secrets
import socket
import subprocess
from collections.abc import Callable, Iterator

import confluent_kafka
from confluent_kafka import admin as admin_

from kfncluster import brokers, build, config
from tests.cluster.kubeutil import NODE, wait_for

MECHANISM = "SCRAM-SHA-512"


@dataclasses.dataclass(frozen=True)
class Nats:
    url: str
    token: str
    log: pathlib.Path


@dataclasses.dataclass(frozen=True)
class Kafka:
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


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _running(
    argv: list[str], log: pathlib.Path, what: str, ready: Callable[[], bool], timeout: float
) -> Iterator[None]:
    """Runs ``argv`` (output appended to ``log``) until the block ends; waits for ``ready``."""
    with log.open("ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=out)

    def answers() -> bool:
        assert process.poll() is None, f"{what} exited; read {log}"
        return ready()

    try:
        wait_for(f"{what} (log: {log})", answers, timeout=timeout, every=0.5)
        yield
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextlib.contextmanager
def nats_server(root: pathlib.Path) -> Iterator[Nats]:
    """nats-server with JetStream that takes clients only with its token."""
    port = free_port(NODE)
    token = secrets.token_urlsafe(24)
    conf = root / "nats.conf"
    conf.write_text(
        f'listen: "{NODE}:{port}"\n'
        f'authorization {{ token: "{token}" }}\n'
        f'jetstream {{ store_dir: "{root / "data"}", max_memory_store: 64MB, '
        "max_file_store: 256MB }\n"
    )
    log = root / "nats.log"
    binary = build.binaries(config.Paths())["nats-server"]

    def listening() -> bool:
        socket.create_connection((NODE, port), timeout=1).close()
        return True

    with _running([str(binary), "--config", str(conf)], log, "the secured nats-server",
                  listening, timeout=20):  # fmt: skip
        yield Nats(f"nats://{NODE}:{port}", token, log)


def _kafka_properties(root: pathlib.Path, port: int, controller: int, admin: str) -> dict[str, str]:
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


@contextlib.contextmanager
def kafka_broker(root: pathlib.Path) -> Iterator[Kafka]:
    """A single-node KRaft broker whose clients must log in with SASL/SCRAM-SHA-512 (users
    ``admin``, for the broker itself, and ``fn``, written at format time); its controller
    listens on loopback only."""
    paths = config.Paths()
    port, controller = free_port(NODE), free_port("127.0.0.1")
    admin, password = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    props = root / "server.properties"
    props.write_text(brokers.render_properties(_kafka_properties(root, port, controller, admin)))
    log = root / "kafka.log"
    fmt = brokers.kafka_java(
        paths, "kafka.tools.StorageTool", "format",
        "--cluster-id", brokers.new_kafka_cluster_id(),
        "--config", str(props),
        "--add-scram", f"{MECHANISM}=[name=admin,password={admin}]",
        "--add-scram", f"{MECHANISM}=[name=fn,password={password}]",
    )  # fmt: skip
    with log.open("wb") as out:
        done = subprocess.run(fmt, stdout=out, stderr=out, check=False, timeout=120)
    assert done.returncode == 0, f"formatting the secured Kafka failed; read {log}"
    kafka = Kafka(f"{NODE}:{port}", "fn", password, log)

    def answers() -> bool:
        # A client made before the port listens logs every failed connect until it is freed.
        socket.create_connection((NODE, port), timeout=1).close()
        try:
            metadata = admin_.AdminClient(kafka.client()).list_topics(timeout=2)
        except confluent_kafka.KafkaException:
            return False
        return bool(metadata.brokers)

    argv = brokers.kafka_java(paths, "kafka.Kafka", str(props))
    with _running(argv, log, "the secured Kafka", answers, timeout=90):
        yield kafka
