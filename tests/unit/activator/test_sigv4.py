"""SigV4 as the activator checks it, against requests signed by botocore's own signer."""

from __future__ import annotations

import time

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest

from kfn.activator import sigv4

ALICE_KEY = sigv4.Key("AKIDEXAMPLE", "alice-secret", "team-a", "ci")
ENDPOINT = "http://127.0.0.1:8081/team-a"


def signed(
    method: str,
    url: str,
    body: bytes = b"",
    *,
    key: sigv4.Key = ALICE_KEY,
    secret: str | None = None,
    region: str = "eu-west-1",
    headers: dict[str, str] | None = None,
) -> tuple[str, str, list[tuple[str, str]], bytes]:
    """(method, target as sent, headers as sent, body) of a request botocore signed."""
    request = botocore.awsrequest.AWSRequest(
        method=method, url=url, data=body, headers=headers or {}
    )
    credentials = botocore.credentials.Credentials(key.access_key_id, secret or key.secret)
    botocore.auth.SigV4Auth(credentials, "lambda", region).add_auth(request)
    prepared = request.prepare()
    target = prepared.url.split("127.0.0.1:8081", 1)[1]
    sent = [(name, value) for name, value in prepared.headers.items()]
    sent.append(("Host", "127.0.0.1:8081"))
    return method, target, sent, body


def verify(
    request: tuple[str, str, list[tuple[str, str]], bytes],
    *,
    keys: tuple[sigv4.Key, ...] = (ALICE_KEY,),
    now: float | None = None,
) -> sigv4.Signed | sigv4.Refused:
    method, target, headers, body = request
    return sigv4.verify(
        method, target, headers, body, now=time.time() if now is None else now, candidates=keys
    )


def test_a_request_botocore_signed_is_the_key_holders() -> None:
    request = signed("POST", f"{ENDPOINT}/2015-03-31/functions/hello/invocations", b'{"a": 1}')
    verdict = verify(request)
    assert verdict == sigv4.Signed(ALICE_KEY, "eu-west-1")


def test_a_query_and_an_encoded_arn_in_the_path_are_signed_as_botocore_signs_them() -> None:
    arn = "arn%3Aaws%3Alambda%3Aeu-west-1%3A000000000000%3Afunction%3Ahello"
    request = signed("GET", f"{ENDPOINT}/2015-03-31/functions/{arn}?Qualifier=%24LATEST&MaxItems=2")
    assert isinstance(verify(request), sigv4.Signed)


def test_a_body_changed_after_signing_is_refused() -> None:
    method, target, headers, _ = signed(
        "POST", f"{ENDPOINT}/2015-03-31/functions/hello/invocations", b'{"a": 1}'
    )
    verdict = verify((method, target, headers, b'{"a": 2}'))
    assert isinstance(verdict, sigv4.Refused)
    assert verdict.error_type == "InvalidSignatureException"


def test_a_wrong_secret_is_refused_and_an_unknown_key_is_not_recognised() -> None:
    url = f"{ENDPOINT}/2015-03-31/functions/"
    wrong = verify(signed("GET", url, secret="guessed"))
    assert isinstance(wrong, sigv4.Refused)
    assert wrong.error_type == "InvalidSignatureException"
    unknown = verify(signed("GET", url), keys=())
    assert isinstance(unknown, sigv4.Refused)
    assert unknown.error_type == "UnrecognizedClientException"


def test_a_key_id_copied_into_another_namespace_does_not_shadow_its_holder() -> None:
    copied = sigv4.Key(ALICE_KEY.access_key_id, "mallory-secret", "mallory", "thief")
    verdict = verify(signed("GET", f"{ENDPOINT}/2015-03-31/functions/"), keys=(copied, ALICE_KEY))
    assert verdict == sigv4.Signed(ALICE_KEY, "eu-west-1")
    by_mallory = verify(
        signed("GET", f"{ENDPOINT}/2015-03-31/functions/", key=copied),
        keys=(copied, ALICE_KEY),
    )
    assert isinstance(by_mallory, sigv4.Signed)
    assert by_mallory.key.namespace == "mallory"


@pytest.mark.parametrize("minutes", [-6, 6])
def test_a_signature_more_than_five_minutes_from_now_is_refused(minutes: int) -> None:
    request = signed("GET", f"{ENDPOINT}/2015-03-31/functions/")
    later = time.time() + minutes * 60
    verdict = verify(request, now=later)
    assert isinstance(verdict, sigv4.Refused)
    assert verdict.error_type == "InvalidSignatureException"
    assert "Signature expired" in verdict.message if minutes > 0 else "not yet" in verdict.message
    assert isinstance(verify(request, now=time.time() + 4 * 60), sigv4.Signed)


def test_session_credentials_are_refused_clearly() -> None:
    request = signed(
        "GET", f"{ENDPOINT}/2015-03-31/functions/", headers={"X-Amz-Security-Token": "session"}
    )
    verdict = verify(request)
    assert isinstance(verdict, sigv4.Refused)
    assert "X-Amz-Security-Token" in verdict.message


def test_an_unsigned_payload_is_refused() -> None:
    request = signed(
        "POST",
        f"{ENDPOINT}/2015-03-31/functions/hello/invocations",
        b"{}",
        headers={"X-Amz-Content-SHA256": sigv4.UNSIGNED_PAYLOAD},
    )
    verdict = verify(request)
    assert isinstance(verdict, sigv4.Refused)
    assert sigv4.UNSIGNED_PAYLOAD in verdict.message


def test_a_signature_for_another_service_is_refused() -> None:
    request = botocore.awsrequest.AWSRequest(method="GET", url=f"{ENDPOINT}/2015-03-31/functions/")
    credentials = botocore.credentials.Credentials(ALICE_KEY.access_key_id, ALICE_KEY.secret)
    botocore.auth.SigV4Auth(credentials, "s3", "eu-west-1").add_auth(request)
    headers = [*request.prepare().headers.items(), ("Host", "127.0.0.1:8081")]
    verdict = sigv4.verify(
        "GET",
        "/team-a/2015-03-31/functions/",
        headers,
        b"",
        now=time.time(),
        candidates=(ALICE_KEY,),
    )
    assert isinstance(verdict, sigv4.Refused)
    assert "lambda" in verdict.message


def test_the_date_format_is_checked() -> None:
    method, target, headers, body = signed("GET", f"{ENDPOINT}/2015-03-31/functions/")
    broken = [(n, "yesterday" if n.lower() == "x-amz-date" else v) for n, v in headers]
    verdict = verify((method, target, broken, body))
    assert isinstance(verdict, sigv4.Refused)
    assert verdict.error_type == "IncompleteSignatureException"
