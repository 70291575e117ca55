"""AWS Signature Version 4, checked: who signed a Lambda API request, if anyone kfn knows.

Pure: the request's method, URL as sent, headers and whole body, the time and the keys that
may have signed it go in; a :class:`Signed` (the key that matched) or a :class:`Refused` (the
error the caller reads, in Lambda's words) comes out. The canonical request is built as
botocore builds it when it signs (``botocore.auth.SigV4Auth``): the path as sent, its dot
segments removed and percent-encoded once more; the query's ``name=value`` pairs as sent,
sorted; the signed headers lower-cased, their values trimmed and joined by commas; the hex
SHA-256 of the body. ``X-Amz-Content-SHA256``, when sent, must be that hash (an unsigned
payload is refused: the body is what the caller asks to run).

An access key id may be held by several namespaces (a key id is not a secret: one tenant can
copy another's). Every candidate is tried and only a matching signature wins, so nobody can
shadow a key id they do not hold the secret of. Signatures are compared with
:func:`hmac.compare_digest`.
"""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
import hmac
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Final

ALGORITHM: Final = "AWS4-HMAC-SHA256"
SERVICE: Final = "lambda"
#: How far ``X-Amz-Date`` may be from the activator's clock, either way (AWS's bound).
SKEW: Final = 5 * 60.0
_DATE_FORMAT: Final = "%Y%m%dT%H%M%SZ"
UNSIGNED_PAYLOAD: Final = "UNSIGNED-PAYLOAD"


@dataclasses.dataclass(frozen=True, slots=True)
class Key:
    """A secret access key and whose it is: a ServiceAccount of a namespace."""

    access_key_id: str
    secret: str
    namespace: str
    service_account: str


@dataclasses.dataclass(frozen=True, slots=True)
class Signed:
    key: Key
    #: The region the request was signed for (the ARNs kfn answers name it).
    region: str


@dataclasses.dataclass(frozen=True, slots=True)
class Refused:
    """Why a request is not accepted as signed: the error type and message AWS would send."""

    error_type: str
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class Authorization:
    """The parts of an ``Authorization: AWS4-HMAC-SHA256 ...`` header."""

    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def is_sigv4(authorization: bytes) -> bool:
    return authorization.lstrip().startswith(ALGORITHM.encode())


def parse_authorization(value: str) -> Authorization | Refused:
    """The header's credential scope, signed headers and signature, or why it is malformed."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        return Refused("IncompleteSignatureException", f"unsupported algorithm {algorithm!r}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, field = part.strip().partition("=")
        if sep:
            fields[name.strip()] = field.strip()
    missing = [n for n in ("Credential", "SignedHeaders", "Signature") if not fields.get(n)]
    if missing:
        return Refused(
            "IncompleteSignatureException",
            f"Authorization header requires {', '.join(missing)} parameter(s). "
            f"Authorization={value.strip()[:200]}",
        )
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not all(scope):
        return Refused(
            "IncompleteSignatureException",
            "Credential must be <access key id>/<yyyymmdd>/<region>/<service>/aws4_request, "
            f"got {fields['Credential'][:200]!r}",
        )
    signed = tuple(fields["SignedHeaders"].lower().split(";"))
    return Authorization(scope[0], scope[1], scope[2], scope[3], signed, fields["Signature"])


def remove_dot_segments(path: str) -> str:
    """RFC 3986's dot-segment removal as botocore does it (empty segments go too)."""
    if not path:
        return "/"
    out: list[str] = []
    for segment in path.split("/"):
        if segment and segment != ".":
            if segment == "..":
                if out:
                    out.pop()
            else:
                out.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and out else ""
    return first + "/".join(out) + last


