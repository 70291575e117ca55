"""``python3 -m kfn.triggers.bucket``: run the bucket trigger worker until SIGTERM."""

from __future__ import annotations

import logging
import os
import threading

from kfn.triggers import delivery, lease, onfailure, process, status
from kfn.triggers.bucket import poller, receiver, worker


def main(argv: list[str] | None = None) -> None:
    parser = process.parser("kfn.triggers.bucket", __doc__)
    service = os.environ.get("KFN_SERVICE_URL")
    parser.add_argument(
        "--service-url",
        default=service,
        required=service is None,
        help="The worker's own Service, where a stopping replica hands its events over "
        "(default: KFN_SERVICE_URL, which the chart sets).",
    )
    parser.add_argument(
        "--public-url",
        default=os.environ.get("KFN_BUCKET_URL", service),
        help="Where stores reach this worker (default: the Service); shown in Triggers' status.",
    )
    parser.add_argument(
        "--events-auth",
        choices=("token", "none"),
        default=os.environ.get("KFN_EVENTS_AUTH") or "token",
        help="token (the default): a notification must carry the token of its path, derived "
        "from KFN_EVENTS_KEY, or the cluster's KFN_EVENTS_TOKEN (kfn.authn.webhooks); none: "
        "any notification is taken",
    )
    parser.add_argument("--listen-address", default="0.0.0.0")  # noqa: S104 - the pod's port
    parser.add_argument("--listen-port", type=int, default=8080)
    parser.add_argument("--drain-seconds", type=float, default=worker.Shutdown.drain,
                        help="Receive at least this long after SIGTERM.")  # fmt: skip
    parser.add_argument("--grace-seconds", type=float, default=worker.Shutdown.grace,
                        help="Time for events in hand once receiving stopped.")  # fmt: skip
    args = parser.parse_args(argv)
    process.start(args)
    key = os.environ.get("KFN_HANDOFF_KEY", "").encode()
    if not key:
        logging.getLogger(__name__).warning(
            "KFN_HANDOFF_KEY is not set: events held when this replica stops are lost"
        )
    signing = _signing(args.events_auth)
    invoker = process.invoker(args)
    abort = threading.Event()
    statuses = status.StatusWriter()
    deliverer = delivery.AsyncDeliverer(
        invoker,
        onfailure.Destinations(invoker),
        stop=abort,
        retry_delays=delivery.retry_delays_from_env(),
        statuses=statuses,
    )

    bucket = worker.Worker(
        deliver=deliverer.deliver,
        public_url=args.public_url,
        lease=lease.LeaseKeeper(
            args.namespace, poller.LEASE_NAME, process.identity(), owner=process.deployment_name()
        ),
        statuses=statuses,
        abort=abort,
        peer_url=args.service_url,
        handoff_key=key,
        signing=signing,
    )

    process.on_stop(bucket.terminating.set)
    logging.getLogger(__name__).info("bucket worker delivering through %s", args.activator_url)
    worker.run(
        bucket,
        (args.listen_address, args.listen_port),
        shutdown=worker.Shutdown(drain=args.drain_seconds, grace=args.grace_seconds),
    )


def _signing(auth: str) -> receiver.Signing | None:
    """What notifications must be signed with, from the chart's Secret (``events-key`` and
    ``events-token``, in ``KFN_EVENTS_KEY`` and ``KFN_EVENTS_TOKEN``)."""
    if auth == "none":
        logging.getLogger(__name__).warning(
            "--events-auth=none: any pod that reaches this worker may send notifications"
        )
        return None
    key = os.environ.get("KFN_EVENTS_KEY", "").encode()
    if not key:
        raise SystemExit("KFN_EVENTS_KEY is not set; the chart sets it from its Secret")
    return receiver.Signing(key, os.environ.get("KFN_EVENTS_TOKEN", ""))


if __name__ == "__main__":
    main()
