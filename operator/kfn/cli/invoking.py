"""What ``kubectl kfn invoke`` sends to the activator's invoke door and how it reads the answer
(pure: the command does the connecting).

The invoke door (docs/security.md) takes two APIs, each needing a bearer token that RBAC lets
``invoke`` the function:

* kfn's invoke API, ``POST /_kfn/functions/<namespace>/<name>/invoke``: the function's answer,
  a function error marked ``Kfn-Function-Error``;
* Lambda's, ``POST /<namespace>/2015-03-31/functions/<name>/invocations``: the same call, and
  with ``X-Amz-Log-Type: Tail`` the invocation's own log (its last 4 KB, base64, in
  ``X-Amz-Log-Result``), a ``Qualifier``, a function error marked ``X-Amz-Function-Error``.

The invoke API drops a caller's ``Kfn-Log-Type`` (only the activator asks a pod for its log),
so the log tail and a qualifier go by Lambda's API; the rest by the invoke API.

Which token: ``--service-account`` asks for one of that ServiceAccount (TokenRequest); else the
kubeconfig's own bearer token when it has one; else one of the namespace's ``default``
ServiceAccount. The door reviews tokens for its audience (``kfn``); a kubeconfig's token made
for the API server alone is refused (401), and the command then asks for a ServiceAccount's.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any, Final, Literal

AUDIENCE: Final = "kfn"
"""The audience the invoke door accepts by default (``activator.invoke.audiences``)."""
TOKEN_SECONDS: Final = 600
"""How long a requested token lives: the command's run, with room."""
DEFAULT_SERVICE_ACCOUNT: Final = "default"
INVOKER_ROLE: Final = "kfn-invoker"
LOG_TYPES: Final = ("Tail", "None")

_USER: Final = re.compile(r"User: (\S+) is not authorized")
_SA_PREFIX: Final = "system:serviceaccount:"


@dataclasses.dataclass(frozen=True)
class TokenChoice:
    """Where the bearer token comes from: the kubeconfig, or a TokenRequest for a
    ServiceAccount of ``namespace``."""

    source: Literal["kubeconfig", "service-account"]
    namespace: str
    service_account: str = ""

    def describe(self) -> str:
        if self.source == "kubeconfig":
            return "the kubeconfig's token"
        return f"a token of the ServiceAccount {self.namespace}/{self.service_account}"


def choose_token(
    kubeconfig_token: str | None, service_account: str | None, namespace: str
) -> TokenChoice:
    """``--service-account`` when given, else the kubeconfig's token when it has one, else
    the namespace's ``default`` ServiceAccount."""
    if service_account:
        return TokenChoice("service-account", namespace, service_account)
    if kubeconfig_token:
        return TokenChoice("kubeconfig", namespace)
    return TokenChoice("service-account", namespace, DEFAULT_SERVICE_ACCOUNT)


def fallback_token(choice: TokenChoice, status: int) -> TokenChoice | None:
    """The token to try when the door refused the kubeconfig's as not its own (401): the
    namespace's ``default`` ServiceAccount's; None when there is nothing else to try."""
    if status == 401 and choice.source == "kubeconfig":
        return TokenChoice("service-account", choice.namespace, DEFAULT_SERVICE_ACCOUNT)
    return None


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def lambda_api(self) -> bool:
        return "/2015-03-31/" in self.path


