"""``kubectl kfn invoke``: the token it sends, the request, and how it reads the door's answer."""

from __future__ import annotations

import base64
import json

import pytest
from kfn_runtime import logs as runtime_logs

from kfn import stats
from kfn.activator import access, answers
from kfn.authn import tokens
from kfn.cli import door, errors, events, invoking

# --- which token --------------------------------------------------------------------------------


def test_the_kubeconfigs_token_is_sent_when_it_has_one() -> None:
    choice = invoking.choose_token("kubeconfig-token", None, "team-a")

    assert choice == invoking.TokenChoice("kubeconfig", "team-a")
    assert choice.describe() == "the kubeconfig's token"


def test_a_kubeconfig_without_a_token_asks_for_one_of_the_default_service_account() -> None:
    choice = invoking.choose_token(None, None, "team-a")

    assert choice == invoking.TokenChoice("service-account", "team-a", "default")
    assert choice.describe() == "a token of the ServiceAccount team-a/default"


def test_service_account_wins_over_the_kubeconfigs_token() -> None:
    assert invoking.choose_token("kubeconfig-token", "ci", "team-a") == invoking.TokenChoice(
        "service-account", "team-a", "ci"
    )


def test_a_kubeconfig_token_the_door_refuses_falls_back_to_the_default_service_account() -> None:
    from_kubeconfig = invoking.TokenChoice("kubeconfig", "team-a")
    requested = invoking.TokenChoice("service-account", "team-a", "ci")

    assert invoking.fallback_token(from_kubeconfig, 401) == invoking.TokenChoice(
        "service-account", "team-a", "default"
    )
    assert invoking.fallback_token(from_kubeconfig, 403) is None  # RBAC said no: say so
    assert invoking.fallback_token(requested, 401) is None  # nothing else to try


# --- the request -------------------------------------------------------------------------------


def test_without_the_log_tail_the_invoke_api_is_called() -> None:
    req = invoking.request("team-a", "hello", b"{}", token="t", log_tail=False)

    assert (req.method, req.path) == ("POST", "/_kfn/functions/team-a/hello/invoke")
    assert req.headers["Authorization"] == "Bearer t"
    assert "X-Amz-Log-Type" not in req.headers
    assert not req.lambda_api


def test_the_log_tail_and_a_qualifier_go_by_lambdas_api_which_serves_them() -> None:
    req = invoking.request("team-a", "hello", b"{}", token="t", log_tail=True, qualifier="$LATEST")

    assert req.path == "/team-a/2015-03-31/functions/hello/invocations?Qualifier=%24LATEST"
    assert req.headers["X-Amz-Log-Type"] == "Tail"
    assert req.lambda_api


def test_a_door_without_lambdas_api_is_asked_again_by_the_invoke_api() -> None:
    req = invoking.request("team-a", "hello", b'{"a": 1}', token="t", log_tail=True)
    off = {"content-type": "application/json"}  # the door's own 404, not Lambda's shape
    not_found = {"x-amzn-errortype": "ResourceNotFoundException"}

    assert invoking.lambda_api_off(req, 404, off)
    assert not invoking.lambda_api_off(req, 404, not_found)
    again = invoking.without_lambda_api(req)
    assert again.path == "/_kfn/functions/team-a/hello/invoke"
    assert again.body == b'{"a": 1}'
    assert "X-Amz-Log-Type" not in again.headers


def test_the_payload_is_the_data_the_file_or_a_test_event_and_must_be_json() -> None:
    assert invoking.payload_from(None, None, None) == b"{}"
    assert invoking.payload_from('{"a": 1}', None, None) == b'{"a": 1}'
    assert invoking.payload_from(None, "[1]\n", None) == b"[1]\n"
    assert json.loads(invoking.payload_from(None, None, events.get("s3"))) == events.get("s3")
    with pytest.raises(ValueError, match="the payload of -d is not JSON"):
        invoking.payload_from("{nope", None, None)


# --- the answer --------------------------------------------------------------------------------


def test_the_log_tail_is_decoded_even_when_it_starts_inside_a_character() -> None:
    log = "é" * 3000 + "\nEND RequestId: x\n"  # more than 4 KB: cut within a character
    tail = runtime_logs.tail_base64(log)

    decoded = invoking.decode_tail(tail)

    assert decoded is not None
    assert decoded.endswith("\nEND RequestId: x\n")
    assert "\ufffd" not in decoded
    assert invoking.decode_tail(None) is None
    assert invoking.decode_tail("not base64!") is None


def test_a_lambda_answer_gives_the_result_and_the_log() -> None:
    log = base64.b64encode(b"START RequestId: r1 Version: $LATEST\nhi\n").decode()
    headers = {"X-Amz-Log-Result": log, "X-Amz-Request-Id": "r1"}

    outcome = invoking.read(200, headers, b'{"ok": true}')

    assert outcome.exit_code == 0
    assert outcome.body == b'{"ok": true}'
    assert outcome.log == "START RequestId: r1 Version: $LATEST\nhi\n"
    assert outcome.request_id == "r1"


@pytest.mark.parametrize(
    ("status", "marker"),
    [(200, "X-Amz-Function-Error"), (502, "Kfn-Function-Error")],
    ids=["lambda-api", "invoke-api"],
)
def test_a_function_error_names_lambdas_error_type_and_message(status: int, marker: str) -> None:
    body = json.dumps(
        {"errorType": "KeyError", "errorMessage": "'order'", "stackTrace": ["..."]}
    ).encode()

    outcome = invoking.read(status, {marker: "Unhandled"}, body)

    assert outcome.function_error == "KeyError: 'order'"
    assert outcome.refusal is None
    assert outcome.exit_code == 1


