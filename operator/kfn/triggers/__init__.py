"""Trigger workers: programs that turn a source (a schedule, a stream, a bucket) into invocations.

Each kind has its own package and runs as its own process, next to the activator. All of
them invoke functions through the activator's invoke API, so an event wakes a function at
zero, respects its concurrency and, for asynchronous sources, gets Lambda's retries.
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
