"""``python3 -m kfn.operator``: runs the operator cluster-wide."""

from __future__ import annotations

import logging
import os

import kopf

import kfn.operator.triggers  # noqa: F401 - registers the Trigger status handlers
from kfn.operator import (
    bucket_events,  # noqa: F401 - registers the bucket Triggers' Secrets
    handlers,  # noqa: F401 - registers the handlers
)

HEALTH_ENDPOINT = "http://0.0.0.0:8080/healthz"


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("KFN_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # kopf logs each handler's success at INFO for every object; that is noise at scale.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    kopf.run(
        clusterwide=True,
        standalone=True,
        liveness_endpoint=os.environ.get("KFN_HEALTH_ENDPOINT", HEALTH_ENDPOINT),
    )


if __name__ == "__main__":
    main()
