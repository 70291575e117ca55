"""``python3 -m kfn.operator``: runs the operator cluster-wide.

Its log goes out as ``KFN_LOG_FORMAT`` says (:mod:`kfn.logs`; kopf's lines too, with the
object they are about as ``object`` in JSON), its metrics on ``KFN_METRICS_PORT`` (9090; 0:
none) at ``/metrics`` (:mod:`kfn.operator.metrics`).
"""

from __future__ import annotations

import logging
import os

import kopf

import kfn.operator.triggers  # noqa: F401 - registers the Trigger status handlers
from kfn import logs
from kfn.operator import (
    bucket_events,  # noqa: F401 - registers the bucket Triggers' Secrets
    handlers,  # noqa: F401 - registers the handlers
    kept_logs,  # noqa: F401 - registers the keeping of departed pods' last lines
    metrics,
)

HEALTH_ENDPOINT = "http://0.0.0.0:8080/healthz"
METRICS_PORT = 9090


def main() -> None:
    # kopf's object loggers carry the object as the record's k8s_ref.
    logs.configure(
        os.environ.get("KFN_LOG_FORMAT"),
        os.environ.get("KFN_LOG_LEVEL"),
        fields={"k8s_ref": "object"},
    )
    # kopf logs each handler's success at INFO for every object; that is noise at scale.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    port = int(os.environ.get("KFN_METRICS_PORT") or METRICS_PORT)
    if port:
        metrics.serve(port)
    kopf.run(
        clusterwide=True,
        standalone=True,
        liveness_endpoint=os.environ.get("KFN_HEALTH_ENDPOINT", HEALTH_ENDPOINT),
    )


if __name__ == "__main__":
    main()
