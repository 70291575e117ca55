"""Who an event is for, and the record written when it fails.

:class:`Target` names the function an event is delivered to and the Trigger it comes
from (metrics and logs label by it); :func:`failure_record` is Lambda's on-failure
destination record for an event the function never handled, which the stream, cron and
bucket workers send to the Trigger's ``onFailure`` destination.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Mapping
from typing import Any

from kfn import retry
from kfn.api import meta


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """Who an event is for, and on behalf of which Trigger."""

    namespace: str
    function: str
    trigger: str
    kind: str
    #: The function's version or alias the Trigger names; "" for ``$LATEST``.
    qualifier: str = ""

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.trigger}"


def function_arn(namespace: str, function: str, qualifier: str = "") -> str:
    """The name a failure record gives the function (Lambda's ``functionArn``), with its
    qualifier when the Trigger names one, as a qualified ARN does."""
    base = f"kfn:{namespace}:function:{function}"
    return f"{base}:{qualifier}" if qualifier else base


def _payload_value(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode(errors="replace")


def failure_record(
    target: Target,
    *,
    request_id: str,
    payload: bytes,
    condition: str,
    attempts: int,
    outcome: retry.Outcome | None,
    now: datetime.datetime,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Lambda's on-failure destination record, plus ``trigger`` and any ``extra`` fields."""
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": meta.format_time(now),
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn(target.namespace, target.function, target.qualifier),
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "requestPayload": _payload_value(payload),
        "responseContext": {
            "statusCode": outcome.status if outcome else 0,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled" if outcome and outcome.function_error else None,
        },
        "responsePayload": _payload_value(outcome.body) if outcome and outcome.body else None,
        "trigger": {"namespace": target.namespace, "name": target.trigger, "kind": target.kind},
    }
    record.update(extra or {})
    return record
