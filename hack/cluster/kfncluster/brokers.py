"""The event brokers on the node: Apache Kafka (KRaft) and NATS with JetStream.

kfn's stream triggers consume from them; tests, benchmarks and examples
produce to them. Both run as supervised host processes like the rest of the
cluster, listening on the node address only (``10.244.0.1``), where the host
and every pod reach them and nothing off the machine does; their control
ports (Kafka's KRaft controller, NATS monitoring) listen on loopback.

* Kafka: one process that is both broker and KRaft controller. Its runtime
  classpath is resolved from Maven Central with the committed
  ``hack/cluster/kafka/pom.xml`` (``mvn dependency:copy-dependencies``) into
  ``~/.cache/kfn/kafka-<version>-<pom hash>/libs`` once; its log directory is
  formatted with a fixed cluster id before each start (idempotent), and lives
  under the cluster's state, so ``down`` removes every topic.
* NATS: ``nats-server`` built from the Go module proxy like the other Go
  components, JetStream storing in the cluster's state, with small limits.

The settings are those of a single development node: replication factor 1
everywhere, no group rebalance delay, topics created explicitly (so a typo in
a trigger's topic shows up as an error instead of a new empty topic).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import pathlib
import shutil
import socket
import struct
import uuid
from collections.abc import Callable, Sequence

from kfncluster import config, host, procs

BROKERS = ("kafka", "nats")

KAFKA_POM = pathlib.Path(__file__).resolve().parent.parent / "kafka" / "pom.xml"
#: The KRaft cluster id (16 bytes, base64url without padding): fixed, so a formatted log
#: directory of an earlier run (kept when only the broker restarts) is accepted again.
KAFKA_CLUSTER_ID = "a2ZuLWxvY2FsLWthZmthMQ"
KAFKA_NODE_ID = 1
KAFKA_HEAP = "512m"
#: Hard caps of JetStream's in-memory and on-disk streams, and a soft cap of the Go heap.
NATS_MAX_MEMORY_STORE = "128MB"
NATS_MAX_FILE_STORE = "1GB"
NATS_GOMEMLIMIT = "256MiB"


# --- Kafka ---------------------------------------------------------------------


def kafka_key() -> str:
    """The cache key of Kafka's runtime: its version and the pom that resolves it."""
    digest = hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()[:12]
    return f"{config.KAFKA_VERSION}-{digest}"


def kafka_home(paths: config.Paths) -> pathlib.Path:
    return paths.cache / f"kafka-{kafka_key()}"


def kafka_libs(paths: config.Paths) -> pathlib.Path:
    return kafka_home(paths) / "libs"


def kafka_properties_path(paths: config.Paths) -> pathlib.Path:
    return paths.config / "kafka.properties"


def kafka_log4j_path(paths: config.Paths) -> pathlib.Path:
    return paths.config / "kafka-log4j2.xml"


def kafka_properties(paths: config.Paths) -> dict[str, str]:
    """The broker's ``server.properties``, as a mapping (see :func:`render_properties`)."""
    controller = f"127.0.0.1:{config.KAFKA_CONTROLLER_PORT}"
    return {
        "process.roles": "broker,controller",
        "node.id": str(KAFKA_NODE_ID),
        "controller.quorum.voters": f"{KAFKA_NODE_ID}@{controller}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listeners": f"PLAINTEXT://{config.KAFKA_BOOTSTRAP},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{config.KAFKA_BOOTSTRAP}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(paths.kafka_data),
        # One node: every internal topic and every new topic has one replica.
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Fewer partitions of the internal topics than the 50 meant for a cluster: the first
        # consumer group then starts in well under a second.
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.num.partitions": "4",
        "num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "delete.topic.enable": "true",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "log.retention.hours": "24",
        "log.segment.bytes": str(64 * 1024 * 1024),
    }


def render_properties(props: dict[str, str]) -> str:
    return "".join(f"{k}={v}\n" for k, v in props.items())


