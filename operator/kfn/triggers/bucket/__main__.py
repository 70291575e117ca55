"""``python3 -m kfn.triggers.bucket``: run the bucket trigger worker until SIGTERM."""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import signal
import socket
import threading
import uuid
from types import FrameType

import prometheus_client

from kfn.api import trigger as trigger_api
from kfn.triggers import delivery, lease, status
from kfn.triggers.bucket import worker


def own_namespace() -> str:
    configured = os.environ.get("KFN_NAMESPACE")
    if configured:
        return configured
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as file:
            return file.read().strip()
    except OSError:
        return "kfn-system"


def identity() -> str:
    """This replica's name in the Lease: the pod name, made unique per process start."""
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}_{uuid.uuid4().hex[:8]}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kfn.triggers.bucket", description=__doc__)
    namespace = own_namespace()
    parser.add_argument("--namespace", default=namespace, help="Namespace of the Lease.")
    parser.add_argument(
        "--activator-url",
        default=os.environ.get(
            "KFN_ACTIVATOR_URL", f"http://kfn-activator.{namespace}.svc.cluster.local"
        ),
        help="Base URL of the activator (KFN_ACTIVATOR_URL).",
    )
    parser.add_argument(
        "--public-url",
        default=os.environ.get("KFN_BUCKET_URL", f"http://kfn-bucket.{namespace}.svc"),
        help="Where stores reach this worker; shown in the Triggers' status.",
    )
    parser.add_argument("--listen-address", default="0.0.0.0")  # noqa: S104 - the pod's port
    parser.add_argument("--listen-port", type=int, default=8080)
    parser.add_argument("--metrics-address", default="127.0.0.1")
    parser.add_argument("--metrics-port", type=int, default=9090)
    parser.add_argument("--drain-seconds", type=float, default=5.0)
    parser.add_argument("--grace-seconds", type=float, default=45.0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("KFN_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    prometheus_client.start_http_server(args.metrics_port, args.metrics_address)
    invoker = delivery.Invoker(args.activator_url)
    abort = threading.Event()
    deliverer = delivery.AsyncDeliverer(
        invoker,
        delivery.Destinations(invoker),
        stop=abort,
        retry_delays=delivery.retry_delays_from_env(),
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
        lease=lease.LeaseKeeper(args.namespace, worker.LEASE_NAME, identity()),
        statuses=status.StatusWriter(),
        abort=abort,
    )

    def on_term(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        bucket.terminating.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    logging.getLogger(__name__).info("bucket worker delivering through %s", args.activator_url)
    worker.run(
        bucket,
        (args.listen_address, args.listen_port),
        shutdown=worker.Shutdown(drain=args.drain_seconds, grace=args.grace_seconds),
    )


if __name__ == "__main__":
    main()
