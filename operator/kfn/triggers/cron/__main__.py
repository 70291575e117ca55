"""``python3 -m kfn.triggers.cron``: run the cron trigger worker until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
from types import FrameType

import prometheus_client

from kfn.triggers import delivery
from kfn.triggers.cron import worker


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kfn.triggers.cron", description=__doc__)
    namespace = worker.own_namespace()
    parser.add_argument("--namespace", default=namespace, help="Namespace of the Lease.")
    parser.add_argument(
        "--activator-url",
        default=worker.default_activator_url(namespace),
        help="Base URL of the activator (KFN_ACTIVATOR_URL).",
    )
    parser.add_argument("--metrics-address", default="127.0.0.1")
    parser.add_argument("--metrics-port", type=int, default=9090)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("KFN_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    prometheus_client.start_http_server(args.metrics_port, args.metrics_address)
    deliverer = worker.Deliverer(
        args.activator_url,
        os.environ.get("AWS_REGION", "local"),
        retry_delays=delivery.retry_delays_from_env(),
    )
    cron = worker.Worker(namespace=args.namespace, identity=worker.identity(), deliverer=deliverer)

    def on_term(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        cron.stop.set()
        cron.schedules.changed.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    logging.getLogger(__name__).info(
        "cron worker %s firing through %s", cron.lease.identity, args.activator_url
    )
    cron.run()


if __name__ == "__main__":
    main()