def kafka_log4j2() -> str:
    """Logs to standard output, which the supervisor appends to ``logs/kafka.log``."""
    return """\
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn">
  <Appenders>
    <Console name="stdout" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d{ISO8601}] %p %m (%c{1})%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="info"><AppenderRef ref="stdout"/></Root>
    <Logger name="kafka.request.logger" level="warn"/>
    <Logger name="org.apache.kafka.clients" level="warn"/>
    <Logger name="org.apache.kafka.common.utils.AppInfoParser" level="warn"/>
    <Logger name="kafka.server.KafkaConfig" level="warn"/>
    <Logger name="org.apache.kafka.common.config.AbstractConfig" level="warn"/>
  </Loggers>
</Configuration>
"""


def java() -> str:
    return shutil.which("java") or "/usr/bin/java"


def kafka_java(paths: config.Paths, main: str, *args: str) -> list[str]:
    """A JVM running ``main`` on Kafka's classpath with the cluster's heap and logging."""
    return [
        java(),
        "-Xms128m",
        f"-Xmx{KAFKA_HEAP}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={kafka_log4j_path(paths)}",
        "-cp",
        f"{kafka_libs(paths)}/*",
        main,
        *args,
    ]


def new_kafka_cluster_id() -> str:
    """A random Kafka cluster id that command lines cannot mistake for an option.

    Kafka's ids are URL-safe base64 of 16 random bytes, so one in 64 begins with "-", which
    the storage tool's argument parser takes for a flag; Kafka's own generator draws again.
    """
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not candidate.startswith("-"):
            return candidate


def kafka_format_argv(paths: config.Paths) -> list[str]:
    """Formats the log directory for the fixed cluster id; a formatted one is left alone."""
    return kafka_java(
        paths,
        "kafka.tools.StorageTool",
        "format",
        "--cluster-id",
        KAFKA_CLUSTER_ID,
        "--config",
        str(kafka_properties_path(paths)),
        "--ignore-formatted",
    )


def ensure_kafka(paths: config.Paths, log: pathlib.Path) -> bool:
    """Resolves Kafka's runtime classpath with Maven once per key; True if it did now."""
    home = kafka_home(paths)
    if (home / ".complete").exists():
        return False
    if shutil.which("mvn") is None:
        raise RuntimeError("mvn is required to resolve Kafka's classpath")
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    host.run_logged(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(KAFKA_POM),
            f"-Dkafka.version={config.KAFKA_VERSION}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={kafka_libs(paths)}",
        ],
        log,
        f"resolving Kafka {config.KAFKA_VERSION} with Maven",
    )
    (home / ".complete").touch()
    for stale in paths.cache.glob("kafka-*"):
        if stale != home and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    return True


def format_kafka(paths: config.Paths, log: pathlib.Path) -> None:
    paths.kafka_data.mkdir(parents=True, exist_ok=True)
    host.run_logged(kafka_format_argv(paths), log, "kafka: formatting its log directory")


# --- Kafka's wire protocol, just enough to ask for metadata ----------------------

_METADATA = 3
_METADATA_VERSION = 4


def metadata_request(correlation_id: int, client_id: str = "kfncluster") -> bytes:
    """A Metadata v4 request for no topics (only the brokers), size-prefixed."""
    client = client_id.encode()
    header = struct.pack(">hhih", _METADATA, _METADATA_VERSION, correlation_id, len(client))
    body = struct.pack(">ib", 0, 0)  # topics: empty array; allow_auto_topic_creation: false
    message = header + client + body
    return struct.pack(">i", len(message)) + message


def parse_metadata_brokers(
    response: bytes, correlation_id: int
) -> tuple[list[tuple[int, str, int]], str | None]:
    """The brokers (node id, host, port) and cluster id of a Metadata v4 response body."""
    (got,) = struct.unpack_from(">i", response, 0)
    if got != correlation_id:
        raise ValueError(f"correlation id {got}, expected {correlation_id}")
    offset = 8  # correlation id, throttle time
    (count,) = struct.unpack_from(">i", response, offset)
    offset += 4
    brokers = []
    for _ in range(count):
        node_id, host_len = struct.unpack_from(">ih", response, offset)
        offset += 6
        host = response[offset : offset + host_len].decode()
        offset += host_len
        port, rack_len = struct.unpack_from(">ih", response, offset)
        offset += 6 + max(rack_len, 0)
        brokers.append((node_id, host, port))
    (cluster_len,) = struct.unpack_from(">h", response, offset)
    offset += 2
    cluster = response[offset : offset + cluster_len].decode() if cluster_len >= 0 else None
    return brokers, cluster


