"""``kubectl kfn logs``: a function's log, every pod's, each line with its pod and request id."""

from __future__ import annotations

import argparse
import datetime
import sys
import threading
import time
from typing import Final

from kfn.api import kept_logs
from kfn.cli import cluster, errors, logview, parser

_DESCRIPTION = """\
Print the log of a function's pods, each line prefixed with its pod and, when the line
carries one, the Lambda request id of the invocation that wrote it:
  [hello-7c9d8-x2k4q] [8f5017ac-4a1e-4bd8-9c1e-5b8a3c36a1f0] START RequestId: 8f5017ac-...

The lines of several pods are merged in time order. The pods of a function scaled to zero
are gone, but kfn keeps the last lines (200, up to 32 KiB) of each of its last 10 pods
when they go, in the ConfigMap kfn-logs.<function>: those are printed too, under the
departed pod's name (unless the installation turned that off with functions.keepLogs; ship
pods' logs with a log collector to keep more).

With -f the command follows: it watches for the function's pods and follows each one as it
starts (a scale from zero included, from its first line), and keeps printing the others as
they stop. Lines printed stay printed when their pod goes."""

_EXAMPLES = """\
  # The last 20 lines of each pod of hello
  kubectl kfn logs hello --tail 20

  # Follow hello's log, through scaling from and to zero (Ctrl-C to stop)
  kubectl kfn logs hello -f

  # The last 10 minutes
  kubectl kfn logs hello --since 10m"""

CONTAINER: Final = "function"
POLL_SECONDS: Final = 1.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="FUNCTION", help="the Function's name")
    p.add_argument(
        "-f", "--follow", action="store_true", help="follow the log, and pods as they come and go"
    )
    p.add_argument(
        "--since",
        metavar="DURATION",
        help="only lines newer than this (5s, 2m, 1h) in the pods running when it starts",
    )
    p.add_argument(
        "--tail",
        metavar="N",
        type=int,
        default=None,
        help="only the last N lines of each pod running when it starts (default: all)",
    )


def selector(name: str) -> str:
    """The function's serving pods, of $LATEST and of its versions (its build pods carry its
    name too, not these components)."""
    return f"kfn.dev/function={name},app.kubernetes.io/component in (function,function-version)"


def _kept(
    kube: cluster.Cluster, name: str, live: list[str], tail: int | None, since: int | None
) -> dict[str, list[str]]:
    """The last lines kfn kept of the function's pods that went."""
    found = kube.get(
        cluster.path("v1", "ConfigMap", kube.namespace, kept_logs.config_map_name(name))
    )
    if not found:
        return {}
    newer_than = ""
    if since is not None:
        moment = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=since)
        newer_than = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return logview.kept_lines(found.get("data") or {}, live, tail=tail, newer_than=newer_than)


class _Printer:
    """Prints whole lines from several threads, one at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def line(self, pod: str, text: str) -> None:
        with self.lock:
            sys.stdout.write(logview.prefixed(pod, text) + "\n")
            sys.stdout.flush()

    def note(self, text: str) -> None:
        with self.lock:
            print(text, file=sys.stderr, flush=True)


def _pods(kube: cluster.Cluster, name: str) -> list[dict[str, object]]:
    return kube.list(cluster.path("v1", "Pod", kube.namespace), labels=selector(name))


def _print_once(kube: cluster.Cluster, name: str, tail: int | None, since: int | None) -> int:
    pods = _pods(kube, name)
    names = logview.new_pods((), pods)
    by_pod: dict[str, list[str]] = _kept(kube, name, logview.pod_names(pods), tail, since)
    if not names:
        print(
            f"function {name} has no pods in namespace {kube.namespace} (scaled to zero?)"
            + (": the last lines its pods left follow" if by_pod else "; -f waits for the next"),
            file=sys.stderr,
        )
    for pod in names:
        try:
            by_pod[pod] = list(
                kube.log_lines(
                    kube.namespace, pod, CONTAINER, tail=tail, since_seconds=since, timestamps=True
                )
            )
        except cluster.ApiError as exc:
            if exc.status not in (400, 404):  # the pod went, or its container never started
                raise
    for pod, line in logview.merged(by_pod):
        sys.stdout.write(logview.prefixed(pod, line) + "\n")
    return 0


def _follow(kube: cluster.Cluster, name: str, tail: int | None, since: int | None) -> int:
    out = _Printer()
    following: dict[str, threading.Thread] = {}
    first = True

    def follow(pod: str, limit_tail: int | None, limit_since: int | None) -> None:
        try:
            for line in kube.log_lines(
                kube.namespace,
                pod,
                CONTAINER,
                follow=True,
                tail=limit_tail,
                since_seconds=limit_since,
            ):
                out.line(pod, line)
        except errors.CliError as exc:
            out.note(f"--- {pod}: the log could not be read: {exc}")
            return
        out.note(f"--- {pod}: its log ended (the pod stopped)")

    try:
        listed = logview.pod_names(_pods(kube, name))
        for pod, line in logview.merged(_kept(kube, name, listed, tail, since)):
            out.line(pod, line)
    except errors.CliError as exc:
        out.note(f"--- the kept lines of departed pods could not be read: {exc}")
    while True:
        try:
            pods = _pods(kube, name)
        except errors.CliError as exc:  # the API server away for a moment: ask again
            out.note(f"--- the pods could not be listed ({exc}); trying again")
            time.sleep(POLL_SECONDS * 5)
            continue
        for pod in logview.new_pods(following, pods):
            # Pods running when we start honour --tail and --since; later ones are read from
            # their first line, so a cold start's first invocation is not missed.
            thread = threading.Thread(
                target=follow,
                args=(pod, tail if first else None, since if first else None),
                name=f"log {pod}",
                daemon=True,
            )
            following[pod] = thread
            out.note(f"--- {pod}: following")
            thread.start()
        first = False
        time.sleep(POLL_SECONDS)


def run(args: argparse.Namespace) -> int:
    since = None
    if args.since:
        try:
            since = logview.parse_duration(args.since)
        except ValueError as exc:
            raise errors.CliError(f"--since: {exc}") from None
    if args.tail is not None and args.tail < 0:
        args.tail = None
    kube = cluster.Cluster.connect(args)
    kube.function(args.name)
    if args.follow:
        return _follow(kube, args.name, args.tail, since)
    return _print_once(kube, args.name, args.tail, since)


COMMAND = parser.Command(
    name="logs",
    summary="Print or follow a function's log, with pod and request id",
    description=_DESCRIPTION,
    examples=_EXAMPLES,
    add_arguments=add_arguments,
    run=run,
)