def canonical_query(query: str) -> str:
    """The query's pairs as sent, sorted (botocore signs the encoded URL's query so)."""
    if not query:
        return ""
    pairs = []
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        pairs.append((name, value))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def canonical_request(
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]],
    signed_headers: Sequence[str],
    payload_hash: str,
) -> str:
    """The canonical request for ``target`` (path and query as sent on the wire)."""
    path, _, query = target.partition("?")
    canonical_path = urllib.parse.quote(remove_dot_segments(path), safe="/~")
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(" ".join(value.split()))
    lines = [f"{name}:{','.join(values.get(name, ()))}" for name in signed_headers]
    return "\n".join(
        [
            method.upper(),
            canonical_path,
            canonical_query(query),
            "\n".join(lines) + "\n",
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signature(secret: str, parsed: Authorization, amz_date: str, canonical: str) -> str:
    scope = f"{parsed.date}/{parsed.region}/{parsed.service}/aws4_request"
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"
    key = signing_key(secret, parsed.date, parsed.region, parsed.service)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def verify(
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    *,
    now: float,
    candidates: Iterable[Key],
) -> Signed | Refused:
    """Who signed the request, among ``candidates`` (the keys holding its access key id)."""
    parsed = parse_authorization(_header(headers, "authorization") or "")
    if isinstance(parsed, Refused):
        return parsed
    checked = _scope_and_time(parsed, headers, now)
    if isinstance(checked, Refused):
        return checked
    body_hash = hashlib.sha256(body).hexdigest()
    claimed = _header(headers, "x-amz-content-sha256")
    if claimed is not None and claimed.strip() != body_hash:
        return Refused(
            "InvalidSignatureException",
            "X-Amz-Content-SHA256 is not the SHA-256 of the body "
            f"({UNSIGNED_PAYLOAD} is not accepted: the body is signed)",
        )
    canonical = canonical_request(method, target, headers, parsed.signed_headers, body_hash)
    holders = [key for key in candidates if key.access_key_id == parsed.access_key_id]
    if not holders:
        return Refused(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    expected = parsed.signature.encode()
    for key in holders:
        computed = signature(key.secret, parsed, checked, canonical)
        if hmac.compare_digest(computed.encode(), expected):
            return Signed(key, parsed.region)
    return Refused(
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. "
        "Check your AWS Secret Access Key and signing method.",
    )


def _scope_and_time(
    parsed: Authorization, headers: Sequence[tuple[str, str]], now: float
) -> str | Refused:
    """``X-Amz-Date`` when the scope, the signed headers and the time are acceptable."""
    refusal: Refused | None = None
    amz_date = (_header(headers, "x-amz-date") or "").strip()
    if _header(headers, "x-amz-security-token") is not None:
        refusal = Refused(
            "UnrecognizedClientException",
            "kfn does not accept session credentials (X-Amz-Security-Token): sign with an "
            "access key from the namespace's kfn-lambda-access-keys Secret",
        )
    elif parsed.service != SERVICE:
        refusal = Refused(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{SERVICE}'.",
        )
    elif "host" not in parsed.signed_headers:
        refusal = Refused("InvalidSignatureException", "the Host header must be signed")
    elif not amz_date:
        refusal = Refused(
            "IncompleteSignatureException", "Authorization header requires existence of X-Amz-Date"
        )
    else:
        refusal = _time_refusal(amz_date, now)
        if refusal is None and parsed.date != amz_date[:8]:
            refusal = Refused(
                "InvalidSignatureException", "the Credential's date is not the day of X-Amz-Date"
            )
    return amz_date if refusal is None else refusal


def _time_refusal(amz_date: str, now: float) -> Refused | None:
    try:
        signed_at = calendar.timegm(time.strptime(amz_date, _DATE_FORMAT))
    except ValueError:
        return Refused("IncompleteSignatureException", f"X-Amz-Date is not valid: {amz_date!r}")
    if abs(now - signed_at) <= SKEW:
        return None
    now_text = time.strftime(_DATE_FORMAT, time.gmtime(now))
    if signed_at < now:
        return Refused(
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier than "
            f"{time.strftime(_DATE_FORMAT, time.gmtime(now - SKEW))} ({now_text} - 5 min.)",
        )
    return Refused(
        "InvalidSignatureException",
        f"Signature not yet current: {amz_date} is still later than "
        f"{time.strftime(_DATE_FORMAT, time.gmtime(now + SKEW))} ({now_text} + 5 min.)",
    )
