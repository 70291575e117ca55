"""AWS Lambda's own API (``2015-03-31``) on the invoke door: paths, names and answers (pure).

A Lambda client (boto3, the AWS CLI, any SDK) whose ``endpoint_url`` is the activator's
invoke door works unchanged. Served:

* ``POST /2015-03-31/functions/{FunctionName}/invocations`` (Invoke);
* ``GET /2015-03-31/functions/{FunctionName}`` (GetFunction) and
  ``.../{FunctionName}/configuration`` (GetFunctionConfiguration);
* ``GET /2015-03-31/functions/`` (ListFunctions, ``Marker``/``MaxItems``).

Any of them may follow a namespace prefix, ``/{namespace}/2015-03-31/...``: a client whose
``endpoint_url`` ends in ``/{namespace}`` (botocore keeps an endpoint's path) speaks to that
namespace. Without a prefix, the namespace is the caller's own ServiceAccount's.
``FunctionName`` takes the forms Lambda does: ``name``, ``name:qualifier``,
``ACCOUNT:function:name[:qualifier]`` and ``arn:aws:lambda:REGION:ACCOUNT:function:name
[:qualifier]``; an ARN's account and region are accepted as they come and choose nothing.
Invoke takes any qualifier (``$LATEST``, a version, an alias: :mod:`~kfn.activator.qualifiers`)
and answers with ``X-Amz-Executed-Version`` naming the version that ran; GetFunction and
GetFunctionConfiguration describe ``$LATEST`` only so far.

Errors are Lambda's: status, ``X-Amzn-ErrorType`` (what botocore's rest-json parser reads
for the error code, so ``client.exceptions.ResourceNotFoundException`` is raised) and a
body ``{"Type": "User", "message": ...}``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Final, Literal

from kfn.activator import answers
from kfn.api import function as function_api
from kfn.api import meta

API_VERSION: Final = b"/2015-03-31/functions"
LATEST: Final = "$LATEST"
#: Lambda's synchronous request payload limit (6 MB, counted as 6 MiB).
SYNC_PAYLOAD_LIMIT: Final = 6 * 1024 * 1024
#: ``X-Amz-Client-Context``'s limit, Lambda's.
CLIENT_CONTEXT_LIMIT: Final = 3583
#: ListFunctions answers at most this many per page (Lambda's bound).
PAGE_LIMIT: Final = 50
DEFAULT_ACCOUNT: Final = "000000000000"
DEFAULT_REGION: Final = "us-east-1"

_NAME: Final = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_NAMESPACE: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

Operation = Literal["Invoke", "GetFunction", "GetFunctionConfiguration", "ListFunctions"]


def is_lambda(url: bytes) -> bool:
    """Whether a URL is for the Lambda API (cheap: checked on the invoke door only)."""
    return API_VERSION in url


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """A Lambda API request, parsed from its method and URL."""

    operation: Operation
    #: The namespace the URL's prefix names, or "" for the caller's own.
    namespace: str
    #: ``FunctionName`` as the caller gave it (percent-decoded), "" for ListFunctions.
    function_name: str
    query: Mapping[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """What the exchange collected of one Lambda API request: held whole."""

    method: bytes
    url: bytes
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes
    request_id: bytes


def error(
    status: int, error_type: str, message: str, *, kind: str = "User", extra: bytes = b""
) -> answers.Answer:
    """An error as Lambda answers it (see the module doc)."""
    body = json.dumps({"Type": kind, "message": message}).encode()
    headers = b"X-Amzn-ErrorType: %s\r\n%s" % (error_type.encode(), extra)
    return answers.Answer(status, b"application/json", body, headers)


def not_found(message: str) -> answers.Answer:
    return error(404, "ResourceNotFoundException", message)


def invalid(message: str) -> answers.Answer:
    return error(400, "InvalidParameterValueException", message)


UNKNOWN_OPERATION: Final = error(404, "UnknownOperationException", "Unknown operation", kind="User")
REQUEST_TOO_LARGE: Final = error(
    413,
    "RequestTooLargeException",
    f"Request must be smaller than {SYNC_PAYLOAD_LIMIT} bytes for the InvokeFunction operation",
)


def parse(method: bytes, url: bytes) -> Call | answers.Answer:
    """The operation a request asks for, or the answer refusing it."""
    path, _, raw_query = url.partition(b"?")
    at = path.find(API_VERSION)
    prefix = path[:at].strip(b"/")
    rest = path[at + len(API_VERSION) :]
    try:
        namespace = urllib.parse.unquote(prefix.decode("ascii"), errors="strict")
        parts = [urllib.parse.unquote(p, errors="strict") for p in rest.decode("ascii").split("/")]
        query = dict(urllib.parse.parse_qsl(raw_query.decode("ascii"), errors="strict"))
    except (UnicodeDecodeError, ValueError):
        return invalid("the URL is not valid ASCII or percent-encoded UTF-8")
    if namespace and (b"/" in prefix or not _NAMESPACE.match(namespace)):
        return not_found(f"no namespace {namespace!r}: the endpoint URL's path names one")
    # rest is "", "/", "/{name}", "/{name}/invocations" or "/{name}/configuration".
    segments = parts[1:] if parts and parts[0] == "" else parts
    if segments == [""]:
        segments = []
    name = segments[0] if segments else ""
    operation = _OPERATIONS.get((method, tuple(segments[1:]), bool(segments)))
    if operation is None or (segments and not name):
        return UNKNOWN_OPERATION
    return Call(operation, namespace, name, query)


#: (method, the path's segments after the function's name, whether it names one).
_OPERATIONS: Final[dict[tuple[bytes, tuple[str, ...], bool], Operation]] = {
    (b"GET", (), False): "ListFunctions",
    (b"GET", (), True): "GetFunction",
    (b"POST", ("invocations",), True): "Invoke",
    (b"GET", ("configuration",), True): "GetFunctionConfiguration",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """Which function a ``FunctionName`` (and ``Qualifier``) names."""

    name: str
    qualifier: str


def function_name(given: str, qualifier: str | None) -> Target | answers.Answer:
    """The function and qualifier a ``FunctionName`` in any of Lambda's forms names."""
    parts = given.split(":")
    if parts[0] == "arn":
        if len(parts) not in (7, 8) or parts[2] != "lambda" or parts[5] != "function":
            return invalid(f"FunctionName is not a function ARN: {given!r}")
        name, from_name = parts[6], parts[7] if len(parts) == 8 else None
    elif len(parts) in (3, 4) and parts[1] == "function":
        name, from_name = parts[2], parts[3] if len(parts) == 4 else None
    elif len(parts) in (1, 2):
        name, from_name = parts[0], parts[1] if len(parts) == 2 else None
    else:
        return invalid(f"FunctionName is not a name, a partial ARN or an ARN: {given!r}")
    if not _NAME.match(name):
        return not_found(f"Function not found: {given} (kfn's function names are lower case)")
    if from_name is not None and qualifier is not None and from_name != qualifier:
        return invalid(
            f"The derived qualifier from the function name {from_name!r} does not match the "
            f"specified qualifier {qualifier!r}."
        )
    chosen = qualifier if qualifier is not None else from_name
    return Target(name, LATEST if chosen in (None, "") else str(chosen))


