"""Two tenants on one cluster: what namespace B may do to namespace A's function.

A's function serves a steady 20 requests/s from a caller A allows, through the whole
module; every attack from B is answered with a clear refusal, and A's caller sees no
failure. B is granted invoke with a RoleBinding in A, and loses it when the binding goes.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kfn import oci
from kfncluster import config, fnimage
from tests.cluster import httpload, registrycreds
from tests.cluster.invoking import (
    activator_address,
    deploy,
    invoke,
    invoke_address,
    invoke_path,
    invoke_token,
    known_to_every_activator,
)
from tests.cluster.kubeutil import kubectl, scratch_namespace, wait_for

pytestmark = pytest.mark.cluster

HANDLER = """\
def handler(event, context):
    event = event or {}
    seen = (event.get("headers") or {}).get("authorization")
    return {"tenant": "a", "n": event.get("n"), "authorization": seen}
"""

#: How long an allowed decision is cached (the chart's activator.invoke.allowedCacheSeconds).
ALLOWED_TTL = 10.0


@pytest.fixture(scope="module")
def image(cluster: pathlib.Path) -> str:
    return fnimage.push_python_function("tests/tenancy", "v1", {"app.py": HANDLER})


@pytest.fixture(scope="module")
def tenant_a(kfn: str) -> Iterator[str]:
    with scratch_namespace("tenant-a") as name:
        yield name


@pytest.fixture(scope="module")
def tenant_b(kfn: str) -> Iterator[str]:
    with scratch_namespace("tenant-b") as name:
        kubectl("-n", name, "create", "serviceaccount", "client")
        yield name


@pytest.fixture(scope="module")
def door(kfn: str) -> tuple[str, int]:
    return invoke_address(kfn)


def token_of(namespace: str, account: str, *audience: str) -> str:
    args = [f"--audience={a}" for a in audience]
    return kubectl("-n", namespace, "create", "token", account, *args).strip()


def as_(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class SteadyCaller:
    """A's own caller: 20 invocations a second through the invoke door, counting failures."""

    def __init__(self, door: tuple[str, int], namespace: str) -> None:
        self.door, self.namespace = door, namespace
        self.sent = 0
        self.failed: list[tuple[int, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SteadyCaller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        async def loop() -> None:
            while not self._stop.is_set():
                tick = time.monotonic()
                response = await invoke(self.door, self.namespace, "fn", {"n": self.sent})
                self.sent += 1
                if response.status != 200:
                    self.failed.append((response.status, response.body[:200]))
                await asyncio.sleep(max(0.0, 0.05 - (time.monotonic() - tick)))

        asyncio.run(loop())


@pytest.fixture(scope="module")
def steady(tenant_a: str, image: str, door: tuple[str, int]) -> Iterator[SteadyCaller]:
    deploy(tenant_a, "fn", image, scale={"minReplicas": 1, "maxReplicas": 2})
    known_to_every_activator(door, tenant_a, "fn")
    with SteadyCaller(door, tenant_a) as caller:
        yield caller
    print(f"\nA's steady caller: {caller.sent} invocations, {len(caller.failed)} failed")
    assert caller.sent > 0
    assert caller.failed == []


def post(door: tuple[str, int], path: str, headers: dict[str, str]) -> httpload.Response:
    return asyncio.run(httpload.request(*door, "POST", path, b"{}", headers=headers))


def error(response: httpload.Response) -> tuple[int, str, str]:
    body: dict[str, Any] = json.loads(response.body)
    return response.status, body["errorType"], body["errorMessage"]


def test_b_cannot_invoke_as_could_anyone_without_a_token(
    steady: SteadyCaller, door: tuple[str, int], tenant_a: str
) -> None:
    status, kind, message = error(post(door, invoke_path(tenant_a, "fn"), {}))
    assert (status, kind) == (401, "UnrecognizedClientException")
    assert "Authorization: Bearer" in message


def test_b_cannot_invoke_with_its_own_token(
    steady: SteadyCaller, door: tuple[str, int], tenant_a: str, tenant_b: str
) -> None:
    response = post(door, invoke_path(tenant_a, "fn"), as_(token_of(tenant_b, "client", "kfn")))
    status, kind, message = error(response)
    assert (status, kind) == (403, "AccessDeniedException")
    assert f"system:serviceaccount:{tenant_b}:client" in message
    assert f"{tenant_a}/fn" in message
    # Nor learn whether a function exists.
    missing = post(door, invoke_path(tenant_a, "nothing"), as_(token_of(tenant_b, "client", "kfn")))
    assert missing.status == 403


def test_a_token_made_for_the_api_server_is_not_accepted(
    steady: SteadyCaller, door: tuple[str, int], tenant_a: str, tenant_b: str
) -> None:
    status, kind, message = error(
        post(door, invoke_path(tenant_a, "fn"), as_(token_of(tenant_b, "client")))
    )
    assert (status, kind) == (401, "UnrecognizedClientException")
    assert "audience" in message


def test_the_public_door_does_not_serve_the_invoke_api(
    steady: SteadyCaller, kfn: str, tenant_a: str
) -> None:
    response = post(activator_address(kfn), invoke_path(tenant_a, "fn"), {})
    status, _, message = error(response)
    assert status == 404
    assert "invoke Service" in message


def test_a_rolebinding_lets_b_invoke_and_its_removal_revokes_it_within_the_cache_lifetime(
    steady: SteadyCaller, door: tuple[str, int], tenant_a: str, tenant_b: str
) -> None:
    headers = as_(token_of(tenant_b, "client", "kfn"))
    path = invoke_path(tenant_a, "fn")
    kubectl(
        "-n", tenant_a, "create", "rolebinding", "b-invokes", "--clusterrole=kfn-invoker",
        f"--serviceaccount={tenant_b}:client",
    )  # fmt: skip
    granted = time.monotonic()

    def every_activator_allows() -> bool:
        # Ten in a row: both activators behind the Service have seen the binding.
        return all(post(door, path, headers).status == 200 for _ in range(10))

    wait_for("B to be allowed", every_activator_allows, timeout=30, every=0.2)
    print(f"\ngranted: B invokes within {time.monotonic() - granted:.1f} s of the binding")

    kubectl("-n", tenant_a, "delete", "rolebinding", "b-invokes")
    revoked = time.monotonic()

    def every_activator_refuses() -> bool:
        return all(post(door, path, headers).status == 403 for _ in range(10))

    wait_for("B to be refused again", every_activator_refuses, timeout=30, every=0.2)
    took = time.monotonic() - revoked
    print(f"revoked: B refused within {took:.1f} s of the binding's removal")
    assert took <= ALLOWED_TTL + 3


# --- routes ------------------------------------------------------------------------------------


def http_trigger(namespace: str, name: str, function: str, **http: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"functionRef": {"name": function}, "http": http},
    }


def ready(namespace: str, name: str) -> dict[str, Any] | None:
    body = json.loads(kubectl("-n", namespace, "get", "trigger", name, "-o", "json"))
    conditions = {c["type"]: c for c in body.get("status", {}).get("conditions", [])}
    return conditions.get("Ready")


def test_b_cannot_take_a_host_a_uses_with_a_longer_path_prefix(
    steady: SteadyCaller, kfn: str, image: str, tenant_a: str, tenant_b: str
) -> None:
    host = f"shop.{tenant_a}.example"
    kubectl("apply", "-f", "-", input=json.dumps(http_trigger(tenant_a, "shop", "fn", host=host)))
    wait_for("A's route", lambda: (ready(tenant_a, "shop") or {}).get("status") == "True", 60)
    deploy(tenant_b, "thief", image)
    hijack = http_trigger(tenant_b, "hijack", "thief", host=host, pathPrefix="/admin")
    kubectl("apply", "-f", "-", input=json.dumps(hijack))

    def refused() -> dict[str, Any] | None:
        condition = ready(tenant_b, "hijack")
        return condition if condition and condition.get("status") == "False" else None

    condition = wait_for("B's Trigger refused", refused, timeout=60)
    assert condition["reason"] == "RouteConflict"
    assert tenant_a in condition["message"]
    public = activator_address(kfn)
    # Requests for the host's /admin still reach A's function, never B's.
    for _ in range(10):
        response = asyncio.run(httpload.request(*public, "GET", "/admin/x", headers={"Host": host}))
        assert response.status == 200, response.body
        assert response.json()["tenant"] == "a"


def test_b_cannot_claim_a_path_under_the_activators_own(tenant_b: str) -> None:
    claim = http_trigger(tenant_b, "api", "thief", pathPrefix="/_kfn/functions")
    with pytest.raises(AssertionError, match="_kfn"):
        kubectl("apply", "-f", "-", input=json.dumps(claim))
    assert kubectl("-n", tenant_b, "get", "trigger", "api", check=False).strip() == ""


def test_a_route_behind_a_token_serves_only_callers_rbac_lets_invoke_its_function(
    steady: SteadyCaller, kfn: str, tenant_a: str, tenant_b: str
) -> None:
    host = f"private.{tenant_a}.example"
    trigger = http_trigger(tenant_a, "private", "fn", host=host, auth="ServiceAccountToken")
    kubectl("apply", "-f", "-", input=json.dumps(trigger))
    wait_for("A's route", lambda: (ready(tenant_a, "private") or {}).get("status") == "True", 60)
    public = activator_address(kfn)

    def get(headers: dict[str, str]) -> httpload.Response:
        return asyncio.run(
            httpload.request(*public, "GET", "/report", headers={"Host": host, **headers})
        )

    def every_activator_asks_for_a_token() -> bool:
        # Ten in a row: both activators behind the Service have the route.
        return all(get({}).status == 401 for _ in range(10))

    wait_for("the route on every activator", every_activator_asks_for_a_token, 60, every=0.2)
    status, kind, message = error(get({}))
    assert (status, kind) == (401, "UnrecognizedClientException")
    assert "Authorization: Bearer" in message

    status, kind, message = error(get(as_(token_of(tenant_b, "client", "kfn"))))
    assert (status, kind) == (403, "AccessDeniedException")
    assert f"system:serviceaccount:{tenant_b}:client" in message
    assert f"{tenant_a}/fn" in message

    for _ in range(10):
        response = get(as_(invoke_token()))
        assert response.status == 200, response.body
        assert response.json()["tenant"] == "a"
        # The caller's token is kfn's to read: the function never sees it.
        assert response.json()["authorization"] is None


# --- the network -------------------------------------------------------------------------------

#: How long B's pod waits for a connection the network policy drops.
CONNECT_SECONDS = 3

#: Run in B's pod: connect to host:port and say what happened (dropped, refused or connected).
PROBE = """\
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("connected")
except TimeoutError:
    print("dropped")
except ConnectionRefusedError:
    print("refused")
"""


@pytest.fixture(scope="module")
def b_pod(tenant_b: str, image: str) -> str:
    """A pod of B's that runs what B likes (here: Python, to open connections)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "prober", "namespace": tenant_b},
        "spec": {
            "containers": [
                {
                    "name": "prober",
                    "image": image,
                    "command": ["python3", "-c", "import time; time.sleep(3600)"],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                }
            ],
            "terminationGracePeriodSeconds": 0,
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(pod))
    kubectl("-n", tenant_b, "wait", "pod/prober", "--for=condition=Ready", "--timeout=120s")
    return "prober"


def connect_from(namespace: str, pod: str, host: str, port: int) -> str:
    return kubectl(
        "-n", namespace, "exec", pod, "--", "python3", "-c", PROBE, host, str(port),
        str(CONNECT_SECONDS),
    ).strip()  # fmt: skip


def service_ip(namespace: str, name: str) -> str:
    return kubectl("-n", namespace, "get", "service", name, "-o", "jsonpath={.spec.clusterIP}")


def test_b_cannot_call_as_function_pod_directly_on_its_ip(
    steady: SteadyCaller, kfn: str, tenant_a: str, tenant_b: str, b_pod: str
) -> None:
    pods = json.loads(
        kubectl("-n", tenant_a, "get", "pods", "-l", "kfn.dev/function=fn", "-o", "json")
    )["items"]
    ips = [p["status"]["podIP"] for p in pods if p["status"].get("podIP")]
    assert ips, "A's function has no pod"
    for ip in ips:
        assert connect_from(tenant_b, b_pod, ip, 8080) in ("dropped", "refused"), ip
    # Nor through its Service, which leads to the same pods.
    assert connect_from(tenant_b, b_pod, service_ip(tenant_a, "fn"), 80) in ("dropped", "refused")
    # B's pod is not simply cut off: the invoke door answers it (and asks for a token).
    invoke_ip = service_ip(kfn, "kfn-invoke")
    assert connect_from(tenant_b, b_pod, invoke_ip, 80) == "connected"
    print(f"\nB's pod: A's {len(ips)} pod(s) and Service unreachable; the invoke door reachable")


def test_b_cannot_reach_the_autoscalers_stats_port(
    steady: SteadyCaller, kfn: str, tenant_b: str, b_pod: str
) -> None:
    port = int(
        kubectl("-n", kfn, "get", "service", "kfn-autoscaler", "-o",
                "jsonpath={.spec.ports[0].port}")
    )  # fmt: skip
    verdict = connect_from(tenant_b, b_pod, service_ip(kfn, "kfn-autoscaler"), port)
    assert verdict in ("dropped", "refused")


# --- the registry ------------------------------------------------------------------------------


def test_b_cannot_push_into_as_repository_with_its_own_registry_credential(
    steady: SteadyCaller, image: str, tenant_a: str, tenant_b: str
) -> None:
    deploy(tenant_b, "pusher", image)  # B's first Function: kfn issues B's credential
    creds = registrycreds.credential(tenant_b)
    registry = registrycreds.client(creds)
    with tempfile.TemporaryDirectory() as tmp:
        planted = registrycreds.tiny_image(pathlib.Path(tmp))
        # Its own repository takes it: the credential works.
        registry.push_image(planted, oci.Reference(config.REGISTRY, f"fn/{tenant_b}/own", "v1"))
        for repository in (f"fn/{tenant_a}/fn", f"fn/{tenant_a}/fn-deps"):
            with pytest.raises(oci.RegistryAuthError) as refused:
                registry.push_image(planted, oci.Reference(config.REGISTRY, repository, "latest"))
            assert "HTTP 401" in str(refused.value) or "HTTP 403" in str(refused.value)


# --- kfn's internal endpoints ------------------------------------------------------------------

#: Run in B's pod: POST a body to host:port/path with headers (JSON), print status and body.
POST = """\
import http.client, json, sys
host, port, path, headers, body = sys.argv[1:6]
connection = http.client.HTTPConnection(host, int(port), timeout=10)
connection.request("POST", path, body.encode(), json.loads(headers))
answer = connection.getresponse()
print(json.dumps({"status": answer.status, "body": answer.read().decode()}))
"""


def post_from(
    namespace: str, pod: str, address: tuple[str, int], path: str, headers: dict[str, str]
) -> tuple[int, str]:
    out = kubectl(
        "-n", namespace, "exec", pod, "--", "python3", "-c", POST, address[0], str(address[1]),
        path, json.dumps({"Content-Type": "application/json", **headers}), '{"Records": []}',
    )  # fmt: skip
    answer = json.loads(out)
    return answer["status"], answer["body"]


def test_b_cannot_post_bucket_events_for_a_nor_hand_one_over(
    steady: SteadyCaller, kfn: str, tenant_a: str, tenant_b: str, b_pod: str
) -> None:
    bucket = (service_ip(kfn, "kfn-bucket"), 80)
    # The notification port is open to stores wherever they run; the signature decides.
    status, body = post_from(tenant_b, b_pod, bucket, f"/events/{tenant_a}", {})
    assert status == 401, body
    forged = {"Authorization": "Bearer " + "0" * 64}
    status, body = post_from(tenant_b, b_pod, bucket, f"/events/{tenant_a}", forged)
    assert status == 403, body
    status, body = post_from(tenant_b, b_pod, bucket, "/events", forged)
    assert status == 403, body
    # A hand-off between replicas carries their signature; B cannot make one.
    status, body = post_from(tenant_b, b_pod, bucket, "/handoff", {})
    assert status in (401, 403), body
    status, body = post_from(
        tenant_b, b_pod, bucket, "/handoff", {"Kfn-Handoff-Signature": "0" * 64}
    )
    assert status in (401, 403), body


# --- credentials -------------------------------------------------------------------------------

#: Run in B's pod: listen on a port for a while and print every byte that arrived.
LISTEN = """\
import socket, sys, time
server = socket.create_server(("0.0.0.0", int(sys.argv[1])))
server.settimeout(0.5)
received, deadline = b"", time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        connection, _ = server.accept()
    except TimeoutError:
        continue
    connection.sendall(b'INFO {"server_id":"x","version":"2.10.0","auth_required":true}\\r\\n')
    connection.settimeout(1)
    try:
        received += connection.recv(65536)
    except TimeoutError:
        pass
    connection.close()
print(repr(received))
"""


def test_a_trigger_cannot_send_as_secret_to_an_endpoint_the_secret_does_not_allow(
    steady: SteadyCaller, tenant_a: str, tenant_b: str, b_pod: str
) -> None:
    token = "a-private-token-" + "x" * 16
    kubectl("-n", tenant_a, "create", "secret", "generic", "nats-creds",
            f"--from-literal=token={token}")  # fmt: skip
    kubectl("-n", tenant_a, "annotate", "secret", "nats-creds",
            f"kfn.dev/allowed-endpoints=nats://nats.{tenant_a}.svc:4222")  # fmt: skip
    pods = json.loads(kubectl("-n", tenant_b, "get", "pod", b_pod, "-o", "json"))
    foreign = f"nats://{pods['status']['podIP']}:4222"
    result: dict[str, str] = {}

    def listen() -> None:
        result["received"] = kubectl(
            "-n", tenant_b, "exec", b_pod, "--", "python3", "-c", LISTEN, "4222", "25",
            timeout=60,
        )  # fmt: skip

    listener = threading.Thread(target=listen)
    listener.start()
    time.sleep(2)  # the listener is up
    # Someone who may create Triggers in A, but not read its Secrets, points one at B's pod.
    trigger = {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": "exfiltrate", "namespace": tenant_a},
        "spec": {
            "functionRef": {"name": "fn"},
            "stream": {
                "nats": {"servers": [foreign], "subject": "orders.>", "stream": "ORDERS"},
                "credentialsSecretRef": {"name": "nats-creds"},
            },
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(trigger))

    def refused() -> dict[str, Any] | None:
        condition = ready(tenant_a, "exfiltrate")
        return condition if condition and condition.get("status") == "False" else None

    condition = wait_for("the Trigger refused", refused, timeout=60)
    assert condition["reason"] == "SecretNotAllowed"
    assert f"{tenant_a}/nats-creds" in condition["message"]
    assert token not in condition["message"]
    listener.join(60)
    assert token not in result["received"], result["received"]
    kubectl("-n", tenant_a, "delete", "trigger", "exfiltrate", "--wait=true")
