"""``python3 -m kfn.triggers.cron``: run the cron trigger worker until SIGTERM."""

from __future__ import annotations

import logging
import os

from kfn.triggers import delivery, process
from kfn.triggers.cron import worker


def main(argv: list[str] | None = None) -> None:
    args = process.parser("kfn.triggers.cron", __doc__).parse_args(argv)
    process.start(args)
    deliverer = worker.Deliverer(
        args.activator_url,
        os.environ.get("AWS_REGION", "local"),
        retry_delays=delivery.retry_delays_from_env(),
        token=process.token(args),
    )
    cron = worker.Worker(namespace=args.namespace, identity=process.identity(), deliverer=deliverer)

    def stop() -> None:
        cron.stop.set()
        cron.changed.set()

    process.on_stop(stop)
    logging.getLogger(__name__).info(
        "cron worker %s firing through %s", cron.lease.identity, args.activator_url
    )
    cron.run()


if __name__ == "__main__":
    main()
