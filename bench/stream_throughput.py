"""Records per second through a stream Trigger's consumer and a real function, versus a
plain Kafka consumer, measured in the same run.

One topic (3 partitions) is filled with ``--records`` small JSON records, then consumed from
the start by a fresh consumer group for every row, per batch size N (1, 10, 100):

* plain       — a confluent-kafka consumer loop: consume up to N records, do the per-record
                work (decode the value, read its number), commit synchronously per batch and
                partition: the floor any consumer with at-least-once commits pays.
* kfn → fn    — :class:`kfn.triggers.stream.kafka.Consumer` with ``batchSize`` N, invoking
                a trivial Function (python3.11 runtime, ``minReplicas: 1``, concurrency 3,
                one pod) through the activator Service's ClusterIP: Lambda's event
                (base64 records), a synchronous invocation per batch through activator and
                runtime, the handler doing the same per-record work, a commit per batch.
* kfn → stub  — the same consumer invoking a loopback HTTP server (its own process) that
                does the handler's work and answers at once: the worker's own cost alone,
                without the activator's hop and the runtime, to tell the two apart.

The consumer runs in this process on the host rather than as the chart's kfn-stream pod:
it measures the code of the working tree without rebuilding and reinstalling the image,
shares the machine's load with the plain consumer alike, and can be profiled
(``py-spy record --threads --pid``). The invocation path it takes
(HTTP to the activator Service, the activator's proxying, the function pod) is the one the
in-cluster worker takes.

The function answers ``{"records": n, "sum": s}``; the benchmark counts answered records
and checks that the sum over all invocations is exactly that of the topic (none lost or
repeated). Rates count from the first answer to the last. The topic is large (200,000
records by default) because the client prefetches up to 64 MB before the first record is
handed out: a short run measures the plain consumer draining its local queue, not Kafka.
Ratios compare with ``plain`` of the same batch size, measured right before. Each kfn row
also prints its cycle per batch and partition, split into the invocation's round trip and
the worker's own time.

    .venv/bin/python bench/stream_throughput.py [--records 200000] [--batches 1,10,100]
    .venv/bin/python bench/stream_throughput.py --plot docs/img/stream-throughput.png

With ``--plot PATH`` it also draws records/s per batch size as bars (plain, kfn → fn,
kfn → stub), on a log scale since the rates span two orders of magnitude, as a PNG.

Needs kfn installed (``make up``) and Kafka on 10.244.0.1:9092 (``kfncluster up``). Creates
and deletes its topic and namespace; the stub serves on 127.0.0.1 only. Target: the
``kfn → fn`` rate at batch 100 is at least 50 % of ``plain``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import http.server
import json
import multiprocessing
import pathlib
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [
    str(REPO / "bench"),
    str(REPO),
    str(REPO / "operator"),
    str(REPO / "hack" / "cluster"),
]

import confluent_kafka  # noqa: E402
import confluent_kafka.admin  # noqa: E402
from tests.cluster import httpload  # noqa: E402
from tests.cluster.invoking import bearer, invoke_token  # noqa: E402
from tests.cluster.kubeutil import (  # noqa: E402
    kubectl,
    kubectl_json,
    python_function,
)

import plots  # noqa: E402
from kfn import retry  # noqa: E402
from kfn.api import trigger as trigger_api  # noqa: E402
from kfn.triggers import invoke, onfailure  # noqa: E402
from kfn.triggers import status as status_  # noqa: E402
from kfn.triggers.stream import kafka, source  # noqa: E402
from kfncluster import fnimage  # noqa: E402

PARTITIONS = 3
FUNCTION = "sum"

HANDLER = """\
import base64, json


def handler(event, context):
    count = 0
    total = 0
    for records in event["records"].values():
        for record in records:
            total += int(json.loads(base64.b64decode(record["value"]))["n"])
            count += 1
    return {"records": count, "sum": total}
"""


def work(value: bytes) -> int:
    """The per-record work every row does: parse the record and read its number."""
    return int(json.loads(value)["n"])


# --- the loopback stub -------------------------------------------------------------------------


class Stub(http.server.BaseHTTPRequestHandler):
    """The activator's invoke API answering at once, after the handler's work."""

    protocol_version = "HTTP/1.1"
    # One buffered write per answer and no Nagle: otherwise headers and body leave in two
    # segments and the client's delayed ACK adds 40 ms to every invocation.
    wbufsize = -1
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        count = total = 0
        for records in event["records"].values():
            for record in records:
                total += work(base64.b64decode(record["value"]))
                count += 1
        body = json.dumps({"records": count, "sum": total}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


def serve(port: multiprocessing.Queue[int]) -> None:
    """The stub's process: serves until killed."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    port.put(server.server_address[1])
    server.serve_forever()


# --- Kafka -------------------------------------------------------------------------------------


