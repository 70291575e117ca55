"""Handlers for the documented payload examples (test_runtime_lambda_examples.py)."""

import json


def echo_event(event, context):
    """The event as the body of a response every payload format accepts."""
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(event),
        "isBase64Encoded": False,
    }


def respond(event, context):
    """Returns the result the request's JSON body holds."""
    return json.loads(event["body"])
