"""``python3 -m kfn.triggers.bucket``: run the bucket trigger worker until SIGTERM."""

from __future__ import annotations

import datetime
import logging
import os
import threading

from kfn.api import trigger as trigger_api
from kfn.triggers import delivery, lease, process, status
from kfn.triggers.bucket import worker


def main(argv: list[str] | None = None) -> None:
    parser = process.parser("kfn.triggers.bucket", __doc__)
    namespace = process.own_namespace()
    parser.add_argument(
        "--public-url",
        default=os.environ.get("KFN_BUCKET_URL", f"http://kfn-bucket.{namespace}.svc"),
        help="Where stores reach this worker; shown in the Triggers' status.",
    )
    parser.add_argument("--listen-address", default="0.0.0.0")  # noqa: S104 - the pod's port
    parser.add_argument("--listen-port", type=int, default=8080)
    parser.add_argument("--drain-seconds", type=float, default=5.0)
    parser.add_argument("--grace-seconds", type=float, default=45.0)
    args = parser.parse_args(argv)
    process.start(args)
    invoker = delivery.Invoker(args.activator_url)
    abort = threading.Event()
    statuses = status.StatusWriter()
    deliverer = delivery.AsyncDeliverer(
        invoker,
        delivery.Destinations(invoker),
        stop=abort,
        retry_delays=delivery.retry_delays_from_env(),
        statuses=statuses,
    )

    def deliver(
        target: delivery.Target,
        spec: trigger_api.AsyncDelivery,
        payload: bytes,
        request_id: str,
        first_seen: datetime.datetime,
    ) -> delivery.Result:
        return deliverer.deliver(
            target, spec, payload, request_id=request_id, first_seen=first_seen
        )

    bucket = worker.Worker(
        deliver=deliver,
        public_url=args.public_url,
        lease=lease.LeaseKeeper(args.namespace, worker.LEASE_NAME, process.identity()),
        statuses=statuses,
        abort=abort,
    )

    process.on_stop(bucket.terminating.set)
    logging.getLogger(__name__).info("bucket worker delivering through %s", args.activator_url)
    worker.run(
        bucket,
        (args.listen_address, args.listen_port),
        shutdown=worker.Shutdown(drain=args.drain_seconds, grace=args.grace_seconds),
    )


if __name__ == "__main__":
    main()
