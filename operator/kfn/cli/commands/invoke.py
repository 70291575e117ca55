"""``kubectl kfn invoke``: one synchronous invocation through the activator's invoke door."""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

from kfn.cli import cluster, door, errors, events, invoking, parser

_DESCRIPTION = """\
Invoke a function once, synchronously, as a Lambda client would, and print its result.

The result goes to stdout; the invocation's own log (its last 4 KB: START, what the handler
printed and logged, END, REPORT) to stderr, unless --log-type None. A function error (the
handler raised, timed out, could not be loaded) prints Lambda's errorType and errorMessage
and exits 1, as does a refused call.

The call goes to kfn's invoke door, the activator's invoke Service (found by its labels, or
--invoke-service): from outside the cluster through a port-forward to an activator pod that
the plugin opens itself (no kubectl needed), from inside a pod straight to the Service.

Who calls: the door takes a bearer token for the audience 'kfn' that RBAC lets "invoke" the
function. The plugin sends the kubeconfig's own token when it has one; otherwise, or when
the door does not take that token, or with --service-account, it asks the API server for a
10-minute token of a ServiceAccount of the namespace (TokenRequest; default: "default"),
which needs the right to create serviceaccounts/token. That ServiceAccount needs the
kfn-invoker ClusterRole:
  kubectl -n NAMESPACE create rolebinding default-invokes --clusterrole=kfn-invoker \\
      --serviceaccount=NAMESPACE:default
A refused call (403) says which RoleBinding to create."""

