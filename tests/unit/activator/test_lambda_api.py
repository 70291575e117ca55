"""AWS Lambda's API on the invoke door, driven by the real boto3 against a real runtime.

The activator runs in-process with its invoke door checked: SigV4 keys from a fixed table,
bearer tokens and RBAC answered by a table (``test_access.ApiServer``). The function's pod is
a real runtime subprocess. ``tests/cluster/test_lambda_api.py`` does the same on a cluster,
with the AWS CLI too.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest
import pytest_asyncio

from kfn.activator import access, lambda_door, lambda_keys, server, sigv4
from tests.unit.runtimes import conftest as runtimes

from .conftest import FN, MakeActivator
from .http import Client
from .test_access import ALICE, ApiServer

CI_KEY = sigv4.Key("AKIAKFNTEST0000000001", "ci-secret-key", "default", "ci")
#: A key of another namespace, whose ServiceAccount RBAC gives nothing in ``default``.
OTHER_KEY = sigv4.Key("AKIAKFNTEST0000000002", "other-secret-key", "other", "intruder")
CI = lambda_door.service_account_identity("default", "ci")


class Rbac(ApiServer):
    """The table, asked with SubjectAccessReview attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.rules: set[tuple[str, str, str, str]] = {
            (CI.username, "default", "invoke", FN.name),
            (CI.username, "default", "get", FN.name),
            (CI.username, "default", "list", ""),
            (ALICE.username, "default", "invoke", FN.name),
        }

    async def review(
        self, identity: access.Identity, attributes: dict[str, str]
    ) -> tuple[bool, str]:
        self.access_reviews += 1
        rule = (
            identity.username,
            attributes["namespace"],
            attributes["verb"],
            attributes.get("name", ""),
        )
        return rule in self.rules, ""


class Setup:
    def __init__(self, activator: server.Activator, runtime: runtimes.RunningRuntime) -> None:
        self.activator = activator
        self.runtime = runtime
        self.invoke_port = activator.ports[1]

    def client(self, key: sigv4.Key = CI_KEY, prefix: str = "/default") -> Any:
        return boto3.client(
            "lambda",
            endpoint_url=f"http://127.0.0.1:{self.invoke_port}{prefix}",
            region_name="eu-west-1",
            aws_access_key_id=key.access_key_id,
            aws_secret_access_key=key.secret,
            config=botocore.config.Config(retries={"max_attempts": 0}),
        )


@pytest_asyncio.fixture(params=runtimes.LANGUAGES)
async def setup(
    request: pytest.FixtureRequest, make_activator: MakeActivator, tmp_path: Path
) -> AsyncIterator[Setup]:
    language = str(request.param)
    runtime = runtimes.start(language, runtimes.make_task_root(language, tmp_path), "app.echo")
    try:
        api = Rbac()
        checks = access.Access(
            api.review_token, api.review_access, clock=asyncio.get_running_loop().time
        )
        activator = await make_activator(
            endpoints=frozenset({f"127.0.0.1:{runtime.port}"}), invoke_door=True, checks=checks
        )
        activator.ctx.lambda_service = lambda_door.LambdaApi(
            keys=lambda_keys.StaticKeys((CI_KEY, OTHER_KEY)), review=api.review
        )
        yield Setup(activator, runtime)
    finally:
        runtime.stop()


def run(call: Any, *args: Any, **kwargs: Any) -> Any:
    return asyncio.to_thread(call, *args, **kwargs)


@pytest.mark.asyncio
async def test_a_synchronous_invoke_returns_the_payload_and_its_own_log_tail(
    setup: Setup,
) -> None:
    client = setup.client()
    answer = await run(client.invoke, FunctionName="hello", Payload=b'{"n": 1}', LogType="Tail")
    assert answer["StatusCode"] == 200
    assert "FunctionError" not in answer
    assert answer["ExecutedVersion"] == "$LATEST"
    body = json.loads(answer["Payload"].read())
    assert body["event"] == {"n": 1}
    rid = answer["ResponseMetadata"]["RequestId"]
    assert body["context"]["aws_request_id"] == rid
    log = base64.b64decode(answer["LogResult"]).decode()
    assert f"START RequestId: {rid}" in log
    assert "echo says hi" in log
    assert f"END RequestId: {rid}" in log
    assert f"REPORT RequestId: {rid}" in log
    assert "X-Amz-Log-Result" not in setup.runtime.output()