def test_a_refusal_of_the_invoke_api_is_read_from_its_lambda_shaped_body() -> None:
    answer = answers.error(429, "TooManyRequestsException", "Rate Exceeded")

    outcome = invoking.read(answer.status, {}, answer.body)

    assert (
        outcome.refusal == "the invoke door answered 429: TooManyRequestsException: Rate Exceeded"
    )
    assert outcome.exit_code == 1


def test_a_403_says_which_rolebinding_lets_the_service_account_invoke() -> None:
    identity = tokens.Identity("system:serviceaccount:team-a:default")
    answer = access.denied(identity, stats.FunctionKey("team-a", "hello"), "")
    outcome = invoking.read(answer.status, {}, answer.body)
    choice = invoking.TokenChoice("service-account", "team-a", "default")

    message = invoking.explain(outcome, "team-a", "hello", choice, "kfn-invoker")

    assert message.startswith("the invoke door answered 403: AccessDeniedException: User: ")
    assert (
        "kubectl -n team-a create rolebinding default-invokes --clusterrole=kfn-invoker "
        "--serviceaccount=team-a:default"
    ) in message


def test_a_403_for_a_user_binds_the_user() -> None:
    answer = access.denied(tokens.Identity("jane@example.com"), stats.FunctionKey("a", "f"), "")
    outcome = invoking.read(answer.status, {}, answer.body)

    message = invoking.explain(
        outcome, "a", "f", invoking.TokenChoice("kubeconfig", "a"), "team-kfn-invoker"
    )

    assert "--clusterrole=team-kfn-invoker --user=jane@example.com" in message


def test_a_401_explains_the_audience_the_door_wants() -> None:
    refused = access.invalid("the token is for another audience")
    outcome = invoking.read(refused.status, {}, refused.body)

    message = invoking.explain(
        outcome, "a", "f", invoking.TokenChoice("kubeconfig", "a"), "kfn-invoker"
    )

    assert "audience 'kfn'" in message
    assert "--service-account" in message


# --- finding the door --------------------------------------------------------------------------


def _service(ns: str, name: str) -> dict[str, object]:
    return {
        "metadata": {
            "namespace": ns,
            "name": name,
            "labels": {"app.kubernetes.io/instance": "kfn"},
        },
        "spec": {
            "selector": {"app.kubernetes.io/component": "activator"},
            "ports": [{"name": "http", "port": 80, "targetPort": "invoke"}],
        },
    }


def test_the_one_invoke_service_is_chosen_and_several_need_naming() -> None:
    one = door.chosen_service([_service("kfn-system", "kfn-invoke")], None)
    assert (one.namespace, one.name, one.target_port, one.instance) == (
        "kfn-system",
        "kfn-invoke",
        "invoke",
        "kfn",
    )

    two = [_service("kfn-system", "kfn-invoke"), _service("kfn-b", "b-kfn-invoke")]
    with pytest.raises(errors.CliError, match="--invoke-service NAMESPACE/NAME"):
        door.chosen_service(two, None)
    assert door.chosen_service(two, "kfn-b/b-kfn-invoke").namespace == "kfn-b"
    with pytest.raises(errors.CliError, match="is kfn installed"):
        door.chosen_service([], None)


def _pod(name: str, ready: str, *, going: bool = False) -> dict[str, object]:
    meta: dict[str, object] = {"name": name}
    if going:
        meta["deletionTimestamp"] = "2026-12-04T10:00:00Z"
    return {
        "metadata": meta,
        "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8080},
                                           {"name": "invoke", "containerPort": 8081}]}]},
        "status": {"conditions": [{"type": "Ready", "status": ready}]},
    }  # fmt: skip


def test_a_ready_activator_pod_is_forwarded_to_on_the_port_the_service_names() -> None:
    pods = [_pod("a", "False"), _pod("b", "True", going=True), _pod("c", "True")]

    assert door.pick_pod(pods, "invoke") == ("c", 8081)
    assert door.pick_pod(pods, 9000) == ("c", 9000)
    with pytest.raises(errors.CliError, match="no activator pod"):
        door.pick_pod(pods[:2], "invoke")


def test_a_qualified_name_splits_as_lambda_takes_it() -> None:
    assert invoking.split_qualifier("hello:live", None) == ("hello", "live")
    assert invoking.split_qualifier("hello:3", "3") == ("hello", "3")
    assert invoking.split_qualifier("hello", "2") == ("hello", "2")
    assert invoking.split_qualifier("hello", None) == ("hello", None)


@pytest.mark.parametrize(
    ("name", "qualifier"), [("hello:live", "2"), ("hello:", None), (":2", None)]
)
def test_a_qualifier_named_twice_or_empty_is_refused(name: str, qualifier: str | None) -> None:
    with pytest.raises(ValueError, match=r"NAME:QUALIFIER|names the qualifier"):
        invoking.split_qualifier(name, qualifier)


def test_the_answer_names_the_version_that_ran() -> None:
    outcome = invoking.read(200, {"X-Amz-Executed-Version": "3"}, b"{}")
    assert outcome.version == "3"
    assert invoking.read(200, {}, b"{}").version is None
