"""The activator's inputs: per-function limits and routes, and a static config file.

A Kubernetes-facing layer fills these from Function and Trigger objects; the static
file serves local runs and the benchmark. File format (JSON)::

    {
      "functions": [
        {"namespace": "default", "name": "hello", "concurrency": 1,
         "timeout_ms": 3000, "queue_limit": 1000,
         "endpoints": ["127.0.0.1:8081"]}
      ],
      "routes": [
        {"host": "*", "path_prefix": "/hello", "methods": ["GET"],
         "function": "default/hello"}
      ]
    }
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

from kfn import stats
from kfn.activator import router


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionLimits:
    """What the activator enforces for one function."""

    concurrency: int = 1
    timeout_ms: int = 3000
    queue_limit: int = 1000

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.timeout_ms < 1 or self.queue_limit < 0:
            raise ValueError("concurrency and timeout_ms must be positive, queue_limit >= 0")


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


def parse(body: dict[str, Any]) -> StaticConfig:
    functions: dict[stats.FunctionKey, FunctionLimits] = {}
    endpoints: dict[stats.FunctionKey, frozenset[str]] = {}
    for item in body.get("functions", []):
        key = stats.FunctionKey(str(item["namespace"]), str(item["name"]))
        functions[key] = FunctionLimits(
            concurrency=int(item.get("concurrency", 1)),
            timeout_ms=int(item.get("timeout_ms", 3000)),
            queue_limit=int(item.get("queue_limit", 1000)),
        )
        endpoints[key] = frozenset(str(e) for e in item.get("endpoints", []))
    routes = tuple(
        router.Route(
            host=str(item.get("host", "*")),
            path_prefix=str(item.get("path_prefix", "/")),
            methods=frozenset(str(m) for m in item.get("methods", [])),
            function=parse_function_key(str(item["function"])),
        )
        for item in body.get("routes", [])
    )
    return StaticConfig(functions=functions, routes=routes, endpoints=endpoints)


def load(path: pathlib.Path) -> StaticConfig:
    return parse(json.loads(path.read_text()))
