"""Run the autoscaler: its stats endpoint and decision loop.

In a cluster (the default) it scales each Function's Deployment through the
``scale`` subresource, with the bounds from the Function's ``spec.scale``, and takes stats
only from the senders ``--stats-senders`` names (:mod:`kfn.autoscaler.callers`). With
``--in-memory`` it scales a dict instead and takes stats from anyone, for local runs and
benchmarks. Its metrics (:mod:`kfn.autoscaler.metrics`) are served at ``/metrics`` on
``--metrics-port`` (9090, as every kfn component), on the ``--host`` address unless
``--metrics-address`` says otherwise. In a cluster it also moves the aliases with a
``rollout`` (:mod:`kfn.autoscaler.rollouts`), judged on the same stats, on the wall clock.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time

from kfn import kube, logs, stats
from kfn.authn import reviews
from kfn.autoscaler import autoscaler, callers, cluster, metrics, rollouts, scaler, server


def _gate(args: argparse.Namespace) -> callers.Callers | None:
    """Who may send stats, as the flags ask: the named ServiceAccounts' tokens, or anyone."""
    auth = args.stats_auth or ("none" if args.in_memory else "token")
    if auth == "none":
        return None
    senders = [s.strip() for s in args.stats_senders.split(",") if s.strip()]
    if not senders:
        raise SystemExit(
            "--stats-auth=token needs --stats-senders (system:serviceaccount:<ns>:<activator>)"
        )
    loop = asyncio.get_running_loop()
    api = reviews.ApiServer(
        kube.review_token, [args.stats_audience], failures=kube.FAILURES, loop_clock=loop.time
    )
    reviewed = reviews.TokenReviews(api, clock=loop.time, max_asking=callers.MAX_ASKING)
    return callers.Callers(reviewed, senders)


async def _main(args: argparse.Namespace) -> None:
    scaling = autoscaler.Autoscaler(
        scaler.InMemoryScaler() if args.in_memory else cluster.KubeScaler()
    )
    gate = _gate(args)
    moving = None if args.in_memory else rollouts.Rollouts(rollouts.KubeWriter())

    async def receive(message: stats.StatMessage) -> None:
        if moving is not None:
            moving.receive(message, time.time())  # kept first: a failed poke must not drop it
        await scaling.receive(message, time.monotonic())

    tasks = []
    if moving is not None:
        windows = {"stable_window": args.stable_window, "panic_window": args.panic_window}
        specs = cluster.FunctionSpecs(scaling, also=moving.apply, **windows)
        tasks.append(asyncio.create_task(specs.run()))
        tasks.append(asyncio.create_task(moving.run()))
    metrics.serve(args.metrics_port, args.metrics_address or args.host)
    srv = await server.serve(receive, args.host, args.port, gate=gate)
    logging.info(
        "autoscaler listening on %s:%d, taking stats from %s",
        args.host, args.port, ", ".join(sorted(gate.accepted)) if gate else "anyone",
    )  # fmt: skip
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
    parser.add_argument(
        "--metrics-address", default=None, help="where /metrics is served (default: --host)"
    )
    parser.add_argument(
        "--metrics-port", type=int, default=9090, help="the /metrics port (0: not served)"
    )
    parser.add_argument("--in-memory", action="store_true", help="scale a dict, not a cluster")
    parser.add_argument("--stable-window", type=float, default=60.0, help="seconds")
    parser.add_argument("--panic-window", type=float, default=6.0, help="seconds")
    parser.add_argument(
        "--stats-auth",
        choices=("token", "none"),
        default=os.environ.get("KFN_STATS_AUTH") or None,
        help="token (the default in a cluster): each stats message carries a ServiceAccount "
        "token the API server accepts for --stats-audience, naming one of --stats-senders; "
        "none (the default with --in-memory): anyone who reaches the port may send stats",
    )
    parser.add_argument(
        "--stats-audience",
        default=os.environ.get("KFN_STATS_AUDIENCE", stats.AUDIENCE),
        help="the audience the senders' tokens are made for",
    )
    parser.add_argument(
        "--stats-senders",
        default=os.environ.get("KFN_STATS_SENDERS", ""),
        help="users that may send stats, comma-separated "
        "(system:serviceaccount:<release namespace>:<activator>)",
    )
    args = parser.parse_args()
    logs.configure(os.environ.get("KFN_LOG_FORMAT"), os.environ.get("KFN_LOG_LEVEL"))
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
