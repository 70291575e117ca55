"""The trigger workers' metrics, by trigger and kind.

Events received (records, ticks, notifications read), delivered, retried, failed (the
function never succeeded), dead-lettered (sent to onFailure), handed off (to another
replica) and caught up (bucket changes found by listing that no notification brought),
and the lag (events waiting). Every worker kind counts the same series, so one dashboard
shows them all; :func:`forget_metrics` drops a deleted Trigger's series. The bucket worker
also counts the notifications it refused for their signature, by reason only.
"""

from __future__ import annotations

import contextlib
from typing import Final

import prometheus_client

_LABELS: Final = ["trigger", "kind"]
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
    "kfn_trigger_lag", "Events waiting: records behind the stream head, queued events.", _LABELS
)
#: Not by Trigger: a refused sender names whatever path it likes.
NOTIFICATIONS_REFUSED = prometheus_client.Counter(
    "kfn_bucket_notifications_refused",
    "Notifications refused unread: unsigned (401) or signed for another path (403).",
    ["reason"],
)
_SERIES: Final = (
    RECEIVED, DELIVERED, RETRIED, FAILED, DEAD_LETTERED, HANDED_OFF, CAUGHT_UP, LAG,
)  # fmt: skip


def forget_metrics(trigger: str, kind: str) -> None:
    """Drops a deleted Trigger's series, so dashboards do not show it forever."""
    for metric in _SERIES:
        with contextlib.suppress(KeyError):
            metric.remove(trigger, kind)
