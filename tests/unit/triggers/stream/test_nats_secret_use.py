"""Credentials follow their owner, end to end for a NATS stream Trigger.

A user who may write Triggers but not read Secrets aims a Trigger at a server of their own
(``listener``: it greets as a NATS server asking for credentials does, and records what it is
sent) and names a Secret of the namespace. The consumer must not connect, and the Trigger must
say why. Once the Secret's owner lists that server, the token does reach it, which shows the
listener would have seen it; and a Secret opted in for a token-secured nats-server on loopback
(the binary the local cluster installs; skipped without it) consumes its stream.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import pathlib
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import nats
import pytest

from kfn import kube
from kfn.api import endpoints
from kfn.api import trigger as trigger_api
from kfn.triggers import credentials, invoke, onfailure
from kfn.triggers import status as status_
from kfn.triggers.stream import nats as nats_
from kfn.triggers.stream import source
from tests.unit.triggers.conftest import NATS_INFO, ActivatorStub, Call, Listener

TOKEN = "team-a-nats-token-7f3c9e"
TEAM_SERVER = "nats://nats.team-a.svc:4222"
COMPONENTS = pathlib.Path.home() / ".cache" / "kfn" / "components"


def nats_server_binary() -> pathlib.Path | None:
    found = sorted(COMPONENTS.glob("nats-*/nats-server"))
    return found[-1] if found else None


def until(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.02)
    pytest.fail(f"no {what} within {timeout}s")


class Verdicts(status_.StatusWriter):
    """Every SourceReachable verdict a consumer reports, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.reachable: list[status_.Verdict] = []

    def set(self, key: Any, *, reachable: Any = None, delivering: Any = None, **extra: Any) -> None:
        del key, delivering, extra
        if reachable is not None:
            self.reachable.append(reachable)

    def last(self, reason: str) -> status_.Verdict | None:
        return next((v for v in reversed(self.reachable) if v.reason == reason), None)


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> Callable[[str | None], None]:
    """Makes Secret team-a/nats-creds hold the token, with the annotation given (None: none)."""

    def holding(annotation: str | None) -> None:
        annotations = {} if annotation is None else {endpoints.ANNOTATION: annotation}
        stored = kube.Secret({"token": TOKEN.encode()}, annotations)

        def get_secret(namespace: str, name: str) -> kube.Secret | None:
            return stored if (namespace, name) == ("team-a", "nats-creds") else None

        monkeypatch.setattr(kube, "get_secret", get_secret)

    return holding


def target(server: str) -> source.Target:
    spec = trigger_api.StreamTrigger.model_validate(
        {
            "nats": {"servers": [server], "subject": "orders.>", "stream": "ORDERS"},
            "startingPosition": "Earliest",
            "credentialsSecretRef": {"name": "nats-creds"},
        }
    )
    return source.Target("team-a", "orders", "uid-1", "fn", spec)


@contextlib.contextmanager
def consuming(server: str, activator_url: str = "http://127.0.0.1:9") -> Iterator[Verdicts]:
    """A consumer of the Trigger aimed at ``server``, stopped (and its thread ended) after."""
    verdicts = Verdicts()
    invoker = invoke.Invoker(activator_url)
    clients = source.Clients(invoker, onfailure.Destinations(invoker), verdicts)
    consumer = nats_.Consumer(target(server), clients, grace=1.0)
    consumer.start()
    try:
        yield verdicts
    finally:
        consumer.stop()
        consumer.join(15)
        assert not consumer.thread.is_alive()


def test_a_trigger_aimed_at_a_foreign_server_never_sends_it_a_secret_listed_for_another(
    listener: Listener, secret: Callable[[str | None], None]
) -> None:
    listener.greeting = NATS_INFO
    secret(TEAM_SERVER)
    with consuming(f"nats://{listener.address}") as verdicts:
        refused = until("SecretNotAllowed", lambda: verdicts.last("SecretNotAllowed"))
    assert listener.seen() == (0, b"")
    assert refused.ok is False
    assert refused.message == (
        f"Secret team-a/nats-creds does not allow nats://{listener.address}; add it to the "
        "annotation kfn.dev/allowed-endpoints if the Secret's owner agrees (it allows "
        f"{TEAM_SERVER})"
    )


