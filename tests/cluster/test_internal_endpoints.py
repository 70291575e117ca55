"""kfn's internal endpoints on the cluster take only kfn's own components: the autoscaler's
/stats, tried from outside with no token, someone else's, and the right one."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kfn import stats
from tests.cluster.kubeutil import kubectl, kubectl_json, scratch_namespace

pytestmark = pytest.mark.cluster

#: A report about no function: taken, it changes no replica count.
EMPTY_REPORT = stats.encode(stats.StatMessage("internal-endpoints-test", time.time(), ()))


def _post(
    address: tuple[str, int], path: str, body: bytes, authorization: str | None
) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection(*address, timeout=10)
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    try:
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else {}
    finally:
        connection.close()


def _address(kfn: str, deployment: str, port: int) -> tuple[str, int]:
    kubectl("-n", kfn, "rollout", "status", f"deployment/{deployment}", "--timeout=120s")
    return kubectl_json("-n", kfn, "get", "service", deployment)["spec"]["clusterIP"], port


@pytest.fixture(scope="module")
def outsider(kfn: str) -> Iterator[str]:
    """A tenant's namespace with a ServiceAccount of its own."""
    with scratch_namespace("outsider") as name:
        kubectl("-n", name, "create", "serviceaccount", "prober")
        yield name


def test_the_autoscaler_takes_stats_only_with_the_activators_token(kfn: str, outsider: str) -> None:
    autoscaler = _address(kfn, "kfn-autoscaler", 8090)
    status, body = _post(autoscaler, stats.STATS_PATH, EMPTY_REPORT, None)
    assert status == 401, body
    assert "kfn-stats" in body["message"]
    own = kubectl("-n", outsider, "create", "token", "prober", "--audience=kfn-stats").strip()
    status, body = _post(autoscaler, stats.STATS_PATH, EMPTY_REPORT, f"Bearer {own}")
    assert status == 403, body
    assert f"system:serviceaccount:{outsider}:prober may not send stats" in body["message"]
    # The activator's own ServiceAccount, but a token for the invoke door's audience.
    invoke = kubectl("-n", kfn, "create", "token", "kfn-activator", "--audience=kfn").strip()
    assert _post(autoscaler, stats.STATS_PATH, EMPTY_REPORT, f"Bearer {invoke}")[0] == 401
    token = kubectl("-n", kfn, "create", "token", "kfn-activator", "--audience=kfn-stats").strip()
    assert _post(autoscaler, stats.STATS_PATH, EMPTY_REPORT, f"Bearer {token}")[0] == 204


def test_no_activator_was_refused_by_the_autoscaler(kfn: str) -> None:
    """Scale from zero (test_scale_from_zero) needs the activators' reports taken; this says
    why when they are not: the autoscaler's answer is in the activator's log."""
    pods = kubectl_json("-n", kfn, "get", "pods", "-l", "app.kubernetes.io/component=activator")
    for pod in pods["items"]:
        log = kubectl("-n", kfn, "logs", pod["metadata"]["name"], "--since=10m")
        refused = [
            line for line in log.splitlines() if "the autoscaler answered b'HTTP/1.1 4" in line
        ]
        assert refused == [], refused[-3:]
