"""The activator's inputs: per-function limits and routes, and a static config file.

A Kubernetes-facing layer fills these from Function and Trigger objects; the static
file serves local runs and the benchmark. File format (JSON)::

    {
      "functions": [
        {"namespace": "default", "name": "hello", "concurrency": 1,
         "timeout_ms": 3000, "queue_limit": 1000, "queue_timeout_ms": 15000,
         "endpoints": ["127.0.0.1:8081"]}
      ],
      "routes": [
        {"host": "*", "path_prefix": "/hello", "methods": ["GET"],
         "function": "default/hello", "auth": "None",
         "cors": {"allowOrigins": ["http://localhost:3000"], "allowMethods": ["GET"]}}
      ]
    }

A route's ``auth`` is a Trigger's: ``None`` (the default) or ``ServiceAccountToken``; its
optional ``cors`` a Trigger's ``cors`` (:class:`kfn.api.web.Cors`); its optional
``payload_format`` (``2.0``, ``1.0`` or ``alb``) and ``strip_prefix`` a Trigger's
``payloadFormat`` and ``stripPrefix``.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

from kfn import stats
from kfn.activator import router
from kfn.api import web

#: How long a request may wait for a pod when neither the Function nor the activator's flag says
#: (15 s). A cold start through the activator takes 0.9 s at p50 and 1.0 s at p99, and the bare
#: pod start it stands on up to 2.0 s at p99 (docs/benchmarks.md); a scale-up adds a stats
#: period (1 s) before the autoscaler acts. The rest leaves room for a handler's init of up to
#: Lambda's 10 s init budget, so that a function at zero whose init is slow but allowed answers
#: (or reports its init error) instead of throttling its first callers.
DEFAULT_QUEUE_TIMEOUT_MS = 15_000


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionLimits:
    """What the activator enforces for one function."""

    concurrency: int = 1
    timeout_ms: int = 3000
    queue_limit: int = 1000
    #: How long a request may wait for a pod before it is answered 429 (see ``waiting``).
    queue_timeout_ms: int = DEFAULT_QUEUE_TIMEOUT_MS

    def __post_init__(self) -> None:
        if (
            self.concurrency < 1
            or self.timeout_ms < 1
            or self.queue_limit < 0
            or self.queue_timeout_ms < 0
        ):
            raise ValueError(
                "concurrency and timeout_ms must be positive, queue_limit and queue_timeout_ms >= 0"
            )


@dataclasses.dataclass(frozen=True, slots=True)
class StaticConfig:
    functions: dict[stats.FunctionKey, FunctionLimits]
    routes: tuple[router.Route, ...]
    endpoints: dict[stats.FunctionKey, frozenset[str]]


def parse_function_key(text: str) -> stats.FunctionKey:
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name:
        raise ValueError(f"a function is 'namespace/name', got {text!r}")
    return stats.FunctionKey(namespace, name)


def parse_auth(text: str) -> bool:
    """Whether a route's ``auth`` asks for a checked token."""
    if text not in ("None", "ServiceAccountToken"):
        raise ValueError(f"a route's auth is None or ServiceAccountToken, got {text!r}")
    return text == "ServiceAccountToken"


def parse_payload_format(text: str) -> str:
    """A route's payload format: what the runtime contract's ``Kfn-Payload-Format`` names."""
    if text not in ("2.0", "1.0", "alb"):
        raise ValueError(f"a route's payload_format is 2.0, 1.0 or alb, got {text!r}")
    return text


def parse(body: dict[str, Any]) -> StaticConfig:
    functions: dict[stats.FunctionKey, FunctionLimits] = {}
    endpoints: dict[stats.FunctionKey, frozenset[str]] = {}
    for item in body.get("functions", []):
        key = stats.FunctionKey(str(item["namespace"]), str(item["name"]))
        functions[key] = FunctionLimits(
            concurrency=int(item.get("concurrency", 1)),
            timeout_ms=int(item.get("timeout_ms", 3000)),
            queue_limit=int(item.get("queue_limit", 1000)),
            queue_timeout_ms=int(item.get("queue_timeout_ms", DEFAULT_QUEUE_TIMEOUT_MS)),
        )
        endpoints[key] = frozenset(str(e) for e in item.get("endpoints", []))
    routes = tuple(
        router.Route(
            host=str(item.get("host", "*")),
            path_prefix=str(item.get("path_prefix", "/")),
            methods=frozenset(str(m) for m in item.get("methods", [])),
            function=parse_function_key(str(item["function"])),
            checked=parse_auth(str(item.get("auth", "None"))),
            cors=web.CorsPolicy.of(web.Cors.model_validate(item["cors"]))
            if "cors" in item
            else None,
            payload_format=parse_payload_format(str(item.get("payload_format", "2.0"))),
            strip_prefix=bool(item.get("strip_prefix", False)),
        )
        for item in body.get("routes", [])
    )
    return StaticConfig(functions=functions, routes=routes, endpoints=endpoints)


def load(path: pathlib.Path) -> StaticConfig:
    return parse(json.loads(path.read_text()))
