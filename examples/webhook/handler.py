"""A GitHub webhook receiver, written exactly as for AWS Lambda behind API Gateway (HTTP API).

GitHub signs each delivery with the webhook's secret: ``X-Hub-Signature-256: sha256=<hex
HMAC-SHA256 of the raw body>``. The handler recomputes it over the body exactly as received
(base64-decoded when API Gateway says so, never re-serialised JSON) and compares in constant
time. A bad or missing signature gets 401; a good one 202 with the event type, after which
the real work (a build, a chat message) would be queued rather than done while GitHub waits,
since GitHub gives up on a delivery after 10 seconds.

The event is API Gateway's payload format 2.0: header names are lower-case.
"""

import base64
import hashlib
import hmac
import json
import logging
import os

logger = logging.getLogger()
logger.setLevel(logging.INFO)

SECRET = os.environ["GITHUB_WEBHOOK_SECRET"].encode()


def handler(event, context):
    headers = event.get("headers") or {}
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    if not signature_valid(raw, headers.get("x-hub-signature-256", "")):
        logger.warning(
            "rejected a delivery with a bad signature (%s)",
            headers.get("x-github-delivery", "no delivery id"),
        )
        return _json(401, {"error": "bad signature"})
    kind = headers.get("x-github-event", "unknown")
    delivery = headers.get("x-github-delivery", "")
    try:
        payload = json.loads(raw)
    except ValueError:
        return _json(400, {"error": "the body must be JSON"})
    repository = payload.get("repository") if isinstance(payload, dict) else None
    name = repository.get("full_name", "-") if isinstance(repository, dict) else "-"
    logger.info("accepted %s event %s for %s", kind, delivery, name)
    return _json(202, {"accepted": kind, "delivery": delivery})


def signature_valid(raw, header):
    expected = "sha256=" + hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.encode())


def _json(status, payload):
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(payload),
    }
