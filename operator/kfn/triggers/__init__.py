"""Trigger workers: programs that turn a source (a schedule, a stream, a bucket) into invocations.

Each kind has its own package and runs as its own process, next to the activator. All of
them invoke functions through the activator's invoke API, so an event wakes a function at
zero, respects its concurrency and, for asynchronous sources, gets Lambda's retries.

The modules beside those packages are what the workers share:

* :mod:`~kfn.triggers.invoke` — the HTTP client that invokes through the activator;
* :mod:`~kfn.triggers.delivery` — Lambda's asynchronous delivery (retries, then onFailure),
  for cron ticks and bucket notifications;
* :mod:`~kfn.triggers.failure` — who an event is for, and Lambda's failure record;
* :mod:`~kfn.triggers.onfailure` — sending failure records to a Function, a Kafka topic or a
  NATS subject;
* :mod:`~kfn.triggers.credentials` — a Trigger's Secret, read only for endpoints the Secret
  allows, and Kafka and NATS client settings from it;
* :mod:`~kfn.triggers.metrics` — the events and lag every worker counts;
* :mod:`~kfn.triggers.status` — the Trigger conditions the workers write;
* :mod:`~kfn.triggers.lease`, :mod:`~kfn.triggers.leader` and :mod:`~kfn.triggers.process` —
  leader election and the process frame (flags, logging, signals).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pydantic

from kfn.api import trigger as trigger_api

if TYPE_CHECKING:
    from kfn import kube

logger = logging.getLogger(__name__)


def valid_trigger(obj: kube.Object) -> trigger_api.Trigger | None:
    """The Trigger in an API object; None (logged) when it does not validate, which a worker
    skips rather than fails on (the API server's schema keeps such objects rare)."""
    try:
        return trigger_api.Trigger.model_validate(obj)
    except pydantic.ValidationError as exc:
        logger.warning("ignoring an invalid Trigger: %s", exc.errors()[:1])
        return None