def request(
    namespace: str,
    name: str,
    payload: bytes,
    *,
    token: str,
    log_tail: bool,
    qualifier: str | None = None,
) -> Request:
    """The request for one synchronous invocation."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "User-Agent": "kubectl-kfn",
    }
    if log_tail or qualifier:
        path = f"/{namespace}/2015-03-31/functions/{name}/invocations"
        if qualifier:
            path += "?" + urllib.parse.urlencode({"Qualifier": qualifier})
        if log_tail:
            headers["X-Amz-Log-Type"] = "Tail"
        return Request("POST", path, headers, payload)
    return Request("POST", f"/_kfn/functions/{namespace}/{name}/invoke", headers, payload)


def without_lambda_api(req: Request) -> Request:
    """The same invocation by the invoke API (no log tail, no qualifier), for a door whose
    Lambda API is turned off."""
    _, _, rest = req.path.partition("/2015-03-31/functions/")
    name = rest.split("/", 1)[0]
    namespace = req.path.split("/", 2)[1]
    headers = {k: v for k, v in req.headers.items() if k != "X-Amz-Log-Type"}
    return Request("POST", f"/_kfn/functions/{namespace}/{name}/invoke", headers, req.body)


def lambda_api_off(req: Request, status: int, headers: Mapping[str, str]) -> bool:
    """Whether the answer says the door does not serve Lambda's API (a 404 not in Lambda's
    error shape, which always names its type in ``X-Amzn-ErrorType``)."""
    return req.lambda_api and status == 404 and "x-amzn-errortype" not in headers


def decode_tail(value: str | None) -> str | None:
    """The log tail of ``X-Amz-Log-Result`` (base64 of the last 4 KB, which may start in the
    middle of a character), or None when there is none or it does not decode."""
    if not value:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.decode("utf-8", "replace").lstrip("\ufffd")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """An answer, read: what to print on stdout and stderr, and the exit code."""

    status: int
    body: bytes
    log: str | None = None
    request_id: str | None = None
    function_error: str | None = None
    """``errorType: errorMessage`` of the function's own failure."""
    refusal: str | None = None
    """Why the door (not the function) refused or failed the call."""
    version: str | None = None
    """The version that ran (``X-Amz-Executed-Version``)."""

    @property
    def exit_code(self) -> int:
        return 1 if self.function_error or self.refusal else 0


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _json(body: bytes) -> dict[str, Any]:
    try:
        found = json.loads(body)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def read(status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
    """The outcome of the door's answer."""
    h = _lower(headers)
    log = decode_tail(h.get("x-amz-log-result"))
    rid = h.get("x-amz-request-id") or h.get("kfn-request-id")
    marked = h.get("x-amz-function-error") or h.get("kfn-function-error")
    version = h.get("x-amz-executed-version")
    if marked:
        error = _json(body)
        kind = str(error.get("errorType") or marked)
        message = str(error.get("errorMessage") or body.decode("utf-8", "replace").strip())
        return Outcome(status, body, log, rid, function_error=f"{kind}: {message}", version=version)
    if 200 <= status < 300:
        return Outcome(status, body, log, rid, version=version)
    error = _json(body)
    kind = str(error.get("errorType") or h.get("x-amzn-errortype") or "").split(":", 1)[0]
    message = str(
        error.get("errorMessage")
        or error.get("message")
        or body.decode("utf-8", "replace").strip()
        or f"status {status}"
    )
    text = f"{kind}: {message}" if kind else message
    return Outcome(status, body, log, rid, refusal=f"the invoke door answered {status}: {text}")


def split_qualifier(name: str, qualifier: str | None) -> tuple[str, str | None]:
    """``NAME:QUALIFIER`` as Lambda takes a qualified name, or NAME and ``--qualifier``; both
    at once is a usage error (ValueError)."""
    base, sep, given = name.partition(":")
    if not sep:
        return name, qualifier
    if qualifier is not None and qualifier != given:
        raise ValueError(f"{name} names the qualifier {given}, and --qualifier {qualifier}")
    if not base or not given:
        raise ValueError(f"{name}: use NAME or NAME:QUALIFIER (a version number or an alias)")
    return base, given


def bind_advice(message: str, namespace: str, invoker_role: str = INVOKER_ROLE) -> str:
    """What to run so the caller the door named in its 403 may invoke the namespace's
    functions: a RoleBinding to the kfn-invoker ClusterRole."""
    found = _USER.search(message)
    user = found.group(1) if found else ""
    if user.startswith(_SA_PREFIX):
        sa_ns, _, sa = user.removeprefix(_SA_PREFIX).partition(":")
        subject = f"--serviceaccount={sa_ns}:{sa}"
        binding = f"{sa}-invokes"
    elif user:
        subject = f"--user={user}"
        binding = f"{re.sub(r'[^a-z0-9-]+', '-', user.lower()).strip('-')[:40]}-invokes"
    else:
        subject = "--serviceaccount=<namespace>:<name>"
        binding = "invokers"
    return (
        f"to let it invoke the functions of {namespace}, bind it the {invoker_role} "
        f"ClusterRole: kubectl -n {namespace} create rolebinding {binding} "
        f"--clusterrole={invoker_role} {subject} (or pass --service-account NAME to invoke "
        "as a ServiceAccount that has it)"
    )


def explain(outcome: Outcome, namespace: str, name: str, choice: TokenChoice, role: str) -> str:
    """The ``error:`` message for a refused call, saying what to do."""
    message = outcome.refusal or ""
    if outcome.status == 403:
        return f"{message}. {bind_advice(message, namespace, role)}"
    if outcome.status == 401:
        return (
            f"{message}. The door took {choice.describe()} for no caller: it accepts tokens "
            f"for the audience '{AUDIENCE}'; pass --service-account NAME to use one of "
            f"that ServiceAccount"
        )
    if outcome.status == 404:
        return (
            f"{message}. Is function {name} in namespace {namespace}? "
            f"(kubectl get functions -n {namespace})"
        )
    if outcome.status == 429:
        return f"{message}. The function is at its concurrency limit: try again shortly"
    return message


def payload_from(data: str | None, file_text: str | None, event: Mapping[str, Any] | None) -> bytes:
    """The invocation's payload: ``-d``'s JSON, ``-f``'s file, a test event, else ``{}``;
    ValueError when the given text is not JSON."""
    if event is not None:
        return json.dumps(event).encode()
    text = data if data is not None else file_text
    if text is None:
        return b"{}"
    try:
        json.loads(text)
    except ValueError as exc:
        where = "-d" if data is not None else "the file"
        raise ValueError(f"the payload of {where} is not JSON ({exc})") from None
    return text.encode()
