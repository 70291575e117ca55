"""``kubectl kfn rollback``: an alias, or $LATEST, back to a published version."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any, Final

from kfn.api import function_version
from kfn.cli import cluster, errors, logview, output, parser, rollingback
from kfn.cli.commands import deploy

_DESCRIPTION = """\
Roll a Function back to one of its published versions (kubectl get functionversions).

With --alias A: the alias A points at VERSION alone, sending all its requests there at once;
its additionalVersion and its rollout are removed (a rollback stops a rollout). VERSION
defaults to the version the alias served before its current one: the version a rollout
moved it from (status.aliases), else the newest published version older than its current
one. Every other alias is left as it is. With --wait (the default) it waits until the alias
routes to VERSION alone.

Without --alias: $LATEST goes back to VERSION's code and configuration. The Function's spec
becomes the version's (its source the image built then, by digest: nothing is rebuilt),
keeping the Function's own publish, versionRetention, aliases, url and scale. VERSION
defaults to the newest published version older than status.latestVersion. With --wait (the
default) it waits until the Function is Ready. With publish: Always, the operator records
the rolled-back $LATEST as a new version.

An alias changes by a JSON merge patch of spec.aliases; $LATEST by a server-side apply of the
spec, as deploy's (a merge patch when fields another field manager set would stay). Both are
made as kubectl-kfn against the Function as read; if it changed meanwhile, rollback reads it
again and retries once."""

_EXAMPLES = """\
  # Send all of the alias live's requests back to the version before its current one
  kubectl kfn rollback hello --alias live

  # Point live at version 3
  kubectl kfn rollback hello --alias live --to 3

  # Run version 2's code and configuration as $LATEST, and print the Function
  kubectl kfn rollback hello --to 2 -o yaml"""

POLL_SECONDS: Final = 1.0
DEFAULT_TIMEOUT: Final = "5m"


def _version(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f'invalid version "{text}": a version number, as 3')
    return int(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="FUNCTION", help="the Function's name")
    p.add_argument(
        "--alias",
        metavar="ALIAS",
        help="roll this alias back (default: roll $LATEST back)",
    )
    p.add_argument(
        "--to",
        metavar="VERSION",
        type=_version,
        help="the version to go back to (default: the one before the current one)",
    )
    parser.add_output_option(p, "the Function as rolled back")
    parser.add_wait_options(
        p, waits_for="wait until the rollback is served", until="", default_timeout=DEFAULT_TIMEOUT
    )


def _written(
    kube: cluster.Cluster, name: str, write: Callable[[dict[str, Any]], dict[str, Any] | None]
) -> tuple[dict[str, Any], bool]:
    """The Function after ``write`` changed it (None: nothing to change, the Function as
    read); a 409 (it changed since it was read) is retried once with a fresh read."""
    for attempt in (1, 2):
        fn = kube.function(name)
        try:
            done = write(fn)
        except cluster.ApiError as exc:
            if exc.status != 409 or attempt == 2:
                raise
            continue
        return (fn, False) if done is None else (done, True)
    raise AssertionError("unreachable")


def _where(kube: cluster.Cluster, name: str) -> str:
    return cluster.path("kfn.dev/v1alpha1", "Function", kube.namespace, name)


def _wait_for_alias(
    kube: cluster.Cluster, name: str, alias: str, version: int, timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    print(f"waiting for alias {alias} to route to version {version} alone", file=sys.stderr)
    while True:
        fn = kube.function(name)
        if rollingback.alias_settled(fn, alias, version):
            return fn
        if time.monotonic() > deadline:
            raise errors.CliError(
                f"alias {alias} of function {name} did not route to version {version} alone "
                f"within {timeout:.0f}s (its spec does; the operator or the autoscaler has "
                f"not caught up): kubectl kfn describe {name} -n {kube.namespace}"
            )
        time.sleep(POLL_SECONDS)


def _roll_back_alias(
    kube: cluster.Cluster, args: argparse.Namespace, timeout: float
) -> dict[str, Any]:
    name, alias = args.name, args.alias
    before: dict[str, Any] = {}

    def write(fn: dict[str, Any]) -> dict[str, Any] | None:
        before.clear()
        before.update(rollingback.alias(fn, alias))
        target = rollingback.alias_target(fn, alias, args.to)
        before["target"] = target
        patch = rollingback.alias_patch(fn, alias, target)
        return None if patch is None else kube.merge_patch(_where(kube, name), patch)

    fn, changed = _written(kube, name, write)
    target = int(before["target"])
    if not changed:
        print(f"alias {name}:{alias} already routes to version {target} alone", file=sys.stderr)
    if args.wait:
        fn = _wait_for_alias(kube, name, alias, target, timeout)
    if args.output:
        sys.stdout.write(output.render(rollingback.shown(fn), args.output))
    elif changed:
        dropped = rollingback.alias_dropped(before)
        extra = f"; {', '.join(dropped)}" if dropped else ""
        print(
            f"alias {name}:{alias} rolled back to version {target} "
            f"(it was on version {before['version']}{extra})"
        )
    return fn


def _replace_spec(
    kube: cluster.Cluster, fn: dict[str, Any], version: dict[str, Any]
) -> dict[str, Any] | None:
    """Makes the Function's spec ``version``'s: by server-side apply when that leaves nothing
    behind, else by a merge patch; None when it already is."""
    patch = rollingback.latest_patch(fn, version)
    if patch is None:
        return None
    spec = rollingback.rolled_back_spec(fn, version)
    body = rollingback.apply_body(fn, spec, cluster.FIELD_MANAGER)
    try:
        left = rollingback.leftovers(kube.apply(body, dry_run=True), spec)
    except cluster.ApiError as exc:
        if exc.status != 422:  # 422: what other managers set makes it invalid
            raise
        left = [f"(the apply is refused: {exc})"]
    if not left:
        return kube.apply(body)
    print(
        f"Warning: fields of {fn['metadata']['name']} set by another field manager than "
        f"{cluster.FIELD_MANAGER} stay after an apply ({', '.join(left)}): sending a merge "
        "patch instead; a later apply of the Function's old YAML by that manager may need "
        "spec.source.image removed",
        file=sys.stderr,
    )
    return kube.merge_patch(_where(kube, fn["metadata"]["name"]), patch)


def _roll_back_latest(
    kube: cluster.Cluster, args: argparse.Namespace, timeout: float
) -> dict[str, Any]:
    name = args.name
    chosen: list[int] = []

    def write(fn: dict[str, Any]) -> dict[str, Any] | None:
        target = rollingback.latest_target(fn, args.to)
        chosen[:] = [target]
        version_name = function_version.object_name(name, target)
        version = kube.get(
            cluster.path("kfn.dev/v1alpha1", "FunctionVersion", kube.namespace, version_name)
        )
        if version is None:
            raise errors.CliError(
                f"the FunctionVersion {version_name} is gone (deleted by retention since the "
                f"status listed it): pass --to another version"
            )
        return _replace_spec(kube, fn, version)

    fn, changed = _written(kube, name, write)
    target = chosen[0]
    if not changed:
        print(f"function {name} already runs version {target} as $LATEST", file=sys.stderr)
    if args.wait:
        fn = deploy.wait(kube, name, timeout, sys.stderr)
    if args.output:
        sys.stdout.write(output.render(rollingback.shown(fn), args.output))
    elif changed:
        print(f"function {name} rolled back to version {target} (now $LATEST)")
    return fn


def run(args: argparse.Namespace) -> int:
    try:
        timeout = logview.parse_duration(args.timeout)
    except ValueError as exc:
        raise errors.CliError(f"--timeout: {exc}") from None
    kube = cluster.Cluster.connect(args)
    if args.alias is not None:
        _roll_back_alias(kube, args, timeout)
    else:
        _roll_back_latest(kube, args, timeout)
    return 0


COMMAND = parser.Command(
    name="rollback",
    summary="Point an alias, or $LATEST, back at a published version",
    description=_DESCRIPTION,
    examples=_EXAMPLES,
    add_arguments=add_arguments,
    run=run,
)
