"""Records per second through a stream Trigger's consumer versus a plain Kafka consumer.

One topic (3 partitions) is filled with ``--records`` small JSON records, then consumed from
the start by a fresh consumer group, three ways per run:

* plain     — a confluent-kafka consumer loop: consume up to ``--batch`` records, do the
              per-record work, commit synchronously per batch and partition (the
              lower bound any consumer with at-least-once commits pays);
* kfn N     — :class:`kfn.triggers.stream.kafka.Consumer` with ``batchSize`` N (1, 10, 100):
              Lambda's event (base64 records), a synchronous HTTP invocation per batch, a
              synchronous commit per batch.

The function is a loopback HTTP server standing in for the activator and the function
(keep-alive, answering ``null``), in its own process as a function pod would be, doing the
same per-record work as the plain loop: decode the value and read its number. The worker's
own costs (event building, base64, JSON, HTTP, the commit) are what is measured; the
activator's hop is measured by bench/activator_overhead.py. Ratios compare each run with
``plain`` measured in the same run.

Run: ``.venv/bin/python bench/stream_throughput.py`` (needs Kafka on 10.244.0.1:9092, started
by ``kfncluster up``). Creates and deletes its topics; serves on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.server
import json
import multiprocessing
import threading
import time
import urllib.request
import uuid
from typing import Any

import confluent_kafka
import confluent_kafka.admin

from kfn.api import trigger as trigger_api
from kfn.triggers import delivery
from kfn.triggers import status as status_
from kfn.triggers.stream import kafka

PARTITIONS = 3


def work(value: bytes) -> int:
    """The per-record work both sides do: parse the record and read its number."""
    return int(json.loads(value)["n"])


class Function(http.server.BaseHTTPRequestHandler):
    """The activator's invoke API, answering at once after the per-record work.

    ``GET /`` answers the records seen so far and the sum of their numbers.
    """

    protocol_version = "HTTP/1.1"
    # One buffered write per answer and no Nagle: otherwise headers and body leave in two
    # segments and the client's delayed ACK adds 40 ms to every invocation.
    wbufsize = -1
    disable_nagle_algorithm = True
    total = 0
    records = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        event = json.loads(body)
        count = 0
        total = 0
        for records in event["records"].values():
            for record in records:
                total += work(base64.b64decode(record["value"]))
                count += 1
        with Function.lock:
            Function.total += total
            Function.records += count
        self.send_response(200)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"null")

    def do_GET(self) -> None:
        with Function.lock:
            body = json.dumps([Function.records, Function.total]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


def serve(port: multiprocessing.Queue[int]) -> None:
    """The function process: serves until killed."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Function)
    port.put(server.server_address[1])
    server.serve_forever()


def seen(url: str) -> tuple[int, int]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        records, total = json.loads(response.read())
    return int(records), int(total)


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


def through_kfn(bootstrap: str, topic: str, records: int, batch: int, url: str) -> float:
    before, before_total = seen(url)
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
    target = kafka.Target("bench", f"b{batch}", uuid.uuid4().hex, "fn", spec)
    invoker = delivery.Invoker(url)
    consumer = kafka.Consumer(
        target,
        invoker=invoker,
        destinations=delivery.Destinations(invoker),
        statuses=status_.StatusWriter(),
    )
    consumer.start()
    while (count := seen(url)[0] - before) == 0:
        time.sleep(0.001)
    start = time.monotonic()
    first = count
    last_report = start
    while count < records:
        time.sleep(0.005)
        count = seen(url)[0] - before
        if time.monotonic() - last_report > 5:
            last_report = time.monotonic()
            print(f"  ... {count}/{records}", flush=True)
    elapsed = time.monotonic() - start
    consumer.stop()
    consumer.join()
    total = seen(url)[1] - before_total
    assert total == records * (records - 1) // 2, "records were lost or repeated"
    return (records - first) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="10.244.0.1:9092")
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--batches", default="1,10,100")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    topic = f"bench-stream-{uuid.uuid4().hex[:8]}"
    ports: multiprocessing.Queue[int] = multiprocessing.Queue()
    function = multiprocessing.Process(target=serve, args=(ports,), daemon=True)
    function.start()
    url = f"http://127.0.0.1:{ports.get(timeout=30)}"
    try:
        print(f"producing {args.records} records to {topic} ({PARTITIONS} partitions)", flush=True)
        produce(args.bootstrap, topic, args.records)
        rows = []
        for batch in batches:
            base = plain(args.bootstrap, topic, args.records, batch)
            print(f"plain, batch {batch}: {base:9.0f} records/s", flush=True)
            rate = through_kfn(args.bootstrap, topic, args.records, batch, url)
            print(f"kfn,   batch {batch}: {rate:9.0f} records/s", flush=True)
            rows.append((batch, base, rate))
    finally:
        function.kill()
        function.join()
        delete_topic(args.bootstrap, topic)
    print()
    print(f"{'batch':>6} {'plain rec/s':>12} {'kfn rec/s':>12} {'kfn/plain':>10}")
    for batch, base, rate in rows:
        print(f"{batch:>6} {base:>12.0f} {rate:>12.0f} {rate / base:>9.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
