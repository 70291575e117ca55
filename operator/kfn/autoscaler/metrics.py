"""The autoscaler's metrics, served at ``/metrics`` on a port of their own (``--metrics-port``).

Per invocation target it scales (labels ``namespace``, ``function`` and ``version``:
``$LATEST``, or the number of a version something routes to): the replicas it decided
(``kfn_autoscaler_desired_replicas``), the pods ready for it as the Function's status last
said (``kfn_autoscaler_actual_replicas``, ``$LATEST`` only; the cluster's count, which lags
the decision while pods start), and whether it is in panic mode
(``kfn_autoscaler_panic_mode``, 1 or 0). Those three series are all a target has, and
:func:`forget` drops them when the autoscaler stops tracking it (the Function was deleted, or
nothing routes to the version any more). ``kfn_autoscaler_stats_messages_total`` counts the
activators' stats messages by ``outcome``: ``accepted``, or ``rejected`` (refused by the
sender check, too large, or not a stats message).

Per alias with a rollout (labels ``namespace``, ``function`` and ``alias``):
``kfn_autoscaler_rollout_candidate_percent``, the share of the alias's requests its rollout's
new version takes (0 once rolled back, 100 once promoted), dropped with the alias's rollout;
and ``kfn_autoscaler_rollout_transitions_total{reason}`` counts the rollouts' Started,
Stepped, Promoted and RolledBack across all functions (the Events say which).
"""

from __future__ import annotations

import contextlib
from typing import Final, Literal

import prometheus_client

from kfn import stats

_LABELS: Final = ["namespace", "function", "version"]
#: The ``version`` label of a function's ``$LATEST``.
LATEST: Final = "$LATEST"


def _labels(function: stats.FunctionKey) -> tuple[str, str, str]:
    return function.namespace, function.name, function.version or LATEST


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

ROLLOUT_PERCENT = prometheus_client.Gauge(
    "kfn_autoscaler_rollout_candidate_percent",
    "Percent of the alias's requests its rollout's new version takes.",
    ["namespace", "function", "alias"],
)
ROLLOUT_TRANSITIONS = prometheus_client.Counter(
    "kfn_autoscaler_rollout_transitions",
    "Rollouts Started, Stepped, Promoted and RolledBack, by reason.",
    ["reason"],
)
ROLLOUT_REASONS: Final = ("Started", "Stepped", "Promoted", "RolledBack")
for _reason in ROLLOUT_REASONS:
    ROLLOUT_TRANSITIONS.labels(_reason)

Outcome = Literal["accepted", "rejected"]
for _outcome in ("accepted", "rejected"):
    STATS_MESSAGES.labels(_outcome)  # both series from the start, so rates begin at 0


def decided(function: stats.FunctionKey, desired: int, panic: bool) -> None:
    DESIRED.labels(*_labels(function)).set(desired)
    PANIC.labels(*_labels(function)).set(1 if panic else 0)


def ready(function: stats.FunctionKey, replicas: int) -> None:
    ACTUAL.labels(*_labels(function)).set(replicas)


def message(outcome: Outcome) -> None:
    STATS_MESSAGES.labels(outcome).inc()


def forget(function: stats.FunctionKey) -> None:
    """Drops the series of a function the autoscaler no longer scales."""
    for metric in (DESIRED, ACTUAL, PANIC):
        with contextlib.suppress(KeyError):
            metric.remove(*_labels(function))


def rollout(function: stats.FunctionKey, alias: str, percent: int) -> None:
    ROLLOUT_PERCENT.labels(function.namespace, function.name, alias).set(percent)


def forget_rollout(function: stats.FunctionKey, alias: str) -> None:
    with contextlib.suppress(KeyError):
        ROLLOUT_PERCENT.remove(function.namespace, function.name, alias)


def transition(reason: str) -> None:
    ROLLOUT_TRANSITIONS.labels(reason).inc()


def serve(port: int, address: str) -> None:
    """Serves ``/metrics`` from a thread of its own (not a hot path); port 0: not at all."""
    if port:
        prometheus_client.start_http_server(port, address)
