"""The ``context`` argument handlers receive, with the attributes of Lambda's Python context."""

from __future__ import annotations

import base64
import binascii
import json
import sys
import time
from collections.abc import Callable
from typing import Any


class Client:
    """The mobile client application (``context.client_context.client``), as Lambda models it."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.installation_id: Any = fields.get("installation_id")
        self.app_title: Any = fields.get("app_title")
        self.app_version_name: Any = fields.get("app_version_name")
        self.app_version_code: Any = fields.get("app_version_code")
        self.app_package_name: Any = fields.get("app_package_name")


class ClientContext:
    """Client context a caller passed along (base64 JSON in ``Kfn-Client-Context``)."""

    def __init__(self, fields: dict[str, Any]) -> None:
        client = fields.get("client")
        self.client: Client | None = Client(client) if isinstance(client, dict) else None
        self.custom: Any = fields.get("custom")
        self.env: Any = fields.get("env")


class CognitoIdentity:
    """Always empty here: there is no Cognito, but handlers read the attributes."""

    cognito_identity_id: str | None = None
    cognito_identity_pool_id: str | None = None


def parse_client_context(header: str | None) -> ClientContext | None:
    """Decodes the optional base64 JSON header; a malformed one is ignored, as it is optional."""
    if not header:
        return None
    try:
        fields = json.loads(base64.b64decode(header, validate=True))
    except (binascii.Error, ValueError):
        return None
    return ClientContext(fields) if isinstance(fields, dict) else None


class LambdaContext:
    """Per-invocation metadata; ``get_remaining_time_in_millis`` counts down to the deadline."""

    def __init__(
        self,
        *,
        aws_request_id: str,
        deadline_ms: int,
        function_name: str,
        function_version: str,
        invoked_function_arn: str,
        memory_limit_in_mb: int,
        log_group_name: str,
        log_stream_name: str,
        invocation_type: str = "RequestResponse",
        client_context: ClientContext | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.aws_request_id = aws_request_id
        self.function_name = function_name
        self.function_version = function_version
        self.invoked_function_arn = invoked_function_arn
        # Lambda hands this over as a string; handlers that do int(...) on it work either way.
        self.memory_limit_in_mb = str(memory_limit_in_mb)
        self.log_group_name = log_group_name
        self.log_stream_name = log_stream_name
        self.identity = CognitoIdentity()
        self.client_context = client_context
        self.invocation_type = invocation_type
        self.tenant_id: str | None = None
        self._deadline_ms = deadline_ms
        self._clock = clock

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(self._clock() * 1000))

    def log(self, message: str) -> None:
        """Writes to the function's log, like ``print`` without a newline."""
        sys.stdout.write(message)

    def __repr__(self) -> str:
        return (
            f"LambdaContext(aws_request_id={self.aws_request_id!r}, "
            f"function_name={self.function_name!r}, "
            f"remaining_ms={self.get_remaining_time_in_millis()})"
        )