def arn(region: str, account: str, name: str, qualifier: str | None = None) -> str:
    base = f"arn:aws:lambda:{region}:{account}:function:{name}"
    return f"{base}:{qualifier}" if qualifier else base


def qualifier_refusal(target: Target, region: str, account: str) -> answers.Answer | None:
    """None for ``$LATEST``, the only qualifier GetFunction describes so far; else the answer
    Lambda gives for one it does not know."""
    if target.qualifier == LATEST:
        return None
    return not_found(
        f"Function not found: {arn(region, account, target.name, target.qualifier)} "
        f"(qualifier {target.qualifier!r}: kfn describes only $LATEST so far; invoke takes "
        "versions and aliases)"
    )


def function_missing(region: str, account: str, name: str) -> answers.Answer:
    return not_found(f"Function not found: {arn(region, account, name)}")


# --- Invoke ------------------------------------------------------------------------------------

InvocationType = Literal["RequestResponse", "Event", "DryRun"]


@dataclasses.dataclass(frozen=True, slots=True)
class InvokeOptions:
    invocation_type: InvocationType
    log_tail: bool
    #: ``X-Amz-Client-Context`` as the caller sent it (base64 JSON), checked; "" for none.
    client_context: str


def invoke_options(headers: Sequence[tuple[bytes, bytes]]) -> InvokeOptions | answers.Answer:
    """Invoke's headers, checked as Lambda checks them."""
    found: dict[bytes, bytes] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered in (b"x-amz-invocation-type", b"x-amz-log-type", b"x-amz-client-context"):
            found[lowered] = value.strip()
    kind = found.get(b"x-amz-invocation-type", b"RequestResponse").decode("latin-1")
    if kind not in ("RequestResponse", "Event", "DryRun"):
        return invalid(
            f"1 validation error detected: Value '{kind}' at 'invocationType' failed to satisfy "
            "constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]"
        )
    log = found.get(b"x-amz-log-type", b"None").decode("latin-1")
    if log not in ("None", "Tail"):
        return invalid(
            f"1 validation error detected: Value '{log}' at 'logType' failed to satisfy "
            "constraint: Member must satisfy enum value set: [Tail, None]"
        )
    context = found.get(b"x-amz-client-context", b"").decode("latin-1")
    if len(context) > CLIENT_CONTEXT_LIMIT:
        return invalid(
            f"Client context must be at most {CLIENT_CONTEXT_LIMIT} bytes, got {len(context)}"
        )
    if context:
        try:
            decoded = json.loads(base64.b64decode(context, validate=True))
        except (binascii.Error, ValueError):
            decoded = None
        if not isinstance(decoded, dict):
            return error(
                400,
                "InvalidRequestContentException",
                "Client context must be a valid Base64-encoded JSON object.",
            )
    return InvokeOptions(kind, log == "Tail" and kind == "RequestResponse", context)  # type: ignore[arg-type]


