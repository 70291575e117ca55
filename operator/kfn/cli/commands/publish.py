"""``kubectl kfn publish``: Lambda's PublishVersion, for a Function that publishes on request."""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from typing import Any, Final

from kfn.api import function_version, versioning
from kfn.cli import cluster, errors, logview, output, parser, publishing, rollingback

_DESCRIPTION = """\
Publish the code and configuration a Function runs now as a new numbered version, as
Lambda's PublishVersion.

With spec.publish: OnRequest, publish sets the Function's annotation kfn.dev/publish to the
time of the request (followed by --description, if given; the operator copies the value onto
the FunctionVersion), and waits until the operator has published the version. When nothing
changed since the newest version, that version is the answer and nothing is published.

With spec.publish: Always (the default), every deployed change already is a version: publish
says which one and changes nothing. A Function that is not Ready has nothing deployed to
publish: publish fails, saying so."""

_EXAMPLES = """\
  # Publish what hello runs now
  kubectl kfn publish hello --description "fix the retry loop"

  # Publish, and print the new FunctionVersion as YAML
  kubectl kfn publish hello -o yaml"""

POLL_SECONDS: Final = 1.0
DEFAULT_TIMEOUT: Final = "10m"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="FUNCTION", help="the Function's name")
    p.add_argument(
        "--description",
        metavar="TEXT",
        help="what changed, kept with the version's request (at most 256 characters)",
    )
    parser.add_output_option(p, "the published FunctionVersion")
    p.add_argument(
        "--timeout",
        metavar="DURATION",
        default=DEFAULT_TIMEOUT,
        help=f"how long to wait for the version (default: {DEFAULT_TIMEOUT})",
    )


def _version_object(kube: cluster.Cluster, name: str, number: int) -> dict[str, Any] | None:
    return kube.get(
        cluster.path(
            "kfn.dev/v1alpha1",
            "FunctionVersion",
            kube.namespace,
            function_version.object_name(name, number),
        )
    )


def _answer(kube: cluster.Cluster, args: argparse.Namespace, number: int, line: str) -> int:
    if args.output:
        found = _version_object(kube, args.name, number)
        if found is None:
            raise errors.CliError(
                f"the FunctionVersion {function_version.object_name(args.name, number)} "
                "is gone (deleted by retention)"
            )
        sys.stdout.write(output.render(rollingback.shown(found), args.output))
    else:
        print(line)
    return 0


def _request(kube: cluster.Cluster, name: str, value: str) -> int | None:
    """Sets the publish annotation (a 409 retried once with a fresh read); the Function's
    latestVersion before it."""
    where = cluster.path("kfn.dev/v1alpha1", "Function", kube.namespace, name)
    for attempt in (1, 2):
        fn = kube.function(name)
        publishing.ready_to_publish(fn)
        before = rollingback.latest_version(fn)
        try:
            kube.merge_patch(where, publishing.request_patch(fn, value))
        except cluster.ApiError as exc:
            if exc.status != 409 or attempt == 2:
                raise
            continue
        return before
    raise AssertionError("unreachable")


def run(args: argparse.Namespace) -> int:
    try:
        timeout = logview.parse_duration(args.timeout)
    except ValueError as exc:
        raise errors.CliError(f"--timeout: {exc}") from None
    value = publishing.request_value(datetime.datetime.now(datetime.UTC), args.description)
    kube = cluster.Cluster.connect(args)
    name = args.name
    fn = kube.function(name)
    publishing.ready_to_publish(fn)
    latest = rollingback.latest_version(fn)
    if rollingback.publish_mode(fn) is versioning.Publish.ALWAYS:
        if latest is None:
            raise errors.CliError(
                f"function {name} publishes every deployed change (spec.publish: Always) but "
                f"has no version yet: see kubectl kfn describe {name} -n {kube.namespace}"
            )
        return _answer(
            kube,
            args,
            latest,
            f"function {name} publishes every deployed change (spec.publish: Always): "
            f"what it runs already is version {latest}",
        )
    newest = _version_object(kube, name, latest) if latest is not None else None
    if latest is not None and newest is not None and publishing.unchanged_since(fn, newest):
        return _answer(
            kube,
            args,
            latest,
            f"function {name} has not changed since version {latest}: nothing to publish",
        )
    started = time.monotonic()
    before = _request(kube, name, value)
    print(
        f"asked the operator to publish {name} ({versioning.PUBLISH_ANNOTATION}={value}); "
        "waiting for the version",
        file=sys.stderr,
    )
    deadline = started + timeout
    while True:
        fn = kube.function(name)
        number = publishing.new_version(before, fn)
        if number is not None:
            return _answer(kube, args, number, f"published {name} version {number}")
        if time.monotonic() > deadline:
            raise errors.CliError(
                f"the operator published no version of {name} within {timeout:.0f}s; the "
                f"request stands ({versioning.PUBLISH_ANNOTATION}={value}) and may still be "
                f"taken: kubectl get functionversions -n {kube.namespace} "
                f"-l kfn.dev/function={name}"
            )
        time.sleep(POLL_SECONDS)


COMMAND = parser.Command(
    name="publish",
    summary="Publish what a function runs now as a new version",
    description=_DESCRIPTION,
    examples=_EXAMPLES,
    add_arguments=add_arguments,
    run=run,
)
