"""What ``kubectl kfn init`` writes: a Lambda-style handler, function.yaml, a test event and
``.kfnignore`` (pure: names and texts, written by the command).

function.yaml is a Function without ``spec.source``: ``kubectl kfn deploy`` adds the folder's
files as inline source (:func:`kfn.cli.package.manifest`). Setting ``spec.source`` there (a
configMapRef, an archive, an image) makes deploy send the Function as written instead.
"""

from __future__ import annotations

from typing import Final

from kfn.api import function
from kfn.cli import events

DEFAULT_RUNTIME: Final = "python3.13"
SAMPLE_EVENT: Final = "apigw"

_PYTHON_HANDLER: Final = '''\
"""{name}: a kfn function, written as for AWS Lambda.

Call it here with the test event:
    python -c 'import json, app; print(app.handler(json.load(open("events/event.json")), None))'
and on the cluster, after `kubectl kfn deploy`:
    kubectl kfn invoke {name} -f events/event.json
"""

import json
import logging

logger = logging.getLogger()
logger.setLevel(logging.INFO)


def handler(event, context):
    """Answers an HTTP request (API Gateway HTTP API payload 2.0, as a Function URL or an
    HTTP Trigger sends it); other events are echoed back."""
    request_id = getattr(context, "aws_request_id", "local")
    logger.info("request %s", request_id)
    if "rawPath" not in event:
        return {{"received": event}}
    name = (event.get("queryStringParameters") or {{}}).get("name", "world")
    return {{
        "statusCode": 200,
        "headers": {{"content-type": "application/json"}},
        "body": json.dumps({{"message": f"Hello, {{name}}!", "path": event["rawPath"]}}),
    }}
'''

_NODE_HANDLER: Final = """\
// {name}: a kfn function, written as for AWS Lambda.
//
// Call it here with the test event:
//   node -e 'require("./index").handler(require("./events/event.json"), {{}}).then(console.log)'
// and on the cluster, after `kubectl kfn deploy`:
//   kubectl kfn invoke {name} -f events/event.json

// Answers an HTTP request (API Gateway HTTP API payload 2.0, as a Function URL or an HTTP
// Trigger sends it); other events are echoed back.
exports.handler = async (event, context) => {{
  console.log(`request ${{(context && context.awsRequestId) || "local"}}`);
  if (!("rawPath" in event)) {{
    return {{ received: event }};
  }}
  const name = (event.queryStringParameters || {{}}).name || "world";
  return {{
    statusCode: 200,
    headers: {{ "content-type": "application/json" }},
    body: JSON.stringify({{ message: `Hello, ${{name}}!`, path: event.rawPath }}),
  }};
}};
"""

_REQUIREMENTS: Final = """\
# Packages the build installs for the function, one pip requirement a line
# (e.g. requests==2.32.3). spec.dependencies in function.yaml adds more.
"""

_FUNCTION_YAML: Final = """\
# The Function {name}. `kubectl kfn deploy` (run in this folder) applies it with this
# folder's files as its inline source (spec.source.inline), less what .kfnignore names.
# To deploy code kept elsewhere instead, set spec.source (configMapRef, archive or image):
# deploy then sends this Function as written. Every field: kubectl explain function.spec
apiVersion: kfn.dev/v1alpha1
kind: Function
metadata:
  name: {name}
spec:
  runtime: {runtime}
  handler: {handler}
  timeout: 30s
  # dependencies: []        # more packages for the build, beside {manifest}
  # env:
  #   - name: LOG_LEVEL
  #     value: INFO
  # resources:
  #   limits: {{memory: 256Mi}}
  # url: {{}}                 # a public Function URL (auth None); see docs/exposing-functions.md
"""

_KFNIGNORE: Final = """\
# Files `kubectl kfn deploy` leaves out of the function's source: gitignore-style patterns,
# one a line (`!pattern` takes one back). Always left out: .git/, __pycache__/,
# node_modules/, .venv/, *.pyc, .kfnignore and function.yaml.
events/
tests/
# Inline source is stored in the Function, readable by whoever may read Functions:
# keep secrets out of it (use a Secret and spec.envFrom).
.env
.env.*
"""


def handler_file(runtime: str) -> str:
    return "app.py" if runtime in function.PYTHON_RUNTIMES else "index.js"


def handler_name(runtime: str) -> str:
    return "app.handler" if runtime in function.PYTHON_RUNTIMES else "index.handler"


def files(name: str, runtime: str) -> dict[str, str]:
    """The files of a new function folder, by path, in the order they are written."""
    python = runtime in function.PYTHON_RUNTIMES
    code = (_PYTHON_HANDLER if python else _NODE_HANDLER).format(name=name)
    if python:
        manifest_name, manifest = "requirements.txt", _REQUIREMENTS
    else:
        manifest_name = "package.json"
        manifest = events.dumps(
            {"name": name, "version": "1.0.0", "private": True, "dependencies": {}}
        )
    function_yaml = _FUNCTION_YAML.format(
        name=name, runtime=runtime, handler=handler_name(runtime), manifest=manifest_name
    )
    return {
        handler_file(runtime): code,
        manifest_name: manifest,
        "function.yaml": function_yaml,
        "events/event.json": events.dumps(events.get(SAMPLE_EVENT)),
        ".kfnignore": _KFNIGNORE,
    }
