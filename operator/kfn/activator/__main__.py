"""Run an activator from a static config file (see :mod:`kfn.activator.config`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import pathlib
import signal
import socket

import uvloop

from kfn.activator import config as configs
from kfn.activator import endpoints, server, stats_reporter


async def _main(args: argparse.Namespace) -> None:
    static = configs.load(pathlib.Path(args.config))
    sink = stats_reporter.HttpStatsSink(args.autoscaler_url) if args.autoscaler_url else None
    activator = server.Activator(
        routes=static.routes,
        functions=static.functions,
        activator_id=args.id,
        stats_sink=sink,
    )
    await activator.start(
        args.host,
        args.port,
        metrics_port=args.metrics_port,
        endpoint_source=endpoints.StaticEndpointSource(static.endpoints),
    )
    logging.info("activator %s serving on %s:%d", args.id, args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    logging.info("draining")
    await activator.shutdown(args.drain_timeout)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m kfn.activator")
    parser.add_argument("--config", required=True, help="static config (JSON)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--metrics-port", type=int, default=9090)
    parser.add_argument("--autoscaler-url", default="", help="e.g. http://127.0.0.1:8090/stats")
    parser.add_argument("--id", default=os.environ.get("POD_NAME", socket.gethostname()))
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.no_uvloop:
        asyncio.run(_main(args))
    else:
        uvloop.run(_main(args))


if __name__ == "__main__":
    main()
