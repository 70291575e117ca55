"""Lambda's error shape, ``{"errorType", "errorMessage", "stackTrace"}``.

Callers (the activator, trigger workers, SDK users) parse this shape, so every error the runtime
reports on the invoke path uses it, whether it came from the handler or from the runtime itself.
"""

from __future__ import annotations

import json
import os
import traceback
from typing import TypedDict

_RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

#: errorType names, as Lambda spells them.
IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
MARSHAL_ERROR = "Runtime.MarshalError"
TIMEOUT = "TimeoutError"
TOO_MANY_REQUESTS = "TooManyRequestsException"
REQUEST_TOO_LARGE = "RequestEntityTooLargeException"
RESPONSE_TOO_LARGE = "ResponseSizeTooLarge"
INVALID_REQUEST_CONTENT = "InvalidRequestContentException"
SERVICE_UNAVAILABLE = "ServiceUnavailableException"
INVALID_RESPONSE = "Runtime.InvalidResponse"
#: A pool pod's ``/_kfn/specialise`` (CONTRACT.md §13): its layers or JSON line are unusable,
#: it was specialised already (or is no pool pod), or it refused its layers before.
INVALID_LAYERS = "Runtime.InvalidLayers"
SPECIALISE_CONFLICT = "Runtime.SpecialiseConflict"
POOL_POD_SPENT = "Runtime.PoolPodSpent"
#: Loading the handler outlasted its budget (``KFN_INIT_TIMEOUT_MS``). kfn's name: Lambda logs
#: ``INIT_REPORT ... Status: timeout`` and runs the init again within the first invocation,
#: which an import that cannot be stopped does not allow here.
INIT_TIMEOUT = "Runtime.InitTimeout"

#: The header on readiness answers that says the handler failed to load, with its errorType:
#: the activator routes to such a pod (it answers every invocation with the init error at once)
#: only when the function has no pod that loaded its handler.
INIT_ERROR_HEADER = "Kfn-Init-Error"
#: The prefix of the one log line carrying the init error as JSON, which the operator reads.
INIT_ERROR_LOG_PREFIX = "kfn runtime: init error "


class ErrorShape(TypedDict):
    errorType: str
    errorMessage: str
    stackTrace: list[str]


def shape(error_type: str, message: str, stack: list[str] | None = None) -> ErrorShape:
    return {"errorType": error_type, "errorMessage": message, "stackTrace": stack or []}


_STDLIB_DIR = os.path.dirname(os.path.abspath(os.__file__)) + os.sep


def _is_runtime_frame(filename: str) -> bool:
    return filename.startswith((_RUNTIME_DIR, _STDLIB_DIR, "<frozen importlib"))


def from_exception(exc: BaseException) -> ErrorShape:
    """The shape of an exception raised by user code, its stack as Lambda lists it.

    The leading frames of the runtime, the thread pool and the import machinery are left out:
    they say nothing about the user's code.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    while frames and _is_runtime_frame(frames[0].filename):
        frames.pop(0)
    return shape(type(exc).__name__, str(exc), traceback.format_list(frames))


def init_error_line(error: ErrorShape) -> str:
    """The log line that reports an init error to the operator: the prefix, then one line of JSON
    (the stack left out, the message kept short enough for a condition)."""
    brief = {"errorType": error["errorType"], "errorMessage": error["errorMessage"][:2000]}
    return INIT_ERROR_LOG_PREFIX + json.dumps(brief, ensure_ascii=False) + "\n"


def timeout_message(budget_ms: float) -> str:
    """Lambda's wording, with the time the handler was given in seconds."""
    return f"Task timed out after {max(0.0, budget_ms) / 1000:.2f} seconds"


def init_timeout(budget_ms: int) -> ErrorShape:
    """The init error of a handler still loading when its init budget ran out."""
    return shape(
        INIT_TIMEOUT,
        f"Init timed out after {budget_ms / 1000:.2f} seconds: the handler's module was still "
        "loading. Make module-level code faster (load large things lazily) or raise the "
        "Function's initTimeout",
    )
