"""A notes API written for API Gateway's REST API (payload format 1.0), and a nightly job.

Nothing here knows about kfn: it is the code of the SAM application in ../template.yaml.
"""

import json
import os
import uuid

MAX_LENGTH = int(os.environ.get("NOTES_MAX_LENGTH", "280"))


def _answer(status, body, **headers):
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **headers},
        "multiValueHeaders": {"X-Notes-Served-By": [os.environ["AWS_LAMBDA_FUNCTION_NAME"]]},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def handler(event, context):
    method = event["httpMethod"]
    if method == "GET":
        tags = (event["multiValueQueryStringParameters"] or {}).get("tag", [])
        return _answer(200, {"notes": [], "filteredBy": tags})
    if method == "POST":
        try:
            note = json.loads(event["body"] or "")
        except json.JSONDecodeError:
            return _answer(400, {"message": "the body is not JSON"})
        text = note.get("text", "") if isinstance(note, dict) else ""
        if not text or len(text) > MAX_LENGTH:
            return _answer(400, {"message": f"text must be 1 to {MAX_LENGTH} characters"})
        # Lambda's request ids are UUIDs; code that stores them as such works unchanged.
        note_id = str(uuid.UUID(context.aws_request_id))
        client = event["requestContext"]["identity"]["sourceIp"]
        print(f"note {note_id} added from {client}")
        return _answer(201, {"id": note_id, "text": text}, Location=f"/notes/{note_id}")
    return _answer(405, {"message": f"{method} is not allowed"})


def nightly(event, context):
    assert event["detail-type"] == "Scheduled Event", event
    print(f"nightly summary for {event['time']} ({context.function_name})")
    return {"summarised": 0}
