"""The autoscaler's metrics, served at ``/metrics`` on a port of their own (``--metrics-port``).

Per Function it scales (labels ``namespace``, ``function``): the replicas it decided
(``kfn_autoscaler_desired_replicas``), the pods ready for it as the Function's status last
said (``kfn_autoscaler_actual_replicas``; the cluster's count, which lags the decision while
pods start), and whether it is in panic mode (``kfn_autoscaler_panic_mode``, 1 or 0). Those
three series are all a Function has, and :func:`forget` drops them when the autoscaler
stops tracking it (the Function was deleted). ``kfn_autoscaler_stats_messages_total``
counts the activators' stats messages by ``outcome``: ``accepted``, or ``rejected`` (refused
by the sender check, too large, or not a stats message).
"""

from __future__ import annotations

import contextlib
from typing import Final, Literal

import prometheus_client

from kfn import stats

_LABELS: Final = ["namespace", "function"]
DESIRED = prometheus_client.Gauge(
    "kfn_autoscaler_desired_replicas", "Replicas the autoscaler decided for the function.", _LABELS
)
ACTUAL = prometheus_client.Gauge(
    "kfn_autoscaler_actual_replicas",
    "Pods ready for the function, as its status last said.",
    _LABELS,
)
PANIC = prometheus_client.Gauge(
    "kfn_autoscaler_panic_mode", "1 while the function is scaled in panic mode.", _LABELS
)
STATS_MESSAGES = prometheus_client.Counter(
    "kfn_autoscaler_stats_messages",
    "Stats messages received, by outcome (accepted, rejected).",
    ["outcome"],
)

Outcome = Literal["accepted", "rejected"]
for _outcome in ("accepted", "rejected"):
    STATS_MESSAGES.labels(_outcome)  # both series from the start, so rates begin at 0


def decided(function: stats.FunctionKey, desired: int, panic: bool) -> None:
    DESIRED.labels(function.namespace, function.name).set(desired)
    PANIC.labels(function.namespace, function.name).set(1 if panic else 0)


def ready(function: stats.FunctionKey, replicas: int) -> None:
    ACTUAL.labels(function.namespace, function.name).set(replicas)


def message(outcome: Outcome) -> None:
    STATS_MESSAGES.labels(outcome).inc()


def forget(function: stats.FunctionKey) -> None:
    """Drops the series of a function the autoscaler no longer scales."""
    for metric in (DESIRED, ACTUAL, PANIC):
        with contextlib.suppress(KeyError):
            metric.remove(function.namespace, function.name)


def serve(port: int, address: str) -> None:
    """Serves ``/metrics`` from a thread of its own (not a hot path); port 0: not at all."""
    if port:
        prometheus_client.start_http_server(port, address)
