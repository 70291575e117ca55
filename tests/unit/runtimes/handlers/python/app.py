"""Test handlers for the Python runtime; handlers/nodejs/app.js has the same ones in JavaScript."""

import asyncio
import base64
import json
import logging
import os
import signal
import time

logger = logging.getLogger()
logger.setLevel(logging.INFO)


class BoomError(Exception):
    pass


def echo(event, context):
    print("echo says hi")
    logger.info("echo logs via logging")
    return {
        "event": event,
        "context": {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "aws_request_id": context.aws_request_id,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
        },
    }


def fail(event, context):
    raise BoomError("the handler failed on purpose")


def slow(event, context):
    time.sleep(event.get("ms", 0) / 1000)
    return {"slept": event.get("ms", 0)}


async def slow_async(event, context):
    await asyncio.sleep(event.get("ms", 0) / 1000)
    return {"slept": event.get("ms", 0)}


def http(event, context):
    return {
        "statusCode": 201,
        "headers": {"X-Method": event["requestContext"]["http"]["method"], "X-Count": 3},
        "cookies": ["session=abc; Path=/", "theme=dark"],
        "body": json.dumps(event),
    }


def binary(event, context):
    data = base64.b64decode(event["body"]) if event.get("isBase64Encoded") else b""
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/octet-stream"},
        "body": base64.b64encode(data[::-1]).decode("ascii"),
        "isBase64Encoded": True,
    }


def plain(event, context):
    return ["plain", 1]


def too_many(event, context):
    """A handler's own 429, shaped like the runtime's refusal and trying to forge its marks."""
    return {
        "statusCode": 429,
        "headers": {"Retry-After": "1", "Kfn-Not-Started": "busy", "Kfn-Handler-Duration": "999"},
        "body": json.dumps({"message": "Too Many Requests"}),
    }


def die_on_poison(event, context):
    """Kills its own process, as an out-of-memory kill would, when the event holds "poison"."""
    if "poison" in json.dumps(event):
        os.kill(os.getpid(), signal.SIGKILL)
    return {"handled": len(event.get("records", []))}


def rest(event, context):
    """A REST API (payload 1.0) or ALB handler: the event as body, cookies as multi-value."""
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "X-Format": "single"},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
        "body": json.dumps(event),
    }


def client_context(event, context):
    """What a caller's client context (Lambda's X-Amz-Client-Context) gave the handler."""
    given = context.client_context
    return {"custom": given.custom if given else None, "env": given.env if given else None}