def payload_refusal(body: bytes) -> answers.Answer | None:
    """None for a JSON payload (or none); else Lambda's 400."""
    if not body.strip():
        return None
    try:
        json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        return error(
            400, "InvalidRequestContentException", f"Could not parse request body into json: {exc}"
        )
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """How a synchronous invocation went, as the activator's call saw it."""

    status: int
    body: bytes
    function_error: bool
    #: The runtime's ``Kfn-Log-Result`` (base64 of the invocation's last 4 KB of log).
    log_result: bytes = b""


EXECUTED_LATEST: Final = b"X-Amz-Executed-Version: $LATEST\r\n"


def invoke_answer(
    result: Result, request_id: bytes, executed: bytes = EXECUTED_LATEST
) -> answers.Answer:
    """Lambda's answer to a synchronous invoke from how it went (see the module doc);
    ``executed`` is the header line naming the version that ran."""
    ids = _ids(request_id)
    if result.function_error:
        # A handler's error, an init error, a time-out, a runtime that exited: the function's
        # own failure, 200 with the error payload and X-Amz-Function-Error, as Lambda.
        extra = ids + b"X-Amz-Function-Error: Unhandled\r\n" + executed
        if result.log_result:
            extra += b"X-Amz-Log-Result: %s\r\n" % result.log_result
        return answers.Answer(200, b"application/json", result.body, extra)
    if result.status == 200:
        extra = ids + executed
        if result.log_result:
            extra += b"X-Amz-Log-Result: %s\r\n" % result.log_result
        return answers.Answer(200, b"application/json", result.body, extra)
    message = _message_of(result.body)
    if result.status == 429:
        return error(
            429,
            "TooManyRequestsException",
            message or "Rate Exceeded.",
            extra=ids + answers.RETRY_AFTER,
        )
    if result.status == 413:
        return error(413, "RequestTooLargeException", message, extra=ids)
    if result.status == 400:
        return error(400, "InvalidRequestContentException", message, extra=ids)
    return error(
        502 if result.status in (0, 502, 503) else 500,
        "ServiceException",
        message or "the function could not be reached",
        kind="Service",
        extra=ids,
    )


