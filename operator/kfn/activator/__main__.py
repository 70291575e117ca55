"""Run an activator: in a cluster (the default) or from a static config file.

In a cluster, functions and routes come from Function and Trigger objects
(:mod:`kfn.activator.catalog`) and ready endpoints from the function pods
(:mod:`kfn.activator.discovery`). With ``--config`` everything comes from a file
(see :mod:`kfn.activator.config`), for local runs and benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import pathlib
import re
import signal
import socket
import tempfile
from collections.abc import Sequence

import uvloop

from kfn import logs
from kfn.activator import (
    access,
    catalog,
    discovery,
    endpoints,
    event_jetstream,
    event_store,
    event_stream,
    forwarding,
    lambda_api,
    lambda_door,
    lambda_keys,
    pools,
    reviews,
    server,
    stats_reporter,
    trusted_pods,
)
from kfn.activator import bounds as limits
from kfn.activator import config as configs
from kfn.api import routes, trigger, web
from kfn.authn import tokenfile

#: How long a starting activator waits for its first list of Functions and Triggers
#: before it serves anyway (answering 404 for functions it does not know yet).
SYNC_TIMEOUT = 30.0


def _event_store(args: argparse.Namespace) -> event_store.Store:
    """The store of accepted ``Event`` invocations the flags ask for."""
    if args.events_store == "memory":
        return event_store.MemoryStore(args.events_capacity)
    servers = tuple(url.strip() for url in args.events_nats_url.split(",") if url.strip())
    if not servers:
        raise SystemExit("--events-store=jetstream needs --events-nats-url")
    if args.events_nats_credentials:
        options = event_stream.read_credentials(pathlib.Path(args.events_nats_credentials))
    else:
        options = event_stream.credentials(
            {
                key: os.environ[variable].encode()
                for key, variable in (
                    ("token", "KFN_EVENTS_NATS_TOKEN"),
                    ("username", "KFN_EVENTS_NATS_USER"),
                    ("password", "KFN_EVENTS_NATS_PASSWORD"),
                )
                if os.environ.get(variable)
            }
        )
    return event_jetstream.JetStreamStore(
        event_stream.Settings(
            servers=servers,
            stream=args.events_stream,
            max_bytes=args.events_max_bytes,
            # Enough of one function's events ahead to keep its deliveries busy.
            lane_window=4 * args.events_workers_per_function,
            options=options,
        )
    )


def _checks(args: argparse.Namespace) -> access.Access | None:
    """Who may invoke, as the flags ask: RBAC through the API server, or anyone."""
    if args.invoke_auth is None:
        # A door of its own is checked unless told otherwise; one shared door never is.
        args.invoke_auth = "rbac" if args.invoke_port else "none"
    if args.invoke_auth == "none":
        return None
    if not args.invoke_port:
        raise SystemExit("--invoke-auth=rbac needs --invoke-port (a door of its own)")
    loop = asyncio.get_running_loop()
    audiences = [a.strip() for a in args.invoke_audiences.split(",") if a.strip()]
    api = reviews.ApiServerReviews(audiences, loop_clock=loop.time)
    return access.Access(
        api.review_token,
        api.review_access,
        clock=loop.time,
        allowed_ttl=args.invoke_auth_ttl,
    )


def _lambda_service(
    args: argparse.Namespace, cluster: catalog.KubeCatalog | None
) -> lambda_door.LambdaApi | None:
    """AWS Lambda's API on the invoke door, unless turned off: access keys watched in the
    cluster (each namespace's kfn-lambda-access-keys Secret), none with --config; RBAC asked
    as the invoke API asks it (after :func:`_checks`)."""
    if args.lambda_api == "off":
        return None
    keys: lambda_door.Keys = lambda_keys.StaticKeys(())
    if cluster is not None:
        watched = lambda_keys.AccessKeys()
        watched.start()
        keys = watched
    review = None
    if args.invoke_auth == "rbac":
        review = reviews.ApiServerReviews(loop_clock=asyncio.get_running_loop().time).review
    return lambda_door.LambdaApi(
        keys=keys,
        review=review,
        describe=cluster.describe if cluster is not None else None,
        region=args.lambda_region,
        account=args.lambda_account,
    )


def _specialiser(
    args: argparse.Namespace, cluster: catalog.KubeCatalog, source: discovery.KubeEndpointSource
) -> pools.Specialiser:
    """The warm pools' specialiser, pulling from the chart's registry (its CA from
    ``KFN_REGISTRY_CA_PEM``, written to a file the TLS context reads)."""
    ca_file = None
    pem = os.environ.get("KFN_REGISTRY_CA_PEM", "")
    if pem.strip():
        with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as out:
            out.write(pem)
        ca_file = out.name
    return pools.Specialiser(
        function_of=cluster.function,
        pool_of=pools.pool_of,
        adopt=source.adopt,
        drop=source.drop,
        registry=pools.Registry(
            host=args.registry_host,
            plain_http=args.registry_plain_http,
            ca_file=ca_file,
            secret_name=args.registry_secret_name,
        ),
        cache_bytes=args.pool_blob_cache_bytes,
    )


async def _main(args: argparse.Namespace) -> None:
    token = tokenfile.TokenFile(args.autoscaler_token_file) if args.autoscaler_token_file else None
    sink = (
        stats_reporter.HttpStatsSink(args.autoscaler_url, token=token)
        if args.autoscaler_url
        else None
    )
    bounds = limits.Bounds(
        max_url_bytes=args.max_url_bytes,
        max_head_bytes=args.max_header_bytes,
        head_timeout=args.head_timeout,
        idle_timeout=args.idle_timeout,
        max_connections=args.max_connections,
        max_buffered_bytes=args.max_buffered_bytes,
    )
    store = _event_store(args)
    cluster: catalog.KubeCatalog | None = None
    source: endpoints.EndpointSource
    if args.config:
        static = configs.load(pathlib.Path(args.config))
        activator = server.Activator(
            routes=static.routes,
            functions=static.functions,
            activator_id=args.id,
            stats_sink=sink,
            bounds=bounds,
            event_store=store,
            event_workers=args.events_workers,
            event_workers_per_function=args.events_workers_per_function,
            trusted_networks=args.trusted_proxy_cidrs,
        )
        source = endpoints.StaticEndpointSource(static.endpoints)
    else:
        activator = server.Activator(
            activator_id=args.id,
            stats_sink=sink,
            bounds=bounds,
            event_store=store,
            event_workers=args.events_workers,
            event_workers_per_function=args.events_workers_per_function,
            trusted_networks=args.trusted_proxy_cidrs,
        )
        cluster = catalog.KubeCatalog(
            activator.set_functions,
            activator.set_routes,
            host_policy=args.host_policy,
            queue_limit=args.queue_limit,
            queue_timeout_ms=round(args.queue_timeout * 1000),
            max_timeout_ms=round(args.max_function_timeout * 1000),
            urls=args.function_urls,
            set_qualifiers=activator.set_qualifiers,
        )
        watching = asyncio.get_running_loop().create_task(cluster.run())
        try:
            async with asyncio.timeout(SYNC_TIMEOUT):
                await cluster.synced.wait()
        except TimeoutError:
            logging.warning(
                "no complete list of Functions, FunctionVersions and Triggers yet; serving anyway"
            )
        activator.keep(watching)
        if args.trusted_proxy_pods is not None:
            proxies = trusted_pods.TrustedPods(args.trusted_proxy_pods, activator.set_trusted_pods)
            activator.keep(asyncio.get_running_loop().create_task(proxies.run()))
        source = discovery.KubeEndpointSource(
            probe_interval=args.probe_interval, pods=activator.pods
        )
        activator.ctx.exits = source.exits
        if args.warm_pools == "on":
            activator.specialiser = _specialiser(args, cluster, source)
            activator.keep(asyncio.get_running_loop().create_task(activator.specialiser.run()))
    checks = _checks(args)
    activator.ctx.lambda_service = _lambda_service(args, cluster)
    await activator.start(
        args.host,
        args.port,
        invoke_port=args.invoke_port or None,
        checks=checks,
        metrics_port=args.metrics_port,
        endpoint_source=source,
    )
    logging.info(
        "activator %s serving routes on %s:%d, the invoke API on %s (auth: %s)",
        args.id,
        args.host,
        args.port,
        f"port {args.invoke_port}" if args.invoke_port else "the same port",
        args.invoke_auth,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    logging.info("draining")
    await activator.shutdown(args.drain_timeout)


def _function_urls(domain: str, template: str) -> catalog.FunctionUrls:
    """The Function URL flags, checked: ValueError says what is wrong. Beyond
    :func:`kfn.api.web.check_host_template`, the template must make a DNS name (its braces
    balanced, its literal text labels)."""
    web.check_host_template(template)
    if domain and (re.fullmatch(trigger.HOST_PATTERN, domain) is None or len(domain) > 253):
        raise ValueError(
            f"--function-url-domain: {domain!r} is not a lower-case DNS name such as fn.example.com"
        )
    try:
        host = web.url_host(template, function="f", namespace="n", domain=domain or "example.com")
    except (ValueError, IndexError, KeyError) as exc:
        raise ValueError(
            f"the Function URL host template {template!r} is malformed: {exc}"
        ) from None
    if host is None:
        raise ValueError(
            f"the Function URL host template {template!r} does not make DNS names (a host is "
            "lower-case labels of letters, digits and '-', joined by '.')"
        )
    return catalog.FunctionUrls(domain, template)


def _edge_flags(parser: argparse.ArgumentParser) -> None:
    """The flags for requests from the cluster's edge: Function URLs, and whom to believe
    about the client."""
    urls = parser.add_argument_group(
        "Function URLs", "where Functions with spec.url are served (see kfn.api.web)"
    )
    urls.add_argument(
        "--function-url-domain",
        default=os.environ.get("KFN_FUNCTION_URL_DOMAIN", ""),
        help="the domain Function URLs are hosts under (e.g. fn.example.com); empty: "
        "Function URLs are not served (cluster mode)",
    )
    urls.add_argument(
        "--function-url-host-template",
        default=os.environ.get("KFN_FUNCTION_URL_HOST_TEMPLATE") or web.DEFAULT_HOST_TEMPLATE,
        help="a Function URL's host, from {function}, {namespace} and {domain} (default "
        f"{web.DEFAULT_HOST_TEMPLATE}); the operator must be given the same",
    )
    forwarded = parser.add_argument_group(
        "client address",
        "whose X-Forwarded-For and Forwarded headers name the client (see "
        "kfn.activator.forwarding); everyone else is the client",
    )
    forwarded.add_argument(
        "--trusted-proxy-cidrs",
        default=os.environ.get("KFN_TRUSTED_PROXY_CIDRS", ""),
        help="comma-separated networks or addresses of trusted proxies (e.g. 10.0.0.0/8)",
    )
    forwarded.add_argument(
        "--trusted-proxy-pods",
        default=os.environ.get("KFN_TRUSTED_PROXY_PODS", ""),
        metavar="NAMESPACE:LABEL_SELECTOR",
        help="trust the current IPs of these pods (the Gateway's Envoy pods), watched in "
        "NAMESPACE (needs list and watch on pods there; cluster mode)",
    )


def _lambda_flags(parser: argparse.ArgumentParser) -> None:
    """AWS Lambda's API on the invoke door (:mod:`kfn.activator.lambda_door`)."""
    parser.add_argument(
        "--lambda-api",
        choices=("on", "off"),
        default=os.environ.get("KFN_LAMBDA_API", "on"),
        help="serve AWS Lambda's API (/2015-03-31/...) on the invoke door, SigV4-signed with "
        "a namespace's kfn-lambda-access-keys or with a bearer token",
    )
    parser.add_argument(
        "--lambda-region",
        default=os.environ.get("KFN_LAMBDA_REGION", lambda_api.DEFAULT_REGION),
        help="the region in the ARNs the Lambda API answers when a request names none "
        "(a signed request's own region is used)",
    )
    parser.add_argument(
        "--lambda-account",
        default=os.environ.get("KFN_LAMBDA_ACCOUNT", lambda_api.DEFAULT_ACCOUNT),
        help="the account id in the ARNs the Lambda API answers (chooses nothing)",
    )


def _pool_flags(parser: argparse.ArgumentParser) -> None:
    """Warm pools (:mod:`kfn.activator.pools`): where function images are pulled from."""
    parser.add_argument(
        "--warm-pools",
        choices=("on", "off"),
        default=os.environ.get("KFN_WARM_POOLS", "off"),
        help="serve functions at zero from the warm pools of the namespaces that opted in "
        "(docs/warm-pools.md)",
    )
    parser.add_argument(
        "--registry-host",
        default=os.environ.get("KFN_IMAGE_REGISTRY", ""),
        help="the registry function images are built into (host[:port])",
    )
    parser.add_argument(
        "--registry-plain-http",
        action="store_true",
        default=os.environ.get("KFN_REGISTRY_PLAIN_HTTP", "false") == "true",
        help="talk to the registry over plain HTTP",
    )
    parser.add_argument(
        "--registry-secret-name",
        default=os.environ.get("KFN_REGISTRY_SECRET_NAME", "kfn-registry"),
        help="each namespace's dockerconfigjson Secret with its registry credential",
    )
    parser.add_argument(
        "--pool-blob-cache-bytes",
        type=int,
        default=int(os.environ.get("KFN_POOL_BLOB_CACHE_BYTES", str(256 << 20))),
        help="bytes of image layers kept to specialise pool pods",
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The flags, checked: a malformed one stops the activator (exit 2) saying what is wrong."""
    parser = argparse.ArgumentParser(prog="python -m kfn.activator")
    parser.add_argument(
        "--config", default="", help="static config (JSON); without it, read the cluster"
    )
    parser.add_argument(
        "--queue-limit",
        type=int,
        default=int(os.environ.get("KFN_QUEUE_LIMIT", "1000")),
        help="requests one function may have waiting in this activator (cluster mode)",
    )
    parser.add_argument(
        "--queue-timeout",
        type=float,
        default=float(os.environ.get("KFN_QUEUE_TIMEOUT", configs.DEFAULT_QUEUE_TIMEOUT_MS / 1000)),
        help="seconds a request may wait for a pod, for Functions without spec.queueTimeout "
        "(raised to their initTimeout + 5 s); then 429 (cluster mode)",
    )
    defaults = limits.Bounds()
    bounded = parser.add_argument_group(
        "bounds", "what clients may make the activator hold (see kfn.activator.bounds)"
    )
    bounded.add_argument(
        "--max-url-bytes",
        type=int,
        default=int(os.environ.get("KFN_MAX_URL_BYTES", defaults.max_url_bytes)),
        help="longest request URL; longer ones are answered 414",
    )
    bounded.add_argument(
        "--max-header-bytes",
        type=int,
        default=int(os.environ.get("KFN_MAX_HEADER_BYTES", defaults.max_head_bytes)),
        help="largest request line and headers together; larger are answered 431",
    )
    bounded.add_argument(
        "--head-timeout",
        type=float,
        default=float(os.environ.get("KFN_HEAD_TIMEOUT", defaults.head_timeout)),
        help="seconds a client has to send a whole request head; then 408",
    )
    bounded.add_argument(
        "--idle-timeout",
        type=float,
        default=float(os.environ.get("KFN_IDLE_TIMEOUT", defaults.idle_timeout)),
        help="seconds a keep-alive connection may sit between requests before it is closed",
    )
    bounded.add_argument(
        "--max-connections",
        type=int,
        default=int(os.environ.get("KFN_MAX_CONNECTIONS", defaults.max_connections)),
        help="client connections open at once; more are answered 503",
    )
    bounded.add_argument(
        "--max-buffered-bytes",
        type=int,
        default=int(os.environ.get("KFN_MAX_BUFFERED_BYTES", defaults.max_buffered_bytes)),
        help="request bytes held for waiting requests, all functions together; then 503",
    )
    evented = parser.add_argument_group(
        "events",
        "where Event invocations wait and how they are delivered (see kfn.activator.event_store)",
    )
    evented.add_argument(
        "--events-store",
        choices=("memory", "jetstream"),
        default=os.environ.get("KFN_EVENTS_STORE", "memory"),
        help="memory: in this process, lost if it dies (at most once); jetstream: in a NATS "
        "JetStream stream, acknowledged once stored (at least once)",
    )
    evented.add_argument(
        "--events-capacity",
        type=int,
        default=int(os.environ.get("KFN_EVENTS_CAPACITY", "10000")),
        help="events one activator holds in memory (memory store); then 429",
    )
    evented.add_argument(
        "--events-nats-url",
        default=os.environ.get("KFN_EVENTS_NATS_URL", ""),
        help="NATS server URLs, comma-separated (jetstream store)",
    )
    evented.add_argument(
        "--events-nats-credentials",
        default=os.environ.get("KFN_EVENTS_NATS_CREDENTIALS", ""),
        help="a directory holding 'token', or 'username' and 'password' (a mounted "
        "Secret); without it KFN_EVENTS_NATS_TOKEN or KFN_EVENTS_NATS_USER and "
        "KFN_EVENTS_NATS_PASSWORD are used if set",
    )
    evented.add_argument(
        "--events-stream",
        default=os.environ.get("KFN_EVENTS_STREAM", event_stream.STREAM),
        help="the JetStream stream, created or updated at start",
    )
    evented.add_argument(
        "--events-max-bytes",
        type=int,
        default=int(os.environ.get("KFN_EVENTS_MAX_BYTES", event_stream.MAX_BYTES)),
        help="bytes the stream may hold; past it new events are answered 429",
    )
    evented.add_argument(
        "--events-workers",
        type=int,
        default=int(os.environ.get("KFN_EVENTS_WORKERS", "64")),
        help="events one activator delivers at once, all functions together",
    )
    evented.add_argument(
        "--events-workers-per-function",
        type=int,
        default=int(os.environ.get("KFN_EVENTS_WORKERS_PER_FUNCTION", "16")),
        help="events of one function one activator delivers at once, so that a slow or "
        "cold function leaves workers to the others",
    )
    parser.add_argument(
        "--host-policy",
        default=os.environ.get("KFN_HOST_POLICY", ""),
        help='JSON: {"hostAssignments": {"namespace": ["host", "*.domain"]}, "defaultHosts": '
        '["host"]}: hosts only the namespaces they are assigned to may serve, and names of the '
        "shared default host no Trigger may claim (see kfn.api.routes; cluster mode)",
    )
    parser.add_argument(
        "--probe-interval",
        type=float,
        default=0.02,
        help="seconds between the activator's own readiness probes of a starting pod",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="the public door: HTTP routes")
    parser.add_argument(
        "--invoke-port",
        type=int,
        default=0,
        help="the invoke door: the invoke API on a port of its own (0: on --port, unchecked)",
    )
    parser.add_argument(
        "--invoke-auth",
        choices=("rbac", "none"),
        default=os.environ.get("KFN_INVOKE_AUTH") or None,
        help="rbac (the default with --invoke-port): a bearer token reviewed by the API "
        "server, authorised for 'invoke' on functions.kfn.dev; none: anyone who reaches the "
        "invoke door (the default without --invoke-port)",
    )
    parser.add_argument(
        "--invoke-audiences",
        default=os.environ.get("KFN_INVOKE_AUDIENCES", access.AUDIENCE),
        help="token audiences accepted, comma-separated",
    )
    parser.add_argument(
        "--invoke-auth-ttl",
        type=float,
        default=access.ALLOWED_TTL,
        help="seconds an allowed decision is kept (a removed binding revokes within it)",
    )
    _lambda_flags(parser)
    parser.add_argument("--metrics-port", type=int, default=9090)
    parser.add_argument(
        "--autoscaler-url",
        default=os.environ.get("KFN_AUTOSCALER_URL", ""),
        help="e.g. http://127.0.0.1:8090/stats",
    )
    parser.add_argument(
        "--autoscaler-token-file",
        default=os.environ.get("KFN_AUTOSCALER_TOKEN_FILE", ""),
        help="a projected ServiceAccount token for the audience kfn-stats, sent with every "
        "stats message and read again as the kubelet rotates it (empty: none is sent)",
    )
    parser.add_argument("--id", default=os.environ.get("POD_NAME", socket.gethostname()))
    parser.add_argument(
        "--max-function-timeout",
        type=float,
        default=catalog.MAX_TIMEOUT_MS / 1000,
        help="seconds: the longest timeout a Function may have here (the chart's "
        "functions.maxTimeoutSeconds); a longer one is held to it (cluster mode)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=catalog.MAX_TIMEOUT_MS / 1000 + limits.Bounds().head_timeout + 5,
        help="seconds a stopping activator serves the requests it accepted; at least the "
        "longest function timeout plus the head timeout, so that no request is cut",
    )
    _edge_flags(parser)
    _pool_flags(parser)
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    try:
        args.host_policy = routes.policy_from_json(args.host_policy)
        args.trusted_proxy_cidrs = forwarding.parse_cidrs(args.trusted_proxy_cidrs)
        args.trusted_proxy_pods = forwarding.parse_pod_selector(args.trusted_proxy_pods)
        args.function_urls = _function_urls(
            args.function_url_domain.strip(), args.function_url_host_template
        )
    except ValueError as exc:
        parser.error(str(exc))
    if args.config and args.trusted_proxy_pods is not None:
        parser.error(
            "--trusted-proxy-pods watches the cluster: it needs cluster mode (no --config)"
        )
    return args


def main() -> None:
    args = parse_args()
    logs.configure(os.environ.get("KFN_LOG_FORMAT"), os.environ.get("KFN_LOG_LEVEL"))
    if args.no_uvloop:
        asyncio.run(_main(args))
    else:
        uvloop.run(_main(args))


if __name__ == "__main__":
    main()
