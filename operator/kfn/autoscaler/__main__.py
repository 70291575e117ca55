"""Run the autoscaler's stats endpoint and decision loop (in-memory scaler).

The Kubernetes scaler and the source of ScaleSpecs are wired in by the operator's
process; this entry point serves local runs and benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

from kfn import stats
from kfn.autoscaler import autoscaler, scaler, server


async def _main(host: str, port: int) -> None:
    scaling = autoscaler.Autoscaler(scaler.InMemoryScaler())

    async def receive(message: stats.StatMessage) -> None:
        await scaling.receive(message, time.monotonic())

    srv = await server.serve(receive, host, port)
    try:
        await scaling.run()
    finally:
        srv.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m kfn.autoscaler")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    asyncio.run(_main(args.host, args.port))


if __name__ == "__main__":
    main()
