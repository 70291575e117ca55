"""What every trigger worker process does alike: where it runs, who it is, its common
flags, logging, metrics and how it is told to stop."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import uuid
from collections.abc import Callable
from types import FrameType
from typing import Final

import prometheus_client

from kfn import logs
from kfn.authn import tokenfile
from kfn.triggers import invoke

_NAMESPACE_FILE: Final = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def own_namespace() -> str:
    """The namespace kfn runs in: ``KFN_NAMESPACE``, else the pod's own, else kfn-system."""
    configured = os.environ.get("KFN_NAMESPACE")
    if configured:
        return configured
    try:
        with open(_NAMESPACE_FILE) as file:
            return file.read().strip()
    except OSError:
        return "kfn-system"


def identity() -> str:
    """This replica's name in a Lease: the pod name, made unique per process start."""
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}_{uuid.uuid4().hex[:8]}"


def default_activator_url() -> str | None:
    """The activator's invoke door the chart names in ``KFN_INVOKE_URL`` (its release's own
    invoke Service)."""
    configured = os.environ.get("KFN_INVOKE_URL")
    return configured.rstrip("/") if configured else None


def deployment_name() -> str | None:
    """The worker's own Deployment (``KFN_DEPLOYMENT_NAME``, set by the chart): it owns the
    Leases the worker makes, so they go when kfn is uninstalled."""
    return os.environ.get("KFN_DEPLOYMENT_NAME") or None


def parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """The flags every worker takes: its namespace, the activator, the metrics endpoint."""
    namespace = own_namespace()
    result = argparse.ArgumentParser(prog=prog, description=description)
    result.add_argument("--namespace", default=namespace, help="Namespace of kfn (Leases).")
    activator = default_activator_url()
    result.add_argument(
        "--activator-url",
        default=activator,
        required=activator is None,
        help="Base URL of the activator's invoke door (default: KFN_INVOKE_URL).",
    )
    result.add_argument(
        "--invoke-token-file",
        default=os.environ.get("KFN_INVOKE_TOKEN_FILE", ""),
        help="A bearer token for the invoke door, re-read as it rotates (a projected "
        "ServiceAccount token for the audience kfn; default: KFN_INVOKE_TOKEN_FILE). "
        "Empty: none is sent.",
    )
    result.add_argument("--metrics-address", default="127.0.0.1")
    result.add_argument("--metrics-port", type=int, default=9090)
    return result


def token(args: argparse.Namespace) -> tokenfile.TokenFile | None:
    """The worker's bearer token for the invoke door, if the flags name one."""
    return tokenfile.TokenFile(args.invoke_token_file) if args.invoke_token_file else None


def invoker(args: argparse.Namespace) -> invoke.Invoker:
    """The client of the invoke door the flags name, with the worker's token if any."""
    return invoke.Invoker(args.activator_url, token(args))


def start(args: argparse.Namespace) -> None:
    """Logging in ``KFN_LOG_FORMAT`` at ``KFN_LOG_LEVEL`` and the Prometheus endpoint."""
    logs.configure(os.environ.get("KFN_LOG_FORMAT"), os.environ.get("KFN_LOG_LEVEL"))
    prometheus_client.start_http_server(args.metrics_port, args.metrics_address)


def on_stop(stop: Callable[[], None]) -> None:
    """Calls ``stop`` on SIGTERM (the kubelet stopping the pod) and SIGINT."""

    def handler(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