def kafka_brokers(
    host: str = config.NODE_IP, port: int = config.KAFKA_PORT, timeout: float = 2.0
) -> tuple[list[tuple[int, str, int]], str | None]:
    """Asks the broker at ``host:port`` for the cluster's brokers (a Metadata request)."""
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(metadata_request(1))
        size = struct.unpack(">i", _read(conn, 4))[0]
        return parse_metadata_brokers(_read(conn, size), 1)


def _read(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return data


def kafka_ready() -> bool:
    """The broker answers a Metadata request and advertises itself on the node address."""
    try:
        brokers, cluster = kafka_brokers()
    except (ValueError, struct.error):
        return False
    return cluster == KAFKA_CLUSTER_ID and (
        (KAFKA_NODE_ID, config.NODE_IP, config.KAFKA_PORT) in brokers
    )


# --- NATS --------------------------------------------------------------------------


def nats_config_path(paths: config.Paths) -> pathlib.Path:
    return paths.config / "nats.conf"


def nats_config(paths: config.Paths) -> str:
    """nats-server's configuration: clients on the node address, monitoring on loopback."""
    return f"""\
server_name: "kfn"
listen: "{config.NODE_IP}:{config.NATS_PORT}"
http: "127.0.0.1:{config.NATS_MONITOR_PORT}"
max_payload: 1MB
jetstream {{
  store_dir: "{paths.nats_data}"
  max_memory_store: {NATS_MAX_MEMORY_STORE}
  max_file_store: {NATS_MAX_FILE_STORE}
}}
"""


# --- both ----------------------------------------------------------------------------


def write_configs(paths: config.Paths) -> None:
    paths.config.mkdir(parents=True, exist_ok=True)
    kafka_properties_path(paths).write_text(render_properties(kafka_properties(paths)))
    kafka_log4j_path(paths).write_text(kafka_log4j2())
    nats_config_path(paths).write_text(nats_config(paths))


def argv(name: str, paths: config.Paths, bins: dict[str, pathlib.Path]) -> list[str]:
    """The command line of broker ``name``."""
    if name == "kafka":
        return kafka_java(paths, "kafka.Kafka", str(kafka_properties_path(paths)))
    if name == "nats":
        return [str(bins["nats-server"]), "--config", str(nats_config_path(paths))]
    raise KeyError(name)


def env(name: str) -> dict[str, str]:
    """Environment a broker runs with on top of the tool's own."""
    if name == "nats":
        return {"GOMEMLIMIT": NATS_GOMEMLIMIT}
    return {}


def prepare(paths: config.Paths, log_dir: pathlib.Path) -> None:
    """Everything a start of the brokers needs: runtime, configs, data directories."""
    ensure_kafka(paths, log_dir / "kafka-resolve.log")
    write_configs(paths)
    paths.nats_data.mkdir(parents=True, exist_ok=True)
    format_kafka(paths, log_dir / "kafka.log")


def start(
    sup: procs.Supervisor,
    paths: config.Paths,
    bins: dict[str, pathlib.Path],
    names: Sequence[str] = BROKERS,
) -> list[procs.Record]:
    """Starts the brokers without waiting for them (see :func:`wait`)."""
    return [sup.start(name, argv(name, paths, bins), env(name)) for name in names]


def _nats_ready() -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", config.NATS_MONITOR_PORT, timeout=2)
    try:
        conn.request("GET", "/healthz?js-enabled-only=true")
        return conn.getresponse().status == 200
    finally:
        conn.close()


def readiness(name: str) -> tuple[Callable[[], bool], float]:
    checks: dict[str, tuple[Callable[[], bool], float]] = {
        "kafka": (kafka_ready, 120),
        "nats": (_nats_ready, 30),
    }
    return checks[name]


def wait(sup: procs.Supervisor, records: Sequence[procs.Record]) -> None:
    for record in records:
        check, timeout = readiness(record.name)
        sup.wait_until(record, check, timeout, what="answer")


def rss_kib(pid: int) -> int | None:
    """Resident memory of a process, for the progress line and the report."""
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None
