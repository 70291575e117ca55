"""What a bucket Trigger's conditions say, decided from what the worker saw (pure).

SourceReachable comes from :func:`push_verdict` (a Push Trigger waits at the worker's
URL) or :func:`source_verdict` (a Poll Trigger's last listing); Delivering from
:func:`delivery_verdict` after each event. Messages name what a user can fix and never
contain credentials. :mod:`~kfn.triggers.bucket.conditions` writes them.
"""

from __future__ import annotations

from typing import Final

from kfn.api import trigger as trigger_api
from kfn.authn import webhooks
from kfn.triggers import credentials, delivery, status
from kfn.triggers.bucket import routes, s3

#: S3 error codes that mean "these credentials are wrong", whatever the status code says
#: (versitygw answers an unknown access key with 404 XAdminUserNotFound).
CREDENTIAL_ERRORS: Final = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "XAdminUserNotFound",
    }
)


def push_verdict(url: str, route: routes.Route, *, signed: bool = False) -> status.Verdict:
    """SourceReachable for a Push Trigger: where its store should send notifications, and
    where the token to sign them with is (never the token itself: whoever may read the
    Trigger may not necessarily sign for it)."""
    message = (
        f"waiting for notifications at {url}/events/{route.namespace} (bucket "
        f"{route.spec.bucket}) or {url}/events/{route.namespace}/{route.name}"
    )
    if signed:
        message += (
            f", signed with a token of the Secret {webhooks.SECRET_NAME} in this namespace "
            f"(keys url and token, or {route.name}.url and {route.name}.token)"
        )
    return status.Verdict(True, trigger_api.Reason.CONNECTED, message)


def delivery_verdict(result: delivery.Result) -> status.Verdict | None:
    """The Delivering verdict after one event, or None when it says nothing new (the worker
    stopped before the event ended)."""
    if not result.handled:
        return None
    if result.delivered:
        return status.Verdict(True, trigger_api.Reason.DELIVERING, "events are delivered")
    detail = result.outcome.describe() if result.outcome is not None else "no answer"
    return status.Verdict(
        False,
        trigger_api.Reason.DELIVERY_FAILING,
        f"an event failed ({result.condition}) after {result.attempts} attempts: {detail}",
    )


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text[:400]


def source_verdict(
    error: Exception | None, route: routes.Route, *, secrets: list[str] | None = None
) -> status.Verdict:
    """SourceReachable for a Poll Trigger after a listing: why it failed, in a message a
    user can act on and that never contains the credentials."""
    where = f"bucket {route.spec.bucket} at {route.spec.endpoint}"
    scrub = secrets or []
    if error is None:
        return status.Verdict(
            True,
            trigger_api.Reason.CONNECTED,
            f"listing {where} every {route.spec.poll_interval}",
        )
    if isinstance(error, credentials.CredentialsError):
        return status.Verdict(False, credentials.reason_of(error), _scrub(str(error), scrub))
    if isinstance(error, s3.S3Error):
        if error.code in ("AnswerTooLarge", "AnswerTooSlow"):
            text = f"listing {where} failed: {error.message}"
        elif error.status == 0:
            text = f"cannot reach {where}: {error.message}"
        elif error.status in (401, 403) or error.code in CREDENTIAL_ERRORS:
            text = credentials.refusal(
                where, route.namespace, route.spec.credentials_secret_ref,
                f"{error.code} {error.message}", "the access key and its rights on the bucket",
            )  # fmt: skip
        elif error.status == 404:
            text = f"{where} does not exist ({error.code})"
        else:
            text = f"listing {where} failed: {error}"
        return status.Verdict(False, trigger_api.Reason.CONNECTION_FAILED, _scrub(text, scrub))
    return status.Verdict(
        False,
        trigger_api.Reason.CONNECTION_FAILED,
        _scrub(f"polling {where} failed: {error}", scrub),
    )