def produce(bootstrap: str, topic: str, records: int) -> None:
    admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([confluent_kafka.admin.NewTopic(topic, PARTITIONS, 1)])
    for future in futures.values():
        future.result(30)
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for n in range(records):
        value = json.dumps({"n": n, "pad": "x" * 64}).encode()
        while True:
            try:
                producer.produce(topic, value, key=str(n).encode())
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(60)


def delete_topic(bootstrap: str, topic: str) -> None:
    admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics([topic]).values():
        with contextlib.suppress(confluent_kafka.KafkaException):
            future.result(30)


def plain(bootstrap: str, topic: str, records: int, batch: int) -> float:
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-plain-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    seen = 0
    total = 0
    start = None
    while seen < records:
        messages = consumer.consume(num_messages=batch, timeout=1.0)
        if not messages:
            continue
        if start is None:
            start = time.monotonic()
        last: dict[int, confluent_kafka.Message] = {}
        for message in messages:
            if message.error() is not None:
                continue
            total += work(message.value() or b"")
            last[message.partition() or 0] = message
            seen += 1
        consumer.commit(
            offsets=[
                confluent_kafka.TopicPartition(topic, p, (m.offset() or 0) + 1)
                for p, m in last.items()
            ],
            asynchronous=False,
        )
    elapsed = time.monotonic() - (start or time.monotonic())
    consumer.close()
    assert total == records * (records - 1) // 2, "the plain consumer lost records"
    return records / elapsed


# --- through kfn's consumer --------------------------------------------------------------------


class CountingInvoker(invoke.Invoker):
    """The worker's invoker, adding up what the function answered (records and their sum)."""

    def __init__(self, activator_url: str, token: Callable[[], str] | None = None) -> None:
        super().__init__(activator_url, token)
        self.lock = threading.Lock()
        self.records = 0
        self.total = 0
        self.first: float | None = None
        self.first_records = 0
        self.last = 0.0
        self.errors: list[str] = []
        #: Invocations answered and the seconds spent waiting for them, summed over threads.
        self.calls = 0
        self.waited = 0.0

    def invoke(self, namespace: str, function: str, payload: bytes, **kwargs: Any) -> retry.Outcome:
        sent = time.monotonic()
        outcome = super().invoke(namespace, function, payload, **kwargs)
        now = time.monotonic()
        with self.lock:
            self.calls += 1
            self.waited += now - sent
            if outcome.kind != "success":
                self.errors.append(outcome.describe())
                return outcome
            answer = json.loads(outcome.body)
            self.records += answer["records"]
            self.total += answer["sum"]
            if self.first is None:
                self.first = now
                self.first_records = answer["records"]
            self.last = now
        return outcome


def through_kfn(
    bootstrap: str, topic: str, records: int, batch: int, *, url: str, namespace: str
) -> float:
    spec = trigger_api.StreamTrigger.model_validate(
        {
            "kafka": {
                "bootstrapServers": [bootstrap],
                "topic": topic,
                "consumerGroup": f"bench-kfn-{uuid.uuid4().hex[:8]}",
            },
            "batchSize": batch,
            "startingPosition": "Earliest",
        }
    )
    target = source.Target(namespace, f"b{batch}", uuid.uuid4().hex, FUNCTION, spec)
    # The same token header to the stub, which ignores it: the two rows cost the same.
    invoker = CountingInvoker(url, invoke_token)
    consumer = kafka.Consumer(
        target,
        source.Clients(invoker, onfailure.Destinations(invoker), status_.StatusWriter()),
    )
    consumer.start()
    last_report = time.monotonic()
    deadline = last_report + 600
    while invoker.records < records:
        time.sleep(0.005)
        now = time.monotonic()
        if now - last_report > 5:
            last_report = now
            print(f"  ... {invoker.records}/{records} {invoker.errors[-1:]}", flush=True)
        if now > deadline:
            raise SystemExit(f"only {invoker.records}/{records} records after 600 s")
    consumer.stop()
    consumer.join()
    assert invoker.records == records, f"{invoker.records} records answered, not {records}"
    assert invoker.total == records * (records - 1) // 2, "records were lost or repeated"
    assert invoker.first is not None
    elapsed = invoker.last - invoker.first
    # Each partition has one batch in flight: its cycle is the invocation plus the worker's
    # own time between two invocations (taking the batch, the event, the answer, commit).
    cycle = elapsed * PARTITIONS / invoker.calls
    round_trip = invoker.waited / invoker.calls
    print(
        f"  {invoker.calls} invocations; per batch and partition: cycle {cycle * 1000:.2f} ms "
        f"= invoke round trip {round_trip * 1000:.2f} ms "
        f"+ worker {(cycle - round_trip) * 1000:.2f} ms",
        flush=True,
    )
    return (records - invoker.first_records) / elapsed


# --- the function on the cluster ---------------------------------------------------------------


