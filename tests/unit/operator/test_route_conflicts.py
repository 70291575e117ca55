"""The operator re-judges other HTTP Triggers when one comes, changes or goes.

The kopf handlers run here on fake indexes (what kopf hands them: key -> the values stored for
it), with the Kubernetes calls recorded, so each test shows which Triggers' statuses were read
and written after one event.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
import pytest

from kfn.api import routes
from kfn.operator import triggers

JAN, FEB, MAR = "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"
LOGGER = logging.getLogger(__name__)


def trigger(
    namespace: str, created: str, ready: tuple[str, str] | None = None, **http: Any
) -> dict[str, Any]:
    """A Trigger ``<namespace>/web`` with ``spec.http``, and a Ready (reason, message) if given."""
    body: dict[str, Any] = {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": "web", "namespace": namespace, "uid": f"uid-{namespace}",
                     "generation": 1, "creationTimestamp": created},
        "spec": {"functionRef": {"name": "fn"}, "http": http},
    }  # fmt: skip
    if ready is not None:
        status = "True" if ready[0] == "Ready" else "False"
        condition = {"type": "Ready", "status": status, "reason": ready[0], "message": ready[1],
                     "lastTransitionTime": created, "observedGeneration": 1}  # fmt: skip
        body["status"] = {"type": "Http", "conditions": [condition], "observedGeneration": 1,
                          "url": f"http://kfn-activator{http.get('pathPrefix', '/')}"}  # fmt: skip
    return body


class Cluster:
    """The Triggers the indexes hold, and the Kubernetes calls the handlers made."""

    def __init__(self, *bodies: dict[str, Any]) -> None:
        self.bodies = {self.key(b): b for b in bodies}
        self.read: list[str] = []
        self.written: dict[str, dict[str, Any]] = {}

    @staticmethod
    def key(body: dict[str, Any]) -> tuple[str, str]:
        return body["metadata"]["namespace"], body["metadata"]["name"]

    def indexes(self) -> dict[str, Any]:
        claims = {}
        for body in self.bodies.values():
            claims.update(triggers.route_claims(body=body) or {})
        return {
            "triggers_by_name": {k: [b] for k, b in self.bodies.items()},
            "route_claims": {k: [c] for k, c in claims.items()},
            "url_claims": {},
        }

    def event(self, kind: str, body: dict[str, Any]) -> None:
        """The watch delivers an event; kopf updates its indexes before the handler runs."""
        if kind == "DELETED":
            self.bodies.pop(self.key(body))
        else:
            self.bodies[self.key(body)] = body
        triggers.trigger_event(event={"type": kind, "object": body}, logger=LOGGER,
                               **self.indexes())  # fmt: skip

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]:
        self.read.append(f"{namespace}/{name}")
        return {"kind": kind}

    def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        self.written[f"{namespace}/{name}"] = status

    def ready(self, key: str) -> tuple[str, str]:
        (condition,) = self.written[key]["conditions"]
        return condition["reason"], condition["message"]


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Cluster:
    fake = Cluster()
    monkeypatch.setenv("KFN_ACTIVATOR_URL", "http://kfn-activator")
    monkeypatch.setattr(triggers.kube, "get", fake.get)
    monkeypatch.setattr(triggers.kube, "patch_status", fake.patch_status)
    monkeypatch.setattr(triggers.settings, "host_policy", lambda: routes.OPEN)
    return fake


def test_a_trigger_on_a_prefix_another_namespace_holds_is_refused_and_nobody_else_is_touched(
    cluster: Cluster,
) -> None:
    cluster.bodies = {("a", "web"): trigger("a", JAN, ("Ready", "…"), pathPrefix="/api")}
    cluster.event("ADDED", trigger("b", FEB, pathPrefix="/api/v2"))
    reason, message = cluster.ready("b/web")
    assert reason == "RouteConflict"
    assert "belongs to namespace a: Trigger a/web claimed /api first" in message
    assert list(cluster.written) == ["b/web"]
    assert cluster.read == ["b/fn"]


def test_when_the_owner_is_deleted_the_next_claimant_by_creation_time_turns_ready(
    cluster: Cluster,
) -> None:
    owner = trigger("a", JAN, ("Ready", "…"), host="shop.example")
    first = routes.decide(
        [routes.Claim("a", "web", JAN, "shop.example", "/"),
         routes.Claim("b", "web", FEB, "shop.example", "/"),
         routes.Claim("c", "web", MAR, "shop.example", "/")]
    )  # fmt: skip
    refused = {f"{k[0]}/{k[1]}": r.message for k, r in first.refused.items()}
    cluster.bodies = {
        ("a", "web"): owner,
        ("b", "web"): trigger("b", FEB, ("RouteConflict", refused["b/web"]), host="shop.example"),
        ("c", "web"): trigger("c", MAR, ("RouteConflict", refused["c/web"]), host="shop.example"),
    }
    cluster.event("DELETED", owner)
    assert cluster.ready("b/web")[0] == "Ready"
    # c is still refused, now by b: its message changes to name the new owner.
    assert "Trigger b/web used it first" in cluster.ready("c/web")[1]
    assert "a/web" not in cluster.written


def test_a_trigger_moving_to_another_host_frees_the_one_it_held(cluster: Cluster) -> None:
    held = routes.decide(
        [routes.Claim("a", "web", JAN, "shop.example", "/"),
         routes.Claim("b", "web", FEB, "shop.example", "/")]
    ).refused[("b", "web")]  # fmt: skip
    cluster.bodies = {
        ("a", "web"): trigger("a", JAN, ("Ready", "…"), host="shop.example"),
        ("b", "web"): trigger("b", FEB, ("RouteConflict", held.message), host="shop.example"),
    }
    cluster.event("MODIFIED", trigger("a", JAN, ("Ready", "…"), host="blog.example"))
    assert cluster.ready("b/web")[0] == "Ready"


def test_an_event_that_changes_no_route_refreshes_only_its_own_trigger(cluster: Cluster) -> None:
    cluster.bodies = {
        ("a", "web"): trigger("a", JAN, ("Ready", "…"), pathPrefix="/a"),
        ("b", "web"): trigger("b", FEB, ("FunctionNotFound", "…"), pathPrefix="/a/b"),
        ("c", "web"): trigger("c", FEB, None, pathPrefix="/c"),
    }
    cluster.event("MODIFIED", cluster.bodies[("a", "web")])
    assert cluster.read == ["a/fn"]


@pytest.mark.parametrize(
    ("ready", "refusal", "outdated"),
    [
        pytest.param(("Ready", "…"), None, False, id="granted and ready"),
        pytest.param(("RouteConflict", "old"), None, True, id="granted but shown refused"),
        pytest.param(("Ready", "…"), "new", True, id="refused but shown ready"),
        pytest.param(("RouteConflict", "new"), "new", False, id="refused for the same reason"),
        pytest.param(("RouteConflict", "old"), "new", True, id="refused for another reason"),
        pytest.param(("FunctionNotFound", "…"), "new", False,
                     id="a missing function says so whatever its route"),
        pytest.param(None, "new", False, id="a status never written is left to its own event"),
    ],
)  # fmt: skip
def test_a_trigger_is_refreshed_only_when_its_ready_disagrees_with_who_owns_its_route(
    ready: tuple[str, str] | None, refusal: str | None, outdated: bool
) -> None:
    refused = {} if refusal is None else {("a", "web"): routes.Refusal(None, refusal)}
    ownership = routes.Ownership((), refused, routes.OPEN, {})
    assert triggers.route_outdated(trigger("a", JAN, ready), ownership) is outdated


def test_a_trigger_of_another_kind_claims_no_route_and_is_never_outdated() -> None:
    cron = {"metadata": {"name": "tick", "namespace": "a", "creationTimestamp": JAN},
            "spec": {"functionRef": {"name": "fn"}, "cron": {"schedule": "@hourly"}}}  # fmt: skip
    assert triggers.route_claims(body=cron) is None
    assert not triggers.route_outdated(cron, routes.decide([]))


def test_a_malformed_host_policy_stops_the_operator_at_its_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "KFN_HOST_POLICY",
        '{"hostAssignments": {"a": ["fn.example.com"]}, "defaultHosts": ["fn.example.com"]}',
    )
    triggers.settings.host_policy.cache_clear()
    try:
        with pytest.raises(kopf.PermanentError, match="both a default host and assigned"):
            triggers.check_host_policy()
    finally:
        triggers.settings.host_policy.cache_clear()