def event_answer(accepted: answers.Answer) -> answers.Answer:
    """Lambda's answer to an ``Event`` invoke from the activator's own (202 with its id)."""
    if accepted.status != 202:
        kind = {429: "TooManyRequestsException", 413: "RequestTooLargeException"}
        return error(
            accepted.status,
            kind.get(accepted.status, "ServiceException"),
            _message_of(accepted.body),
            kind="User" if accepted.status in kind else "Service",
            extra=accepted.extra,
        )
    request_id = str(json.loads(accepted.body).get("requestId", "")).encode()
    return answers.Answer(202, b"", b"", _ids(request_id))


def _message_of(body: bytes) -> str:
    try:
        shape = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return body.decode("utf-8", "replace")[:1000]
    if isinstance(shape, dict):
        return str(shape.get("errorMessage") or shape.get("message") or "")
    return ""


def _ids(request_id: bytes) -> bytes:
    return b"X-Amz-Request-Id: %s\r\nX-Amzn-RequestId: %s\r\n" % (request_id, request_id)


def with_ids(answer: answers.Answer, request_id: bytes) -> answers.Answer:
    """An answer carrying Lambda's request id headers (unless it does already)."""
    if b"X-Amz-Request-Id:" in answer.extra:
        return answer
    return answer._replace(extra=answer.extra + _ids(request_id))


# --- GetFunction and ListFunctions --------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Facts:
    """What GetFunction and ListFunctions tell of a Function (never a Secret's value)."""

    namespace: str
    name: str
    runtime: str | None = None
    handler: str | None = None
    memory_mb: int = 128
    timeout_s: int = 3
    #: The names of its plain environment variables (values are left out: one may be
    #: sensitive even when it is not a Secret's).
    env_names: tuple[str, ...] = ()
    last_modified: str = ""
    state: str = "Pending"
    state_reason: str = ""
    state_reason_code: str = ""
    package_type: str = "Zip"
    image: str = ""
    #: ``spec.logging``: ``Text`` or ``JSON``, and the levels a JSON Function filters by.
    log_format: str = "Text"
    application_log_level: str = ""
    system_log_level: str = ""


def lambda_runtime(runtime: str | None) -> str | None:
    """A kfn runtime as Lambda spells it (``nodejs18`` is ``nodejs18.x``)."""
    if runtime is None:
        return None
    if runtime.startswith("nodejs") and not runtime.endswith(".x"):
        return f"{runtime}.x"
    return runtime