_EXAMPLES = """\
  # Invoke hello with {} and show its log
  kubectl kfn invoke hello

  # Send a payload, or a file, or one of the built-in test events
  kubectl kfn invoke hello -d '{"name": "kfn"}'

  # Invoke the alias live of hello (the answer names the version that ran with -v)
  kubectl kfn invoke hello:live --event apigw -v
  kubectl kfn invoke hello -f events/event.json
  kubectl kfn invoke thumbnails --event s3

  # Invoke as the ServiceAccount ci of the namespace team-a, without the log
  kubectl kfn invoke report -n team-a --service-account ci --log-type None"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "name",
        metavar="FUNCTION",
        help="the Function's name, or NAME:VERSION or NAME:ALIAS for one of its versions",
    )
    payload = p.add_mutually_exclusive_group()
    payload.add_argument("-d", "--data", metavar="JSON", help="the payload, JSON")
    payload.add_argument(
        "-f", "--filename", metavar="FILE", help="read the payload (JSON) from FILE; - for stdin"
    )
    payload.add_argument(
        "--event",
        metavar="EVENT",
        choices=events.NAMES,
        help=f"send a built-in test event: {', '.join(events.NAMES)} (kubectl kfn events)",
    )
    p.add_argument(
        "--log-type",
        choices=invoking.LOG_TYPES,
        default="Tail",
        metavar="TYPE",
        help="Tail (default): print the invocation's log on stderr; None: do not",
    )
    p.add_argument(
        "--qualifier",
        metavar="QUALIFIER",
        help="the version or alias to invoke, as NAME:QUALIFIER does (default: $LATEST)",
    )
    p.add_argument(
        "--service-account",
        metavar="NAME",
        help="invoke with a short-lived token of this ServiceAccount of the namespace "
        "(default: the kubeconfig's token, else the ServiceAccount default)",
    )
    p.add_argument(
        "--invoke-service",
        metavar="NAMESPACE/NAME",
        help="kfn's invoke Service (default: found by its labels)",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="say on stderr how the call went and how long it took",
    )


def _payload(args: argparse.Namespace) -> bytes:
    file_text = None
    if args.filename == "-":
        file_text = sys.stdin.read()
    elif args.filename:
        file_text = pathlib.Path(args.filename).read_text(encoding="utf-8")
    event = events.get(args.event) if args.event else None
    try:
        return invoking.payload_from(args.data, file_text, event)
    except ValueError as exc:
        raise errors.CliError(str(exc)) from None


def _token(kube: cluster.Cluster, choice: invoking.TokenChoice) -> str:
    if choice.source == "kubeconfig":
        return kube.bearer_token() or ""
    try:
        return kube.service_account_token(
            choice.namespace, choice.service_account, invoking.AUDIENCE, invoking.TOKEN_SECONDS
        )
    except cluster.ApiError as exc:
        sa = f"{choice.namespace}/{choice.service_account}"
        if exc.status == 404:
            raise errors.CliError(
                f"the ServiceAccount {sa} does not exist: create it (kubectl -n "
                f"{choice.namespace} create serviceaccount {choice.service_account}) or pass "
                "--service-account NAME"
            ) from None
        if exc.status == 403:
            raise errors.CliError(
                f"you may not request a token of the ServiceAccount {sa} ({exc}): invoking "
                "needs a token the invoke door takes; use a kubeconfig whose user may "
                "create serviceaccounts/token in the namespace, or one with a token for the "
                f"audience '{invoking.AUDIENCE}'"
            ) from None
        raise


def run(args: argparse.Namespace) -> int:
    payload = _payload(args)
    try:
        name, args.qualifier = invoking.split_qualifier(args.name, args.qualifier)
    except ValueError as exc:
        raise errors.CliError(str(exc)) from None
    kube = cluster.Cluster.connect(args)
    ns = kube.namespace
    found = door.Door.find(kube, args.invoke_service)
    choice = invoking.choose_token(kube.bearer_token(), args.service_account, ns)
    log_tail = args.log_type == "Tail"

    def send(
        choice: invoking.TokenChoice,
    ) -> tuple[invoking.Request, int, dict[str, str], bytes, float]:
        req = invoking.request(
            ns,
            name,
            payload,
            token=_token(kube, choice),
            log_tail=log_tail,
            qualifier=args.qualifier,
        )
        began = time.monotonic()
        status, headers, body = found.send(req)
        began += found.connect_seconds
        if invoking.lambda_api_off(req, status, {k.lower(): v for k, v in headers.items()}):
            if args.qualifier:
                raise errors.CliError(
                    "the invoke door does not serve Lambda's API (activator.lambdaApi.enabled "
                    "is false), which --qualifier needs"
                )
            print("(no log tail: the door does not serve Lambda's API)", file=sys.stderr)
            req = invoking.without_lambda_api(req)
            began = time.monotonic()
            status, headers, body = found.send(req)
            began += found.connect_seconds
        return req, status, headers, body, time.monotonic() - began

    req, status, headers, body, took = send(choice)
    retry = invoking.fallback_token(choice, status)
    if retry is not None:
        if args.verbose:
            print(
                f"the door refused {choice.describe()} (401); trying {retry.describe()}",
                file=sys.stderr,
            )
        choice = retry
        req, status, headers, body, took = send(choice)
    outcome = invoking.read(status, headers, body)
    if args.verbose:
        print(
            f"POST {req.path.split('?')[0]} via {found.where()} as {choice.describe()}: "
            f"{status} in {took * 1000:.1f} ms (request id {outcome.request_id}"
            + (f"; version {outcome.version}" if outcome.version else "")
            + "; the "
            f"connection took {found.connect_seconds * 1000:.1f} ms to open)",
            file=sys.stderr,
        )
    if outcome.refusal:
        role = found.invoker_role() if outcome.status == 403 else invoking.INVOKER_ROLE
        raise errors.CliError(invoking.explain(outcome, ns, name, choice, role))
    if outcome.log:
        sys.stderr.write(outcome.log if outcome.log.endswith("\n") else outcome.log + "\n")
        sys.stderr.flush()
    text = outcome.body.decode("utf-8", "replace")
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    sys.stdout.flush()
    if outcome.function_error:
        print(f"error: function error: {outcome.function_error}", file=sys.stderr)
        return 1
    return 0


COMMAND = parser.Command(
    name="invoke",
    summary="Invoke a function and print its result and log",
    description=_DESCRIPTION,
    examples=_EXAMPLES,
    add_arguments=add_arguments,
    run=run,
)
