"""``kubectl kfn init``: a new function folder from a template."""

from __future__ import annotations

import argparse
import datetime
import pathlib
import sys

from kfn.api import function
from kfn.cli import errors, parser, scaffold

_DESCRIPTION = f"""\
Create a function folder: a Lambda-style handler, function.yaml, a test event and .kfnignore.

Files written (in DIR, by default a new folder named NAME):
  app.py / index.js     the handler: handler(event, context) in Python, exports.handler in
                        Node.js, answering the HTTP event of events/event.json
  requirements.txt /    the packages the build installs (it reads requirements.txt for
  package.json          Python, package.json and package-lock.json for Node.js, at the top
                        of the folder)
  function.yaml         the Function, without spec.source: "kubectl kfn deploy" sends the
                        folder's files as its inline source
  events/event.json     a test event (kubectl kfn events apigw)
  .kfnignore            files deploy leaves out, gitignore-style

Runtimes: {", ".join(function.RUNTIMES)}.
Nothing is overwritten: if any of these files exists, nothing is written and init fails."""

_EXAMPLES = """\
  # A Python function in ./hello
  kubectl kfn init hello

  # A Node.js 22 function in the current folder
  kubectl kfn init orders --runtime nodejs22 ."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME", help="the Function's name (a DNS-1035 label)")
    p.add_argument(
        "dir",
        metavar="DIR",
        nargs="?",
        help="the folder to write to, created if missing (default: ./NAME)",
    )
    p.add_argument(
        "--runtime",
        choices=function.RUNTIMES,
        default=scaffold.DEFAULT_RUNTIME,
        metavar="RUNTIME",
        help=f"the language runtime (default: {scaffold.DEFAULT_RUNTIME})",
    )


def run(args: argparse.Namespace) -> int:
    name: str = args.name
    if not function.FUNCTION_NAME_RULE.allows(name):
        raise errors.CliError(f'invalid name "{name}": {function.FUNCTION_NAME_RULE.message}')
    folder = pathlib.Path(args.dir if args.dir is not None else name)
    files = scaffold.files(name, args.runtime)
    existing = [path for path in files if (folder / path).exists()]
    if existing:
        raise errors.CliError(
            f"{', '.join(str(folder / p) for p in existing)} already "
            f"{'exists' if len(existing) == 1 else 'exist'}; nothing was written "
            "(init never overwrites: remove them or choose another DIR)"
        )
    warning = function.deprecation(args.runtime, datetime.datetime.now(datetime.UTC).date())
    if warning:
        print(f"Warning: {warning}", file=sys.stderr)
    for path, text in files.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("x", encoding="utf-8") as out:
            out.write(text)
    print(f"function {name} created in {folder}/ ({', '.join(files)})")
    return 0


COMMAND = parser.Command(
    name="init",
    summary="Create a function folder: handler, function.yaml, test event",
    description=_DESCRIPTION,
    examples=_EXAMPLES,
    add_arguments=add_arguments,
    run=run,
)
