"""The trigger workers' metrics, by the Trigger's ``namespace``, its name (``trigger``) and
its ``kind`` (cron, stream, bucket).

Events received (records, ticks, notifications read), delivered, retried, failed (the
function never succeeded), dead-lettered (sent to onFailure), handed off (to another
replica) and caught up (bucket changes found by listing that no notification brought);
the lag (``kfn_trigger_lag_records``: events waiting), the age of the last event handed to
the function (``kfn_trigger_iterator_age_seconds``: now minus the time the source gave the
event — a Kafka record's timestamp, a JetStream message's stored time, a bucket
notification's ``eventTime``; Lambda's IteratorAge; cron ticks have none), and the tries to
send a failure record to the onFailure destination that failed
(``kfn_trigger_destination_delivery_failures_total``: Lambda's DestinationDeliveryFailures).
Every worker kind counts the same series, so one dashboard shows them all.

Cardinality: a Trigger has exactly one kind, so each Trigger has at most one series of each
of the ten metrics above (the cron worker adds its three ``kfn_cron_*`` counters), whatever
its traffic: no label takes a value from an event. :func:`forget_metrics` drops a deleted
Trigger's series, so a namespace's churn leaves nothing behind. The bucket worker also
counts the notifications it refused for their signature, by reason only (two values).
"""

from __future__ import annotations

import contextlib
from typing import Final

import prometheus_client

_LABELS: Final = ["namespace", "trigger", "kind"]
RECEIVED = prometheus_client.Counter(
    "kfn_trigger_events_received", "Events (records, ticks, notifications) read.", _LABELS
)
DELIVERED = prometheus_client.Counter(
    "kfn_trigger_events_delivered", "Events the function handled successfully.", _LABELS
)
RETRIED = prometheus_client.Counter(
    "kfn_trigger_events_retried", "Events invoked again after a failed attempt.", _LABELS
)
FAILED = prometheus_client.Counter(
    "kfn_trigger_events_failed",
    "Events the function never handled (retries or age ran out, or refused).",
    _LABELS,
)
DEAD_LETTERED = prometheus_client.Counter(
    "kfn_trigger_events_dead_lettered", "Failed events sent to the onFailure destination.", _LABELS
)
HANDED_OFF = prometheus_client.Counter(
    "kfn_trigger_events_handed_off",
    "Events a stopping replica handed to another one to finish.",
    _LABELS,
)
CAUGHT_UP = prometheus_client.Counter(
    "kfn_trigger_events_caught_up",
    "Bucket changes no notification brought, found by listing a Push Trigger's bucket.",
    _LABELS,
)
LAG = prometheus_client.Gauge(
    "kfn_trigger_lag_records",
    "Events waiting: records behind the stream head, bucket events in hand.",
    _LABELS,
)
ITERATOR_AGE = prometheus_client.Gauge(
    "kfn_trigger_iterator_age_seconds",
    "Age of the last event handed to the function: now minus the source's own time of it "
    "(record timestamp, stored time, eventTime).",
    _LABELS,
)
DESTINATION_DELIVERY_FAILURES = prometheus_client.Counter(
    "kfn_trigger_destination_delivery_failures",
    "Tries to send a failure record to the onFailure destination that failed.",
    _LABELS,
)
#: Not by Trigger: a refused sender names whatever path it likes.
NOTIFICATIONS_REFUSED = prometheus_client.Counter(
    "kfn_bucket_notifications_refused",
    "Notifications refused unread: unsigned (401) or signed for another path (403).",
    ["reason"],
)
_SERIES: Final = (
    RECEIVED, DELIVERED, RETRIED, FAILED, DEAD_LETTERED, HANDED_OFF, CAUGHT_UP, LAG,
    ITERATOR_AGE, DESTINATION_DELIVERY_FAILURES,
)  # fmt: skip


def iterator_age(namespace: str, trigger: str, kind: str, *, now: float, written: float) -> None:
    """Records that an event written at ``written`` (epoch seconds, the source's clock) was
    handed to the function at ``now``; a source clock ahead of ours counts as no age."""
    ITERATOR_AGE.labels(namespace, trigger, kind).set(max(0.0, now - written))


def forget_metrics(namespace: str, trigger: str, kind: str) -> None:
    """Drops a deleted Trigger's series, so dashboards do not show it forever."""
    for metric in _SERIES:
        with contextlib.suppress(KeyError):
            metric.remove(namespace, trigger, kind)