@pytest.mark.asyncio
async def test_concurrent_invocations_each_get_only_their_own_log_lines(setup: Setup) -> None:
    client = setup.client()

    def invoke(n: int) -> tuple[str, str]:
        answer = client.invoke(FunctionName="hello", Payload=json.dumps({"n": n}), LogType="Tail")
        return answer["ResponseMetadata"]["RequestId"], base64.b64decode(
            answer["LogResult"]
        ).decode()

    results = await asyncio.gather(*(asyncio.to_thread(invoke, n) for n in range(4)))
    ids = {rid for rid, _ in results}
    assert len(ids) == 4
    for rid, log in results:
        assert log.count("START RequestId:") == 1
        assert all(other not in log for other in ids - {rid})


@pytest.mark.asyncio
async def test_the_function_name_may_be_an_arn_a_partial_arn_or_qualified_with_latest(
    setup: Setup,
) -> None:
    client = setup.client()
    for name in (
        "arn:aws:lambda:eu-west-1:123456789012:function:hello",
        "123456789012:function:hello:$LATEST",
        "hello:$LATEST",
    ):
        answer = await run(client.invoke, FunctionName=name, Payload=b"{}")
        assert answer["StatusCode"] == 200, name


@pytest.mark.asyncio
async def test_a_missing_function_and_an_unknown_qualifier_raise_resource_not_found(
    setup: Setup,
) -> None:
    client = setup.client()
    setup.activator.ctx.lambda_service = lambda_door.LambdaApi(
        keys=lambda_keys.StaticKeys((CI_KEY,)),
        review=None,  # RBAC aside: a missing function is the question here
    )
    with pytest.raises(client.exceptions.ResourceNotFoundException) as missing:
        await run(client.invoke, FunctionName="nobody", Payload=b"{}")
    assert "nobody" in str(missing.value)
    with pytest.raises(client.exceptions.ResourceNotFoundException) as qualified:
        await run(client.invoke, FunctionName="hello", Qualifier="7", Payload=b"{}")
    # As Lambda answers: the qualified ARN of what was asked for.
    assert str(qualified.value).endswith(
        "Function not found: arn:aws:lambda:eu-west-1:000000000000:function:hello:7"
    )


@pytest.mark.asyncio
async def test_a_payload_that_is_not_json_is_invalid_request_content(setup: Setup) -> None:
    client = setup.client()
    with pytest.raises(client.exceptions.InvalidRequestContentException):
        await run(client.invoke, FunctionName="hello", Payload=b"{not json")


@pytest.mark.asyncio
async def test_dry_run_checks_access_and_runs_nothing(setup: Setup) -> None:
    client = setup.client()
    answer = await run(client.invoke, FunctionName="hello", InvocationType="DryRun")
    assert answer["StatusCode"] == 204
    assert "START RequestId" not in setup.runtime.output()


@pytest.mark.asyncio
async def test_an_event_invoke_is_accepted_and_then_runs(setup: Setup) -> None:
    client = setup.client()
    answer = await run(client.invoke, FunctionName="hello", InvocationType="Event", Payload=b"{}")
    assert answer["StatusCode"] == 202
    rid = answer["ResponseMetadata"]["RequestId"]
    await asyncio.to_thread(setup.runtime.wait_for_output, f"END RequestId: {rid}")


@pytest.mark.asyncio
async def test_another_namespaces_key_is_refused_by_rbac(setup: Setup) -> None:
    client = setup.client(OTHER_KEY)
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        await run(client.invoke, FunctionName="hello", Payload=b"{}")
    error = refused.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    assert "system:serviceaccount:other:intruder" in error["Message"]
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "START RequestId" not in setup.runtime.output()


@pytest.mark.asyncio
async def test_a_wrong_secret_is_an_invalid_signature(setup: Setup) -> None:
    forged = sigv4.Key(CI_KEY.access_key_id, "not-the-secret", "default", "ci")
    client = setup.client(forged)
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        await run(client.list_functions)
    assert refused.value.response["Error"]["Code"] == "InvalidSignatureException"


@pytest.mark.asyncio
async def test_without_a_prefix_the_namespace_is_the_keys_service_accounts(setup: Setup) -> None:
    client = setup.client(prefix="")
    answer = await run(client.get_function, FunctionName="hello")
    config = answer["Configuration"]
    assert config["FunctionName"] == "hello"
    assert config["FunctionArn"] == "arn:aws:lambda:eu-west-1:000000000000:function:hello"
    assert config["Version"] == "$LATEST"