def deploy_function(namespace: str, address: tuple[str, int]) -> None:
    image = fnimage.push_python_function("bench/stream-sum", "v1", {"app.py": HANDLER})
    python_function(namespace, FUNCTION, image, concurrency=PARTITIONS,
                    scale={"minReplicas": 1, "maxReplicas": 1, "idleTimeout": "10m"})  # fmt: skip
    path = f"/_kfn/functions/{namespace}/{FUNCTION}/invoke"
    event = json.dumps({"records": {}}).encode()

    def answers() -> bool:
        async def probe() -> bool:
            for _ in range(10):
                answer = await httpload.request(*address, "POST", path, event, headers=bearer())
                if answer.status != 200:
                    return False
            return True

        return asyncio.run(probe())

    _wait(answers, "the function to answer through both activators")


def _wait(condition: Callable[[], bool], what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (AssertionError, OSError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="10.244.0.1:9092")
    parser.add_argument("--records", type=int, default=200000)
    parser.add_argument("--batches", default="1,10,100")
    parser.add_argument("--namespace", default="kfn-system", help="where kfn runs")
    parser.add_argument("--no-stub", action="store_true", help="skip the kfn → stub rows")
    parser.add_argument("--no-function", action="store_true", help="skip the kfn → fn rows")
    plots.add_argument(parser)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    service = kubectl_json("-n", args.namespace, "get", "service", "kfn-invoke")
    address = (service["spec"]["clusterIP"], 80)
    topic = f"bench-stream-{uuid.uuid4().hex[:8]}"
    namespace = f"bench-stream-{uuid.uuid4().hex[:6]}"
    ports: multiprocessing.Queue[int] = multiprocessing.Queue()
    stub = multiprocessing.Process(target=serve, args=(ports,), daemon=True)
    stub.start()
    stub_url = f"http://127.0.0.1:{ports.get(timeout=30)}"
    activator_url = f"http://{address[0]}:{address[1]}"
    rows: list[tuple[int, float, float | None, float | None]] = []
    kubectl("create", "namespace", namespace)
    try:
        if not args.no_function:
            deploy_function(namespace, address)
        print(f"producing {args.records} records to {topic} ({PARTITIONS} partitions)", flush=True)
        produce(args.bootstrap, topic, args.records)
        for batch in batches:
            base = plain(args.bootstrap, topic, args.records, batch)
            print(f"plain,      batch {batch:3d}: {base:7.0f} records/s", flush=True)
            real = alone = None
            if not args.no_function:
                real = through_kfn(
                    args.bootstrap,
                    topic,
                    args.records,
                    batch,
                    url=activator_url,
                    namespace=namespace,
                )
                print(f"kfn → fn,   batch {batch:3d}: {real:7.0f} records/s", flush=True)
            if not args.no_stub:
                alone = through_kfn(
                    args.bootstrap, topic, args.records, batch, url=stub_url, namespace=namespace
                )
                print(f"kfn → stub, batch {batch:3d}: {alone:7.0f} records/s", flush=True)
            rows.append((batch, base, real, alone))
    finally:
        stub.kill()
        stub.join()
        delete_topic(args.bootstrap, topic)
        kubectl("delete", "namespace", namespace, "--wait=false")

    print_table(rows)
    if args.plot:
        plot(args.plot, rows, args.records)
    return 0


def print_table(rows: list[tuple[int, float, float | None, float | None]]) -> None:
    """The rows side by side, each kfn rate as a share of plain, and the target's verdict."""

    def cell(rate: float | None, base: float) -> str:
        return f"{'-':>9} {'-':>6}" if rate is None else f"{rate:>9.0f} {rate / base:>6.0%}"

    print()
    print(
        f"{'batch':>5} {'plain rec/s':>11} {'kfn→fn':>9} {'/plain':>6} "
        f"{'kfn→stub':>9} {'/plain':>6}"
    )
    for batch, base, real, alone in rows:
        print(f"{batch:>5} {base:>11.0f} {cell(real, base)} {cell(alone, base)}")
    at_100 = [(base, real) for batch, base, real, _ in rows if batch == 100 and real]
    if at_100:
        ratio = at_100[0][1] / at_100[0][0]
        verdict = "met" if ratio >= 0.5 else "NOT met"
        print(f"target (kfn → fn at batch 100 >= 50 % of plain): {verdict} ({ratio:.0%})")


def plot(
    path: pathlib.Path, rows: list[tuple[int, float, float | None, float | None]], records: int
) -> None:
    """Records/s by batch size: a bar per consumer, grouped by batch."""
    plots.grouped_bars(
        path,
        [str(batch) for batch, *_ in rows],
        {
            "plain consumer": [base for _, base, _, _ in rows],
            "kfn → fn": [real for _, _, real, _ in rows],
            "kfn → stub": [alone for _, _, _, alone in rows],
        },
        title=f"Stream trigger throughput, {records:,} records, 3 partitions",
        xlabel="batch size (records per invocation)",
        ylabel="records/s (log scale)",
        log=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
