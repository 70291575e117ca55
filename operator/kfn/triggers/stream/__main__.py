"""``python3 -m kfn.triggers.stream``: run the stream trigger worker until SIGTERM."""

from __future__ import annotations

import logging
import os

from kfn.triggers import onfailure, process
from kfn.triggers import status as status_
from kfn.triggers.stream import budget, kafka, nats, source, worker


def main(argv: list[str] | None = None) -> None:
    args = process.parser("kfn.triggers.stream", __doc__).parse_args(argv)
    process.start(args)
    invoker = process.invoker(args)
    statuses = status_.StatusWriter()
    clients = source.Clients(invoker, onfailure.Destinations(invoker), statuses, budget.from_env())

    def kafka_consumer(target: source.Target) -> kafka.Consumer:
        return kafka.Consumer(target, clients)

    def jetstream_consumer(target: source.Target) -> nats.Consumer:
        return nats.Consumer(target, clients)

    def forget(target: source.Target) -> None:
        if target.spec.nats is None:
            kafka.forget_group(target)
        else:
            nats.forget_durable(target)

    streams = worker.Worker(
        kafka_consumer,
        statuses,
        os.environ.get("AWS_REGION", "local"),
        nats_factory=jetstream_consumer,
        forget=forget,
    )

    def stop() -> None:
        streams.stop.set()
        streams.changed.set()

    process.on_stop(stop)
    logging.getLogger(__name__).info("stream worker invoking through %s", args.activator_url)
    streams.run()


if __name__ == "__main__":
    main()
