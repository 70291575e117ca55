"""Run the autoscaler: its stats endpoint and decision loop.

In a cluster (the default) it scales each Function's Deployment through the
``scale`` subresource, with the bounds from the Function's ``spec.scale``. With
``--in-memory`` it scales a dict instead, for local runs and benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time

from kfn import stats
from kfn.autoscaler import autoscaler, cluster, scaler, server


async def _main(args: argparse.Namespace) -> None:
    scaling = autoscaler.Autoscaler(
        scaler.InMemoryScaler() if args.in_memory else cluster.KubeScaler()
    )

    async def receive(message: stats.StatMessage) -> None:
        await scaling.receive(message, time.monotonic())

    tasks = []
    if not args.in_memory:
        windows = {"stable_window": args.stable_window, "panic_window": args.panic_window}
        tasks.append(asyncio.create_task(cluster.FunctionSpecs(scaling, **windows).run()))
    srv = await server.serve(receive, args.host, args.port)
    logging.info("autoscaler listening on %s:%d", args.host, args.port)
    try:
        await scaling.run()
    finally:
        srv.close()
        for task in tasks:
            task.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m kfn.autoscaler")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--in-memory", action="store_true", help="scale a dict, not a cluster")
    parser.add_argument("--stable-window", type=float, default=60.0, help="seconds")
    parser.add_argument("--panic-window", type=float, default=6.0, help="seconds")
    args = parser.parse_args()
    logging.basicConfig(
        level=os.environ.get("KFN_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
