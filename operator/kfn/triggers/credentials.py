"""Broker credentials: the Secrets a Trigger names, turned into client settings.

Stream sources, bucket listings and on-failure destinations connect with credentials from a
Secret in the Trigger's namespace (see the Trigger API). :func:`read_secret` reads it for the
endpoints it is about to be sent to, and only if the Secret's owner allows them
(:mod:`kfn.api.endpoints`: credentials follow their owner); :func:`kafka_config` and
:func:`nats_options` turn it into librdkafka settings and nats-py options, and
:func:`refusal` words a broker's refusal for SourceReachable. Values are held in memory only
and never appear in a message or a log.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from kfn import kube
from kfn.api import endpoints, meta
from kfn.api import trigger as trigger_api

Secret = Mapping[str, bytes]
#: Reads the Secret a Trigger names (None for no reference) for the endpoints it is sent to;
#: :func:`read_secret` in a worker.
SecretReader = Callable[
    [str, meta.LocalObjectReference | None, Sequence[endpoints.Endpoint]], Secret | None
]

#: ``false`` lets a Secret without the annotation go anywhere (the chart's
#: ``triggerCredentials.requireEndpointOptIn``); any other value, or none, does not.
REQUIRE_OPT_IN_ENV: Final = "KFN_REQUIRE_ENDPOINT_OPT_IN"


class CredentialsError(Exception):
    """A Secret a Trigger names does not exist or lacks a key; the message says which."""


class SecretNotAllowedError(CredentialsError):
    """The Secret's owner does not allow it where the Trigger would send it; the message says
    what to ask of them. Nothing was sent."""


def reason_of(error: CredentialsError) -> trigger_api.Reason:
    """The condition reason for a Secret kfn did not use."""
    if isinstance(error, SecretNotAllowedError):
        return trigger_api.Reason.SECRET_NOT_ALLOWED
    return trigger_api.Reason.CREDENTIALS_NOT_FOUND


def refusal(
    where: str, namespace: str, ref: meta.LocalObjectReference | None, detail: str, check: str
) -> str:
    """The SourceReachable message for credentials a source turned down: it names the
    Secret (never its values) and what to check in it."""
    whose = f"of Secret {namespace}/{ref.name}" if ref else "(none given)"
    return f"{where} refused the credentials {whose}: {detail}; check {check}"


def require_opt_in() -> bool:
    """Whether a Secret without the annotation :data:`kfn.api.endpoints.ANNOTATION` is
    refused (:data:`REQUIRE_OPT_IN_ENV`). Anything but ``false`` keeps the requirement."""
    return os.environ.get(REQUIRE_OPT_IN_ENV, "").strip().lower() != "false"


def read_secret(
    namespace: str,
    ref: meta.LocalObjectReference | None,
    to: Sequence[endpoints.Endpoint],
) -> Secret | None:
    """The Secret's data for sending to the endpoints ``to``, None without a reference.

    Raises :class:`CredentialsError` if it is missing, and :class:`SecretNotAllowedError` if its
    annotation does not allow every one of ``to``: call this before any connection that
    carries the credentials, so that a refused Secret is sent nowhere.
    """
    if ref is None:
        return None
    secret = kube.get_secret(namespace, ref.name)
    if secret is None:
        raise CredentialsError(f"Secret {namespace}/{ref.name} does not exist")
    refused = endpoints.decide(
        namespace, ref.name, secret.annotations, to, require_opt_in=require_opt_in()
    )
    if refused is not None:
        raise SecretNotAllowedError(refused.message)
    return secret.data


def kafka_config(servers: list[str], secret: Secret | None) -> dict[str, Any]:
    """librdkafka settings for brokers and a credentials Secret (see the Trigger API).

    Keys: ``username``/``password`` (SASL, ``mechanism`` defaults to SCRAM-SHA-512) and
    ``ca.crt`` (TLS). Values stay in this dict, which is never logged.
    """
    config: dict[str, Any] = {"bootstrap.servers": ",".join(servers)}
    if not secret:
        return config
    tls = "ca.crt" in secret
    if tls:
        config["ssl.ca.pem"] = secret["ca.crt"].decode()
    if "username" in secret:
        if "password" not in secret:
            raise CredentialsError("the Kafka credentials Secret has a username but no password")
        config["security.protocol"] = "SASL_SSL" if tls else "SASL_PLAINTEXT"
        config["sasl.mechanism"] = secret.get("mechanism", b"SCRAM-SHA-512").decode()
        config["sasl.username"] = secret["username"].decode()
        config["sasl.password"] = secret["password"].decode()
    elif tls:
        config["security.protocol"] = "SSL"
    return config


def nats_options(secret: Secret | None) -> dict[str, Any]:
    """nats-py ``connect`` options for a credentials Secret (``token``, ``creds`` or
    ``username``/``password``); a creds file is written mode 0600 to a private temp dir."""
    if not secret:
        return {}
    if "token" in secret:
        return {"token": secret["token"].decode()}
    if "creds" in secret:
        digest = hashlib.sha256(secret["creds"]).hexdigest()[:16]
        path = os.path.join(tempfile.gettempdir(), f"kfn-nats-{digest}.creds")
        if not os.path.exists(path):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(secret["creds"])
        return {"user_credentials": path}
    if "username" in secret:
        return {
            "user": secret["username"].decode(),
            "password": secret.get("password", b"").decode(),
        }
    raise CredentialsError("the NATS credentials Secret has none of token, creds or username")