def test_a_secret_without_the_annotation_is_sent_nowhere(
    listener: Listener, secret: Callable[[str | None], None]
) -> None:
    listener.greeting = NATS_INFO
    secret(None)
    with consuming(f"nats://{listener.address}") as verdicts:
        refused = until("SecretNotAllowed", lambda: verdicts.last("SecretNotAllowed"))
    assert listener.seen() == (0, b"")
    assert "it has no annotation kfn.dev/allowed-endpoints" in refused.message
    assert TOKEN not in refused.message


def test_once_the_owner_lists_the_server_the_token_is_sent_there(
    listener: Listener, secret: Callable[[str | None], None]
) -> None:
    """The control of the two tests above: the listener sees a token a client sends it."""
    listener.greeting = NATS_INFO
    secret(f"{TEAM_SERVER}, nats://{listener.address}")
    with consuming(f"nats://{listener.address}"):
        until("the token at the listener", lambda: TOKEN.encode() in listener.seen()[1])


def test_without_the_requirement_a_secret_without_the_annotation_is_sent_as_before(
    listener: Listener, secret: Callable[[str | None], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(credentials.REQUIRE_OPT_IN_ENV, "false")
    listener.greeting = NATS_INFO
    secret(None)
    with consuming(f"nats://{listener.address}"):
        until("the token at the listener", lambda: TOKEN.encode() in listener.seen()[1])


def test_deleting_the_trigger_does_not_send_a_refused_secret_to_forget_its_durable(
    listener: Listener, secret: Callable[[str | None], None]
) -> None:
    listener.greeting = NATS_INFO
    secret(TEAM_SERVER)
    nats_.forget_durable(target(f"nats://{listener.address}"))
    assert listener.seen() == (0, b"")


# --- a real server ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def token_server(tmp_path: pathlib.Path) -> Iterator[str]:
    """A nats-server with JetStream on loopback that admits only :data:`TOKEN`; its URL."""
    binary = nats_server_binary()
    if binary is None:
        pytest.skip(f"no nats-server under {COMPONENTS}/nats-*/ (`make up` installs it)")
    port = free_port()
    process = subprocess.Popen(
        [str(binary), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp_path / "js"),
         "--auth", TOKEN],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def listening() -> bool:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                return True
            assert process.poll() is None, f"nats-server exited with {process.returncode}"
            return False

        until("nats-server listening", listening, timeout=10)
        yield f"nats://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def test_an_opted_in_secret_consumes_a_token_secured_stream(
    token_server: str, activator: ActivatorStub, secret: Callable[[str | None], None]
) -> None:
    async def publish() -> None:
        client = await nats.connect(token_server, token=TOKEN, max_reconnect_attempts=0)
        try:
            js = client.jetstream()
            await js.add_stream(name="ORDERS", subjects=["orders.>"])
            await js.publish("orders.new", b"order-1")
        finally:
            await client.close()

    asyncio.run(publish())
    secret(f"{TEAM_SERVER} {token_server}")
    with consuming(token_server, activator.url) as verdicts:
        # The consumer also wakes the function when the record comes (stream.waking).
        def invoked() -> list[Call]:
            return [c for c in activator.calls if c.path.endswith("/invoke")]

        until("the record at the function", invoked)
        connected = verdicts.last("Connected")
    assert connected is not None
    assert connected.ok is True
    call = invoked()[0]
    assert call.path == "/_kfn/functions/team-a/fn/invoke"
    [record] = json.loads(call.body)["records"]
    assert base64.b64decode(record["data"]) == b"order-1"
