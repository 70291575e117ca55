"""The runtime's configuration, read once from the container environment.

The operator sets these variables (see ``runtime-images/CONTRACT.md``); every one has a default so
that the runtime can also be started by hand for local testing.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import time
from collections.abc import Mapping, MutableMapping

#: Largest synchronous request and response body, as Lambda's 6 MB limit (6 MiB).
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
#: After a 413, at most this much of the refused body is read and dropped before closing.
MAX_DISCARD_BYTES = 64 * 1024 * 1024
#: Largest request head (request line plus headers); bigger heads get 431.
MAX_HEAD_BYTES = 64 * 1024
#: Idle keep-alive connections are closed after this long. Callers' pools should idle out sooner.
IDLE_TIMEOUT_S = 65.0
#: On SIGTERM the runtime waits at most this long past the function timeout for answers to go out.
DRAIN_GRACE_MS = 2000


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of one runtime process."""

    host: str | None
    port: int
    handler: str
    task_root: str
    function_name: str
    function_version: str
    memory_mb: int
    timeout_ms: int
    #: How long loading the handler may take before it counts as an init error (§5b).
    init_timeout_ms: int
    concurrency: int
    region: str
    account_id: str
    log_stream_name: str
    #: After every slot has been held past its deadline for this long, liveness fails.
    stuck_grace_ms: int

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    @property
    def target_group_arn(self) -> str:
        """The ``alb`` event's target group: one per function, its id a placeholder."""
        return (
            f"arn:aws:elasticloadbalancing:{self.region}:{self.account_id}:"
            f"targetgroup/{self.function_name}/0000000000000000"
        )


def _int(env: Mapping[str, str], names: tuple[str, ...], default: int, minimum: int) -> int:
    for name in names:
        raw = env.get(name, "").strip()
        if raw:
            try:
                return max(minimum, int(raw))
            except ValueError:
                raise SystemExit(f"kfn runtime: {name}={raw!r} is not an integer") from None
    return default


def _str(env: Mapping[str, str], names: tuple[str, ...], default: str) -> str:
    for name in names:
        raw = env.get(name, "").strip()
        if raw:
            return raw
    return default


def from_env(env: Mapping[str, str], *, hostname: str, now: float) -> Config:
    """Reads the configuration; ``hostname`` and ``now`` name the log stream like Lambda's."""
    host = env.get("KFN_HOST", "").strip() or None
    version = _str(env, ("AWS_LAMBDA_FUNCTION_VERSION",), "$LATEST")
    day = time.strftime("%Y/%m/%d", time.gmtime(now))
    return Config(
        host=host,
        port=_int(env, ("KFN_PORT",), 8080, 0),
        handler=_str(env, ("KFN_HANDLER", "_HANDLER"), "lambda_function.lambda_handler"),
        task_root=_str(env, ("LAMBDA_TASK_ROOT",), "/var/task"),
        function_name=_str(env, ("KFN_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_NAME"), "function"),
        function_version=version,
        memory_mb=_int(env, ("KFN_MEMORY_MB", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), 128, 1),
        timeout_ms=_int(env, ("KFN_TIMEOUT_MS",), 3000, 1),
        init_timeout_ms=_int(env, ("KFN_INIT_TIMEOUT_MS",), 10000, 1),
        concurrency=_int(env, ("KFN_CONCURRENCY",), 1, 1),
        region=_str(env, ("AWS_REGION", "AWS_DEFAULT_REGION"), "local"),
        account_id=_str(env, ("KFN_ACCOUNT_ID",), "000000000000"),
        log_stream_name=f"{day}/[{version}]{hostname}",
        stuck_grace_ms=_int(env, ("KFN_STUCK_GRACE_MS",), 30000, 0),
    )


def load() -> Config:
    """The configuration of this process."""
    return from_env(os.environ, hostname=socket.gethostname(), now=time.time())


def export_lambda_environment(cfg: Config, env: MutableMapping[str, str]) -> None:
    """Fills in the variables Lambda sets for a function, where the operator did not.

    Handlers and SDKs read these (``AWS_LAMBDA_FUNCTION_NAME``, ``AWS_REGION`` ...), so they must
    be there before the handler module is imported.
    """
    defaults = {
        "AWS_LAMBDA_FUNCTION_NAME": cfg.function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(cfg.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": cfg.function_version,
        "AWS_LAMBDA_LOG_GROUP_NAME": cfg.log_group_name,
        "AWS_LAMBDA_LOG_STREAM_NAME": cfg.log_stream_name,
        "AWS_REGION": cfg.region,
        "AWS_DEFAULT_REGION": cfg.region,
        # The runtime the interpreter is: python3.13 on Python 3.13, as Lambda names it.
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info[0]}.{sys.version_info[1]}",
        "LAMBDA_TASK_ROOT": cfg.task_root,
        "LAMBDA_RUNTIME_DIR": "/opt/kfn/runtime",
        "_HANDLER": cfg.handler,
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