@pytest.mark.asyncio
async def test_list_functions_pages_through_the_namespace(setup: Setup) -> None:
    client = setup.client()
    listed = await run(client.list_functions, MaxItems=1)
    assert [f["FunctionName"] for f in listed["Functions"]] == ["hello"]
    assert "NextMarker" not in listed
    pages = await run(lambda: list(client.get_paginator("list_functions").paginate()))
    assert [f["FunctionName"] for page in pages for f in page["Functions"]] == ["hello"]


@pytest.mark.asyncio
async def test_a_bearer_token_works_on_the_lambda_api_too(setup: Setup) -> None:
    client = setup.client()

    def with_token(request: Any, **_: Any) -> None:
        del request.headers["Authorization"]
        request.headers["Authorization"] = "Bearer good"

    client.meta.events.register_first("before-send.lambda.Invoke", with_token)
    answer = await run(client.invoke, FunctionName="hello", Payload=b"{}")
    assert answer["StatusCode"] == 200


@pytest.mark.asyncio
@pytest.mark.parametrize("language", runtimes.LANGUAGES)
async def test_a_function_error_is_unhandled_with_lambdas_error_payload(
    make_activator: MakeActivator, tmp_path: Path, language: str
) -> None:
    runtime = runtimes.start(language, runtimes.make_task_root(language, tmp_path), "app.fail")
    try:
        activator = await make_activator(
            endpoints=frozenset({f"127.0.0.1:{runtime.port}"}), invoke_door=True
        )
        activator.ctx.lambda_service = lambda_door.LambdaApi(
            keys=lambda_keys.StaticKeys((CI_KEY,)), review=None
        )
        client = Setup(activator, runtime).client()
        answer = await run(client.invoke, FunctionName="hello", Payload=b"{}")
        assert answer["StatusCode"] == 200
        assert answer["FunctionError"] == "Unhandled"
        error = json.loads(answer["Payload"].read())
        assert error["errorType"] == "BoomError"
        assert "on purpose" in error["errorMessage"]
        assert isinstance(error["stackTrace"], list)
    finally:
        runtime.stop()


@pytest.mark.asyncio
async def test_a_caller_of_the_invoke_api_cannot_ask_the_pod_for_its_log(
    make_activator: MakeActivator, tmp_path: Path
) -> None:
    runtime = runtimes.start("python", runtimes.make_task_root("python", tmp_path), "app.echo")
    try:
        activator = await make_activator(endpoints=frozenset({f"127.0.0.1:{runtime.port}"}))
        client = await Client.connect(activator.ports[0])
        answer = await client.request(
            "POST", "/_kfn/functions/default/hello/invoke", b"{}", headers={"Kfn-Log-Type": "Tail"}
        )
        assert answer.status == 200
        assert "kfn-log-result" not in answer.headers
        assert "x-amz-log-result" not in answer.headers
        await client.close()
    finally:
        runtime.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("language", runtimes.LANGUAGES)
async def test_a_client_context_reaches_the_handlers_context(
    make_activator: MakeActivator, tmp_path: Path, language: str
) -> None:
    runtime = runtimes.start(
        language, runtimes.make_task_root(language, tmp_path), "app.client_context"
    )
    try:
        activator = await make_activator(
            endpoints=frozenset({f"127.0.0.1:{runtime.port}"}), invoke_door=True
        )
        activator.ctx.lambda_service = lambda_door.LambdaApi(
            keys=lambda_keys.StaticKeys((CI_KEY,)), review=None
        )
        client = Setup(activator, runtime).client()
        given = {"custom": {"tenant": "a"}, "env": {"locale": "fr"}}
        context = base64.b64encode(json.dumps(given).encode()).decode()
        answer = await run(client.invoke, FunctionName="hello", ClientContext=context)
        assert json.loads(answer["Payload"].read()) == given
    finally:
        runtime.stop()


@pytest.mark.asyncio
async def test_payloads_over_lambdas_limits_are_request_too_large(setup: Setup) -> None:
    client = setup.client()
    with pytest.raises(client.exceptions.RequestTooLargeException):
        await run(
            client.invoke, FunctionName="hello", Payload=b'"' + b"x" * (6 * 1024 * 1024) + b'"'
        )
    with pytest.raises(client.exceptions.RequestTooLargeException):
        await run(
            client.invoke,
            FunctionName="hello",
            InvocationType="Event",
            Payload=b'"' + b"x" * (256 * 1024) + b'"',
        )
    # The connection and the activator serve on.
    answer = await run(client.invoke, FunctionName="hello", Payload=b"{}")
    assert answer["StatusCode"] == 200
