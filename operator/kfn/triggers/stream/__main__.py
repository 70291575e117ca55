"""``python3 -m kfn.triggers.stream``: run the stream trigger worker until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
from types import FrameType

import prometheus_client

from kfn.triggers import delivery
from kfn.triggers import status as status_
from kfn.triggers.stream import kafka, worker


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kfn.triggers.stream", description=__doc__)
    namespace = worker.own_namespace()
    parser.add_argument(
        "--activator-url",
        default=worker.default_activator_url(namespace),
        help="Base URL of the activator (KFN_ACTIVATOR_URL).",
    )
    parser.add_argument("--metrics-address", default="127.0.0.1")
    parser.add_argument(
        "--metrics-port", type=int, default=int(os.environ.get("KFN_METRICS_PORT", "9090"))
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("KFN_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    prometheus_client.start_http_server(args.metrics_port, args.metrics_address)
    invoker = delivery.Invoker(args.activator_url)
    destinations = delivery.Destinations(invoker)
    statuses = status_.StatusWriter()

    def consumer(target: kafka.Target) -> kafka.Consumer:
        return kafka.Consumer(target, invoker=invoker, destinations=destinations, statuses=statuses)

    streams = worker.Worker(consumer, statuses, os.environ.get("AWS_REGION", "local"))

    def on_term(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        streams.stop.set()
        streams.table.changed.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    logging.getLogger(__name__).info("stream worker invoking through %s", args.activator_url)
    streams.run()


if __name__ == "__main__":
    main()
