"""``python3 -m kfn.smoketest``: the chart's ``helm test``, one Function end to end.

It creates a small Python Function (inline source, built in the cluster), waits until it is
Ready, invokes it through the activator's invoke API and checks the answer, then deletes it
whatever happened. Everything a release needs takes part: the operator, a build Job pushing to
the registry with the namespace's credential, the kubelet pulling it, the activator waking the
function from zero, the autoscaler. Each step prints what it waits for, and a failure names the
step and what the Function's conditions said.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from kfn import kube

HANDLER = """\
import json

def handler(event, context):
    body = json.loads(event.get("body") or "{}")
    return {"statusCode": 200, "body": json.dumps({"echo": body.get("ping"), "ok": True})}
"""


def function(namespace: str, name: str) -> dict[str, Any]:
    """The Function the test deploys."""
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name, "namespace": namespace, "labels": {"kfn.dev/smoke-test": "1"}},
        "spec": {
            "runtime": "python3.11",
            "handler": "app.handler",
            "source": {"inline": {"files": [{"name": "app.py", "content": HANDLER}]}},
            "timeout": "30s",
            "scale": {"minReplicas": 0, "maxReplicas": 1, "idleTimeout": "30s"},
        },
    }


def _conditions(obj: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in ((obj or {}).get("status") or {}).get("conditions") or []}


def wait_ready(namespace: str, name: str, deadline: float) -> dict[str, Any]:
    """Waits for Ready=True; fails at once when a condition says the build failed."""
    last = ""
    while time.monotonic() < deadline:
        obj = kube.get("kfn.dev/v1alpha1", "Function", namespace, name)
        conditions = _conditions(obj)
        ready = conditions.get("Ready", {})
        build = conditions.get("BuildSucceeded", {})
        if ready.get("status") == "True" and obj is not None:
            return obj
        if build.get("status") == "False":
            raise RuntimeError(f"the build failed: {build.get('reason')}: {build.get('message')}")
        state = f"Ready={ready.get('status', '?')} ({ready.get('reason', '')})"
        if state != last:
            print(f"  {state}: {ready.get('message', '')}", flush=True)
            last = state
        time.sleep(2)
    raise RuntimeError(f"the Function did not become Ready in time; last seen: {last}")


def invoke(url: str, deadline: float, token_file: str = "") -> dict[str, Any]:
    """POSTs a ping to the invoke URL (the function may be at zero: the activator holds it),
    with the pod's token for the invoke door if ``token_file`` names one."""
    payload = json.dumps({"body": json.dumps({"ping": "kfn"})}).encode()
    while True:
        request = urllib.request.Request(url, data=payload, method="POST")  # noqa: S310 - status.url
        request.add_header("Content-Type", "application/json")
        try:
            if token_file:
                token = pathlib.Path(token_file).read_text().strip()
                request.add_header("Authorization", f"Bearer {token}")
            with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310 - in-cluster URL
                answer: dict[str, Any] = json.loads(resp.read())
                return answer
        except (urllib.error.URLError, OSError) as exc:
            detail = str(exc)
            if isinstance(exc, urllib.error.HTTPError):
                detail += f": {exc.read(4096).decode(errors='replace')}"
            # The activator learns a new Function within moments of it becoming Ready.
            if time.monotonic() > deadline:
                raise RuntimeError(f"invoking {url} failed: {detail}") from exc
            time.sleep(1)


def run(namespace: str, timeout: float, token_file: str = "") -> None:
    name = f"kfn-smoke-{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + timeout
    print(f"creating Function {namespace}/{name} (inline Python source)", flush=True)
    kube.apply(function(namespace, name))
    try:
        print("waiting for it to build and become Ready", flush=True)
        ready = wait_ready(namespace, name, deadline)
        url = ready["status"]["url"]
        print(f"invoking it through the activator: POST {url}", flush=True)
        answer = invoke(url, deadline, token_file)
        body = json.loads(answer.get("body") or "{}")
        if answer.get("statusCode") != 200 or body != {"echo": "kfn", "ok": True}:
            raise RuntimeError(f"unexpected answer: {answer}")
        print(f"answered: {answer['body']}", flush=True)
    finally:
        kube.delete("kfn.dev/v1alpha1", "Function", namespace, name)
        print(f"deleted Function {namespace}/{name}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kfn.smoketest", description=__doc__)
    parser.add_argument("--namespace", default=os.environ.get("KFN_NAMESPACE", "default"))
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument(
        "--token-file",
        default=os.environ.get("KFN_INVOKE_TOKEN_FILE", ""),
        help="a bearer token for the invoke door (a projected ServiceAccount token)",
    )
    args = parser.parse_args(argv)
    try:
        run(args.namespace, args.timeout, args.token_file)
    except (RuntimeError, kube.ApiError) as exc:
        print(f"kfn smoke test failed: {exc}", file=sys.stderr, flush=True)
        return 1
    print("kfn smoke test passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
