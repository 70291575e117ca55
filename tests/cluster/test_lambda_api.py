"""AWS Lambda's API on a cluster: the real boto3 and the real AWS CLI, only the endpoint changed.

Namespace A holds a Function and a ``kfn-lambda-access-keys`` Secret whose key acts as A's
ServiceAccount ``ci``, which RBAC lets invoke, get and list functions in A. Namespace B holds a
key of its own ServiceAccount, which RBAC lets do nothing in A. The clients reach the
activator's invoke Service with ``endpoint_url=http://<invoke Service>/<namespace A>``.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest

from kfncluster import fnimage
from tests.cluster.invoking import deploy, invoke_address
from tests.cluster.kubeutil import KUBECONFIG, KUBECTL, kubectl, scratch_namespace, wait_for

pytestmark = pytest.mark.cluster

HANDLER = """\
def handler(event, context):
    event = event or {}
    print(f"handler saw {event.get('mark', 'nothing')}")
    if event.get("fail"):
        raise ValueError("failed on purpose")
    return {"echo": event, "request": context.aws_request_id}
"""

REGION = "eu-west-1"
AWS_CLI = pathlib.Path(sys.executable).parent / "aws"


def key_secret(namespace: str, account: str) -> tuple[str, str]:
    """A ``kfn-lambda-access-keys`` Secret in ``namespace`` with one key acting as
    ``account``; returns (access key id, secret access key)."""
    key_id = "AKIA" + secrets.token_hex(8).upper()
    secret = secrets.token_urlsafe(30)
    value = json.dumps({"serviceAccount": account, "secretAccessKey": secret})
    kubectl(
        "-n", namespace, "create", "secret", "generic", "kfn-lambda-access-keys",
        f"--from-literal={key_id}={value}",
    )  # fmt: skip
    return key_id, secret


@pytest.fixture(scope="module")
def image(cluster: pathlib.Path) -> str:
    return fnimage.push_python_function("tests/lambda-api", "v1", {"app.py": HANDLER})


@pytest.fixture(scope="module")
def door(kfn: str) -> tuple[str, int]:
    return invoke_address(kfn)


@pytest.fixture(scope="module")
def tenant(kfn: str, image: str) -> Iterator[tuple[str, str, str]]:
    """Namespace A with its Function ``fn``, and the key of its ServiceAccount ``ci``."""
    with scratch_namespace("lambda-a") as namespace:
        kubectl("-n", namespace, "create", "serviceaccount", "ci")
        kubectl(
            "-n", namespace, "create", "rolebinding", "ci-invokes",
            "--clusterrole=kfn-invoker", f"--serviceaccount={namespace}:ci",
        )  # fmt: skip
        kubectl(
            "-n", namespace, "create", "role", "function-reader",
            "--verb=get,list", "--resource=functions.kfn.dev",
        )  # fmt: skip
        kubectl(
            "-n", namespace, "create", "rolebinding", "ci-reads",
            "--role=function-reader", f"--serviceaccount={namespace}:ci",
        )  # fmt: skip
        key_id, secret = key_secret(namespace, "ci")
        deploy(namespace, "fn", image, scale={"minReplicas": 1, "maxReplicas": 1})
        yield namespace, key_id, secret


@pytest.fixture(scope="module")
def intruder(kfn: str) -> Iterator[tuple[str, str, str]]:
    """Namespace B, whose ServiceAccount RBAC lets do nothing in A."""
    with scratch_namespace("lambda-b") as namespace:
        kubectl("-n", namespace, "create", "serviceaccount", "intruder")
        key_id, secret = key_secret(namespace, "intruder")
        yield namespace, key_id, secret


def client(door: tuple[str, int], namespace: str, key_id: str, secret: str) -> Any:
    host, port = door
    return boto3.client(
        "lambda",
        endpoint_url=f"http://{host}:{port}/{namespace}",
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"max_attempts": 0}, read_timeout=60),
    )


def known(lambda_client: Any) -> None:
    """Waits until every activator knows the key (its Secret watched) and the function."""

    def answered() -> bool:
        try:
            for _ in range(4):  # the Service spreads calls over the activators
                lambda_client.get_function(FunctionName="fn")
        except botocore.exceptions.ClientError:
            return False
        return True

    wait_for("the access key and the function known to the activators", answered, timeout=60)


@pytest.fixture(scope="module")
def lam(door: tuple[str, int], tenant: tuple[str, str, str]) -> Any:
    namespace, key_id, secret = tenant
    made = client(door, namespace, key_id, secret)
    known(made)
    return made


def test_a_synchronous_invoke_hands_back_the_payload_and_the_log_tail(lam: Any) -> None:
    answer = lam.invoke(FunctionName="fn", Payload=json.dumps({"mark": "sync-1"}), LogType="Tail")
    assert answer["StatusCode"] == 200
    assert "FunctionError" not in answer
    assert answer["ExecutedVersion"] == "$LATEST"
    rid = answer["ResponseMetadata"]["RequestId"]
    assert json.loads(answer["Payload"].read()) == {"echo": {"mark": "sync-1"}, "request": rid}
    log = base64.b64decode(answer["LogResult"]).decode()
    print(f"\nthe log tail of {rid}:\n{log}")
    assert f"START RequestId: {rid} Version: $LATEST" in log
    assert f"{rid}\thandler saw sync-1" in log
    assert f"END RequestId: {rid}" in log
    assert f"REPORT RequestId: {rid}" in log


def test_an_event_invoke_is_accepted_and_runs(lam: Any, tenant: tuple[str, str, str]) -> None:
    namespace = tenant[0]
    mark = f"event-{secrets.token_hex(4)}"
    answer = lam.invoke(
        FunctionName="fn", InvocationType="Event", Payload=json.dumps({"mark": mark})
    )
    assert answer["StatusCode"] == 202
    rid = answer["ResponseMetadata"]["RequestId"]

    def ran() -> bool:
        logs = kubectl("-n", namespace, "logs", "deployment/fn", "--tail=200")
        return f"{rid}\thandler saw {mark}" in logs

    wait_for(f"the event {rid} in the function's log", ran, timeout=60)


def test_a_function_error_is_unhandled_with_lambdas_error_payload(lam: Any) -> None:
    answer = lam.invoke(FunctionName="fn", Payload=json.dumps({"fail": True}))
    assert answer["StatusCode"] == 200
    assert answer["FunctionError"] == "Unhandled"
    error = json.loads(answer["Payload"].read())
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "failed on purpose"
    assert error["stackTrace"]


def test_a_missing_function_raises_resource_not_found(lam: Any) -> None:
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as missing:
        lam.invoke(FunctionName="nobody", Payload=b"{}")
    assert "function:nobody" in str(missing.value)


def test_get_function_and_list_functions_describe_the_function(
    lam: Any, tenant: tuple[str, str, str]
) -> None:
    config = lam.get_function(FunctionName="fn")["Configuration"]
    assert config["FunctionName"] == "fn"
    assert config["FunctionArn"] == f"arn:aws:lambda:{REGION}:000000000000:function:fn"
    assert config["Runtime"] == "python3.11"
    assert config["Handler"] == "app.handler"
    assert config["State"] == "Active"
    assert config["Version"] == "$LATEST"
    assert config["MemorySize"] == 128
    listed = lam.list_functions()["Functions"]
    assert [f["FunctionName"] for f in listed] == ["fn"]
    by_arn = lam.invoke(FunctionName=config["FunctionArn"], Payload=b"{}")
    assert by_arn["StatusCode"] == 200


def test_a_key_of_another_namespace_is_refused_by_rbac(
    door: tuple[str, int], tenant: tuple[str, str, str], intruder: tuple[str, str, str]
) -> None:
    other = client(door, tenant[0], *intruder[1:])
    deadline = time.monotonic() + 60
    while True:
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            other.invoke(FunctionName="fn", Payload=b"{}")
        code = refused.value.response["Error"]["Code"]
        # Until every activator has its Secret, B's key is unknown rather than refused.
        if code != "UnrecognizedClientException" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert code == "AccessDeniedException"
    assert f"system:serviceaccount:{intruder[0]}:intruder" in str(refused.value)
    with pytest.raises(botocore.exceptions.ClientError) as listing:
        other.list_functions()
    assert listing.value.response["Error"]["Code"] == "AccessDeniedException"


def aws(door: tuple[str, int], tenant: tuple[str, str, str], tmp: pathlib.Path, *args: str) -> str:
    host, port = door
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "AWS_ACCESS_KEY_ID": tenant[1],
        "AWS_SECRET_ACCESS_KEY": tenant[2],
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "none"),
    }
    endpoint = f"--endpoint-url=http://{host}:{port}/{tenant[0]}"
    done = subprocess.run(
        [str(AWS_CLI), endpoint, *args], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_aws_cli_invokes_with_the_log_tail_and_lists_functions(
    lam: Any, door: tuple[str, int], tenant: tuple[str, str, str], tmp_path: pathlib.Path
) -> None:
    out = tmp_path / "out.json"
    answer = json.loads(
        aws(
            door, tenant, tmp_path,
            "lambda", "invoke", "--function-name", "fn", "--log-type", "Tail",
            "--payload", json.dumps({"mark": "from-the-cli"}), str(out),
        )
    )  # fmt: skip
    assert answer["StatusCode"] == 200
    assert json.loads(out.read_text())["echo"] == {"mark": "from-the-cli"}
    log = base64.b64decode(answer["LogResult"]).decode()
    assert "handler saw from-the-cli" in log
    assert "REPORT RequestId:" in log
    listed = json.loads(aws(door, tenant, tmp_path, "lambda", "list-functions"))
    assert [f["FunctionName"] for f in listed["Functions"]] == ["fn"]


def test_the_activator_may_read_kfn_lambda_access_keys_secrets_and_no_others(kfn: str) -> None:
    activator = f"--as=system:serviceaccount:{kfn}:kfn-activator"
    named = "--field-selector=metadata.name=kfn-lambda-access-keys"
    kubectl("get", "secrets", "--all-namespaces", named, activator)
    refused = subprocess.run(
        [str(KUBECTL), f"--kubeconfig={KUBECONFIG}", "get", "secrets", "-A", activator],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr.lower()
