"""The secrets object stores sign their notifications with, when all they can do is call a URL.

A store's webhook (versitygw's ``--event-webhook-url``, MinIO's ``notify_webhook``, Ceph
RGW's HTTP push endpoint) is set up once by whoever runs the store and sends no
ServiceAccount token. What such stores can send is a secret of their configuration, in one of
two places, and the bucket worker takes either:

* ``Authorization: Bearer <token>``, for stores that send a configured header (MinIO's
  ``auth_token``);
* the user information of the URL, ``http://kfn:<token>@<service>/events/<namespace>``, which
  the store's HTTP client sends as ``Authorization: Basic`` (Go's ``net/http``, which
  versitygw uses, and curl do); the user name is not checked.

A token is not kept anywhere: it is the HMAC-SHA256 of its scope under one key (the chart's
Secret ``<release>-kfn-bucket``, key ``events-key``), so every replica checks it and the
operator shows it without anything stored per Trigger or per namespace. A namespace's token
admits ``/events/<namespace>`` and ``/events/<namespace>/<any trigger>``; a Trigger's token
only ``/events/<namespace>/<trigger>``. ``/events`` (every namespace's Triggers, for a store
the whole cluster shares) takes only the cluster's token, a random value of the same
Secret (``events-token``) that only the cluster admin reads; it is good on every path.

The operator writes a namespace's token and its Push Triggers' into the Secret
:data:`SECRET_NAME` of that namespace (never into a Trigger's status: whoever may only read
Triggers must not be able to sign for them). Tokens are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
from typing import Final, Literal

#: The Secret in each namespace with Push Triggers that holds the URLs and tokens to use.
SECRET_NAME: Final = "kfn-bucket-events"  # noqa: S105 - a name, not a password
#: The user name put in a URL's user information (any is accepted).
USERNAME: Final = "kfn"
#: What every derived token signs first, so the key signs nothing else by mistake.
_CONTEXT: Final = b"kfn-bucket-events/v1"

Why = Literal["unsigned", "wrong"]


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    """A notification that is not signed for its path: the status, why, and what to do."""

    status: int
    why: Why
    message: str


def token(key: bytes, namespace: str, trigger: str = "") -> str:
    """The token of a namespace (``trigger`` empty) or of one Trigger in it: 43 characters
    that need no escaping in a URL's user information or a header."""
    message = b"\n".join((_CONTEXT, namespace.encode(), trigger.encode()))
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def presented(authorization: str | None) -> str | None:
    """The token an ``Authorization`` header carries (Bearer, or a Basic password), or None."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    value = value.strip()
    if not value:
        return None
    if scheme.lower() == "bearer":
        return value
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, colon, password = decoded.partition(":")
        return password if colon and password else None
    return None


def check(
    authorization: str | None,
    *,
    key: bytes,
    cluster_token: str,
    namespace: str = "",
    trigger: str = "",
) -> Refusal | None:
    """Whether a notification to ``/events[/<namespace>[/<trigger>]]`` is signed for it:
    None when it is, else the refusal (401 without a token, 403 with one that path does not
    take)."""
    given = presented(authorization)
    if given is None:
        return Refusal(401, "unsigned", unsigned_message(namespace))
    accepted = [cluster_token] if cluster_token else []
    if namespace and key:
        accepted.append(token(key, namespace))
        if trigger:
            accepted.append(token(key, namespace, trigger))
    # Every candidate is compared, so the time taken does not tell which one came close.
    matches = [hmac.compare_digest(given.encode(), a.encode()) for a in accepted]
    if any(matches):
        return None
    return Refusal(403, "wrong", wrong_message(namespace, trigger))


def unsigned_message(namespace: str) -> str:
    where = (
        f"the Secret {SECRET_NAME} in namespace {namespace}"
        if namespace
        else "the events-token of the kfn release's Secret <release>-kfn-bucket"
    )
    return (
        "the notification is not signed: send 'Authorization: Bearer <token>', or put the "
        f"token in the URL (http://{USERNAME}:<token>@...), with the token of {where}"
    )


def wrong_message(namespace: str, trigger: str) -> str:
    if not namespace:
        return (
            "the token is not the cluster's: /events takes notifications for every "
            "namespace and only with the events-token of the kfn release's Secret "
            "<release>-kfn-bucket; a namespace's store posts to /events/<namespace>"
        )
    path = f"/events/{namespace}" + (f"/{trigger}" if trigger else "")
    return (
        f"the token is not good for {path}: use the url or token of the Secret "
        f"{SECRET_NAME} in namespace {namespace}"
    )


def path(namespace: str, trigger: str = "") -> str:
    """The receiver's path for a namespace's notifications, or one Trigger's."""
    return f"/events/{namespace}" + (f"/{trigger}" if trigger else "")


def signed_url(base_url: str, path_: str, token_: str) -> str:
    """``base_url`` (``http://host[:port]``) + ``path_`` with the token in its user
    information, for stores that take only a URL."""
    scheme, _, authority = base_url.rstrip("/").partition("://")
    return f"{scheme}://{USERNAME}:{token_}@{authority}{path_}"
