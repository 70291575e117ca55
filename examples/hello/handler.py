"""A small web backend, written exactly as for AWS Lambda behind a function URL.

GET  /hello?name=Ada  → {"message": "Hello, Ada!"}
POST /hello/echo      → the JSON body, back
anything else         → 404
"""

import json


def handler(event, context):
    http = event["requestContext"]["http"]
    method, path = http["method"], event["rawPath"]
    if method == "GET" and path == "/hello":
        name = (event.get("queryStringParameters") or {}).get("name", "world")
        return _json(200, {"message": f"Hello, {name}!", "function": context.function_name})
    if method == "POST" and path == "/hello/echo":
        body = event.get("body") or "{}"
        try:
            return _json(200, {"echo": json.loads(body)})
        except ValueError:
            return _json(400, {"error": "the body must be JSON"})
    return _json(404, {"error": f"no route for {method} {path}"})


def _json(status, payload):
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(payload),
    }