def lambda_time(value: datetime.datetime | str) -> str:
    """Lambda's ``LastModified`` form, ``2024-05-01T10:00:00.000+0000``."""
    if isinstance(value, str):
        if not value:
            return ""
        value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    value = value.astimezone(datetime.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def facts_of(function: function_api.Function, created: str = "") -> Facts:
    """A Function's facts (pure): its spec, and its Ready condition as Lambda's State."""
    spec = function.spec
    state, reason, code = "Pending", "", "Creating"
    changed = lambda_time(created) if created else ""
    conditions = function.status.conditions if function.status is not None else []
    for condition in conditions:
        if condition.type == function_api.ConditionType.READY:
            changed = lambda_time(condition.last_transition_time)
            if condition.status == "True":
                state, reason, code = "Active", "", ""
            elif condition.reason in ("Building", "Pending", "Creating", "Progressing"):
                state, reason, code = "Pending", condition.message, condition.reason
            else:
                state, reason, code = "Failed", condition.message, condition.reason
    return Facts(
        namespace=function.metadata.namespace or "",
        name=function.metadata.name,
        runtime=spec.runtime,
        handler=spec.handler,
        memory_mb=spec.memory_bytes // 2**20,
        timeout_s=max(1, round(meta.parse_duration(spec.timeout).total_seconds())),
        env_names=tuple(e.name for e in spec.env if e.value_from is None),
        last_modified=changed,
        state=state,
        state_reason=reason,
        state_reason_code=code,
        package_type="Image" if spec.source.image else "Zip",
        image=spec.source.image or "",
        **_logging_facts(spec.logging),
    )


def _logging_facts(logging: function_api.Logging | None) -> dict[str, str]:
    if logging is None or logging.format != "JSON":
        return {}
    return {
        "log_format": "JSON",
        "application_log_level": logging.application_log_level or "INFO",
        "system_log_level": logging.system_log_level or "INFO",
    }


def configuration(facts: Facts, region: str, account: str) -> dict[str, object]:
    """A FunctionConfiguration as Lambda's API gives it."""
    config: dict[str, object] = {
        "FunctionName": facts.name,
        "FunctionArn": arn(region, account, facts.name),
        "MemorySize": facts.memory_mb,
        "Timeout": facts.timeout_s,
        "Version": LATEST,
        "PackageType": facts.package_type,
        "State": facts.state,
        "LastUpdateStatus": "Successful" if facts.state == "Active" else "InProgress",
        "Architectures": ["x86_64"],
        "Description": f"kfn Function {facts.namespace}/{facts.name}",
    }
    if facts.last_modified:
        config["LastModified"] = facts.last_modified
    runtime = lambda_runtime(facts.runtime)
    # Shown for an image's Function too (Lambda would not): kfn's images run its runtimes.
    if runtime is not None:
        config["Runtime"] = runtime
    if facts.handler is not None:
        config["Handler"] = facts.handler
    if facts.state_reason:
        config["StateReason"] = facts.state_reason
    if facts.state_reason_code:
        config["StateReasonCode"] = facts.state_reason_code
    # Lambda's LoggingConfig; the log group is Lambda's default name (kfn's logs are the
    # pods', read with kubectl logs), the levels only with JSON, as Lambda gives them.
    logging: dict[str, object] = {
        "LogFormat": facts.log_format,
        "LogGroup": f"/aws/lambda/{facts.name}",
    }
    if facts.log_format == "JSON":
        logging["ApplicationLogLevel"] = facts.application_log_level
        logging["SystemLogLevel"] = facts.system_log_level
    config["LoggingConfig"] = logging
    if facts.env_names:
        # Names only; Lambda would show values, kfn shows none.
        config["Environment"] = {"Variables": dict.fromkeys(facts.env_names, "")}
    return config


def get_function(facts: Facts, region: str, account: str) -> dict[str, object]:
    code: dict[str, object] = {"RepositoryType": "ECR" if facts.image else "S3"}
    if facts.image:
        code["ImageUri"] = facts.image
    return {"Configuration": configuration(facts, region, account), "Code": code}


def list_page(
    found: Sequence[Facts], query: Mapping[str, str], region: str, account: str
) -> dict[str, object] | answers.Answer:
    """One page of ListFunctions: the functions after ``Marker`` (a name), by name."""
    raw = query.get("MaxItems", str(PAGE_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= 10000:
        return invalid(
            f"1 validation error detected: Value '{raw}' at 'maxItems' failed to satisfy "
            "constraint: Member must have value between 1 and 10000"
        )
    size = min(int(raw), PAGE_LIMIT)
    marker = query.get("Marker", "")
    ordered = sorted(found, key=lambda f: f.name)
    rest = [f for f in ordered if f.name > marker] if marker else ordered
    page = rest[:size]
    answer: dict[str, object] = {
        "Functions": [configuration(f, region, account) for f in page],
    }
    if len(rest) > size:
        answer["NextMarker"] = page[-1].name
    return answer


def json_answer(value: object, request_id: bytes) -> answers.Answer:
    return answers.Answer(200, b"application/json", json.dumps(value).encode(), _ids(request_id))
