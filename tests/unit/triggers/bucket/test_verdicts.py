"""What bucket Triggers' conditions say, and the credentials read from their Secret."""

from __future__ import annotations

import pytest

from kfn import retry
from kfn.triggers import credentials, delivery
from kfn.triggers.bucket import poller, routes, s3, verdicts
from tests.unit.triggers.bucket.helpers import trigger

SECRET = "wJalrXUtnFEMI/K7MDENG"


def route(**fields: object) -> routes.Route:
    made = routes.route_of(trigger(**fields))
    assert made is not None
    return made


# --- SourceReachable ---------------------------------------------------------------------------


def test_a_push_trigger_is_told_where_its_store_should_send() -> None:
    verdict = verdicts.push_verdict("http://kfn-bucket.kfn-system.svc", route())
    assert (verdict.ok, verdict.reason) == (True, "Connected")
    assert "http://kfn-bucket.kfn-system.svc/events/media (bucket bkt)" in verdict.message
    assert "http://kfn-bucket.kfn-system.svc/events/media/thumbs" in verdict.message
    assert "Secret" not in verdict.message


def test_a_push_trigger_whose_notifications_are_signed_is_told_where_the_token_is() -> None:
    verdict = verdicts.push_verdict("http://kfn-bucket.kfn-system.svc", route(), signed=True)
    assert verdict.message.endswith(
        "signed with a token of the Secret kfn-bucket-events in this namespace "
        "(keys url and token, or thumbs.url and thumbs.token)"
    )
    assert "kfn:" not in verdict.message, "never a token in a status"


@pytest.mark.parametrize(
    ("error", "reason", "says"),
    [
        (None, "Connected", "listing bucket bkt at http://store:7070 every 1m"),
        (s3.S3Error(0, "", "connection refused"), "ConnectionFailed",
         "cannot reach bucket bkt at http://store:7070: connection refused"),
        (s3.S3Error(403, "AccessDenied", "no"), "ConnectionFailed",
         "refused the credentials of Secret media/s3-creds: AccessDenied no"),
        (s3.S3Error(404, "XAdminUserNotFound", "who"), "ConnectionFailed",
         "refused the credentials of Secret media/s3-creds"),
        (s3.S3Error(404, "NoSuchBucket", "gone"), "ConnectionFailed",
         "bucket bkt at http://store:7070 does not exist (NoSuchBucket)"),
        (s3.S3Error(500, "InternalError", "oops"), "ConnectionFailed",
         "listing bucket bkt at http://store:7070 failed: 500 InternalError: oops"),
        (s3.S3Error(200, "AnswerTooLarge", "http://store:7070 sent more than 8 bytes"),
         "ConnectionFailed",
         "listing bucket bkt at http://store:7070 failed: http://store:7070 sent more than 8"),
        (credentials.CredentialsError("Secret media/s3-creds does not exist"),
         "CredentialsNotFound", "Secret media/s3-creds does not exist"),
        (OSError("timed out"), "ConnectionFailed", "polling bucket bkt at http://store:7070"),
    ],
)  # fmt: skip
def test_a_listing_sets_source_reachable_with_what_to_fix(
    error: Exception | None, reason: str, says: str
) -> None:
    polled = route(mode="Poll", pollInterval="1m", credentialsSecretRef={"name": "s3-creds"})
    verdict = verdicts.source_verdict(error, polled)
    assert (verdict.ok, verdict.reason) == (error is None, reason)
    assert says in verdict.message


def test_a_source_message_never_carries_the_secret_and_stays_short() -> None:
    error = s3.S3Error(0, "", f"dial failed for {SECRET} " + "x" * 1000)
    verdict = verdicts.source_verdict(error, route(mode="Poll"), secrets=[SECRET, ""])
    assert SECRET not in verdict.message
    assert "***" in verdict.message
    assert len(verdict.message) == 400


# --- Delivering --------------------------------------------------------------------------------


def test_an_event_the_worker_stopped_before_says_nothing_new() -> None:
    assert verdicts.delivery_verdict(delivery.Result(False, False, 2)) is None


def test_a_delivered_event_says_events_are_delivered() -> None:
    verdict = verdicts.delivery_verdict(delivery.Result(True, True, 1))
    assert verdict is not None
    assert (verdict.ok, verdict.reason) == (True, "Delivering")


def test_a_failed_event_says_how_and_after_how_many_attempts() -> None:
    outcome = retry.Outcome(500, b'{"errorType": "ValueError", "errorMessage": "bad key"}')
    verdict = verdicts.delivery_verdict(
        delivery.Result(True, False, 3, "RetriesExhausted", outcome)
    )
    assert verdict is not None
    assert (verdict.ok, verdict.reason) == (False, "DeliveryFailing")
    assert verdict.message == (
        "an event failed (RetriesExhausted) after 3 attempts: status 500: ValueError: bad key"
    )


# --- credentials -------------------------------------------------------------------------------


def test_no_secret_means_unsigned_requests_and_a_session_token_is_kept() -> None:
    assert poller.credentials_of(None, route()) is None
    secret = {
        "AWS_ACCESS_KEY_ID": b"AKID",
        "AWS_SECRET_ACCESS_KEY": b"s",
        "AWS_SESSION_TOKEN": b"t",
    }
    assert poller.credentials_of(secret, route()) == s3.Credentials("AKID", "s", "t")


def test_a_secret_without_the_key_pair_names_what_is_missing() -> None:
    named = route(credentialsSecretRef={"name": "s3-creds"})
    with pytest.raises(credentials.CredentialsError, match="Secret media/s3-creds has no "
                       "AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY"):  # fmt: skip
        poller.credentials_of({"other": b"x"}, named)
