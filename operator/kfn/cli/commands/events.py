"""``kubectl kfn events``: the built-in test events."""

from __future__ import annotations

import argparse
import sys

from kfn.cli import errors, events, output, parser

_DESCRIPTION = """\
List the built-in test events, or print one.

Each is shaped as kfn sends that kind of event to a function, which is how AWS Lambda sends
it, so a handler written for Lambda reads it unchanged: save one to a file, edit it, and
call a handler with it. Printed as JSON unless -o yaml."""

_EXAMPLES = """\
  # List the test events
  kubectl kfn events

  # Save the S3 upload event to edit it
  kubectl kfn events s3 > events/upload.json"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "name",
        metavar="EVENT",
        nargs="?",
        help=f"the event to print: {', '.join(events.NAMES)}",
    )
    parser.add_output_option(p, "the event, or the list, as")


def run(args: argparse.Namespace) -> int:
    fmt: str | None = args.output
    if args.name is None:
        listing = [{"name": s.name, "description": s.description} for s in events.samples()]
        if fmt:
            sys.stdout.write(output.render(listing, fmt))
        else:
            rows = [["NAME", "DESCRIPTION"], *([s["name"], s["description"]] for s in listing)]
            output.table(rows, sys.stdout)
        return 0
    try:
        event = events.get(args.name)
    except KeyError:
        raise errors.CliError(
            f'there is no test event "{args.name}"; there are: {", ".join(events.NAMES)}'
        ) from None
    sys.stdout.write(output.render(event, "yaml") if fmt == "yaml" else events.dumps(event))
    return 0


COMMAND = parser.Command(
    name="events",
    summary="List the built-in test events, or print one",
    description=_DESCRIPTION,
    examples=_EXAMPLES,
    add_arguments=add_arguments,
    run=run,
)
