"""The command line of ``kubectl kfn``: global options and one subcommand per module.

Each command is a :class:`Command` in its own module under :mod:`kfn.cli.commands`: how it is
named and described, the options it adds, and the function that runs it. The parser, the help
(and so docs/cli.md, generated from it) and shell completion are all derived from that list,
so a new command is one module and one line in ``kfn.cli.commands.ALL``.

As kubectl's, the global options (``-n``, ``--context``, ``--kubeconfig``) are accepted before
or after the subcommand; they are documented once, in ``kubectl kfn --help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final, NoReturn

PROG: Final = "kubectl kfn"
HELP_WIDTH: Final = 100

DESCRIPTION: Final = """\
Write, test and ship kfn Functions: AWS Lambda-style handlers run on Kubernetes.

kubectl kfn is a kubectl plugin (the executable kubectl-kfn, installed with kfn's Python
package). The developer loop: start a function folder from a template (init), deploy it and
follow its build until it serves (deploy), call it and read its log tail (invoke), follow
its pods' logs through scaling from and to zero (logs), see why it is not Ready
(describe), publish a version (publish) and go back to one (rollback). It talks to the
cluster of the kubeconfig as kubectl does, and needs no kubectl itself."""

EPILOG: Final = """\
Examples:
  # Start a Python function in ./hello, deploy it, call it, read its log
  kubectl kfn init hello --runtime python3.13
  kubectl kfn deploy hello
  kubectl kfn invoke hello -f hello/events/event.json
  kubectl kfn logs hello -f

  # Why is it not Ready?
  kubectl kfn describe hello

  # Send the alias live's requests back to its previous version
  kubectl kfn rollback hello --alias live

  # Shell completion for bash
  source <(kubectl kfn completion bash)

Use "kubectl kfn <command> --help" for more information about a command."""


@dataclasses.dataclass(frozen=True)
class Command:
    """One subcommand: its name, one line for the command list, the longer description and
    examples of its help, the options it adds, and what runs it (returning the exit code)."""

    name: str
    summary: str
    description: str
    examples: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """The command line is wrong (exit code 2)."""

    def __init__(self, message: str, prog: str) -> None:
        super().__init__(message)
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """argparse, reporting a usage error the way kubectl does instead of exiting."""

    def error(self, message: str) -> NoReturn:
        unknown = re.match(r"argument COMMAND: invalid choice: '(.*?)'", message)
        if unknown:
            message = f'unknown command "{unknown.group(1)}" for "{self.prog}"'
        raise UsageError(message, self.prog)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; the command list without argparse's ``COMMAND`` line."""

    def _format_action(self, action: argparse.Action) -> str:
        text = super()._format_action(action)
        if isinstance(action, argparse._SubParsersAction):
            text = text.split("\n", 1)[1]
        return text


class CommandParser(Parser):
    """A subcommand's parser: options and arguments in any order (``init NAME --runtime R DIR``),
    as kubectl takes them, where plain argparse would stop filling positionals at the first
    option."""

    _intermixing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def _formatter(width: int) -> Callable[..., argparse.HelpFormatter]:
    def make(*, prog: str) -> argparse.HelpFormatter:
        return _Formatter(prog, width=width, max_help_position=32)

    return make


def add_global_options(parser: argparse.ArgumentParser, *, hidden: bool) -> None:
    """``-n``, ``--context`` and ``--kubeconfig``: shown on the top-level parser, and accepted
    (hidden, without a default that would override the top level's) on every subcommand."""

    def show(text: str) -> str:
        return argparse.SUPPRESS if hidden else text

    extra: dict[str, Any] = {"default": argparse.SUPPRESS} if hidden else {}
    group = parser if hidden else parser.add_argument_group("global options")
    group.add_argument(
        "-n",
        "--namespace",
        metavar="NAMESPACE",
        help=show("the namespace to work in (default: the kubeconfig context's namespace)"),
        **extra,
    )
    group.add_argument(
        "--context",
        metavar="CONTEXT",
        help=show("the kubeconfig context to use (default: the current context)"),
        **extra,
    )
    group.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help=show("the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)"),
        **extra,
    )


def add_output_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``-o/--output json|yaml`` for a command that prints objects."""
    parser.add_argument(
        "-o",
        "--output",
        choices=("json", "yaml"),
        metavar="FORMAT",
        help=f"print {what}: json or yaml",
    )


def add_wait_options(
    parser: argparse.ArgumentParser, *, waits_for: str, until: str, default_timeout: str
) -> None:
    """``--wait/--no-wait`` and ``--timeout DURATION`` for a command that waits for the
    cluster: ``waits_for`` says what --wait does, ``until`` what --timeout bounds."""
    parser.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"{waits_for} (default: --wait)",
    )
    parser.add_argument(
        "--timeout",
        metavar="DURATION",
        default=default_timeout,
        help=f"how long to wait{until} (default: {default_timeout})",
    )


def build(commands: Sequence[Command], *, width: int = HELP_WIDTH) -> Parser:
    """The parser for ``commands``; ``width`` fixes the help's line length (the generated
    reference uses the default, so it does not depend on the terminal)."""
    formatter = _formatter(width)
    parser = Parser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=formatter,
    )
    add_global_options(parser, hidden=False)
    subparsers = parser.add_subparsers(
        title="commands", metavar="COMMAND", dest="command", parser_class=CommandParser
    )
    for command in commands:
        sub = subparsers.add_parser(
            command.name,
            help=command.summary,
            description=command.description,
            epilog=(
                f"Examples:\n{command.examples}\n\n"
                'Global options (-n, --context, --kubeconfig): see "kubectl kfn --help".'
            ),
            formatter_class=formatter,
        )
        command.add_arguments(sub)
        add_global_options(sub, hidden=True)
        sub.set_defaults(run=command.run)
    return parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser of each subcommand, by name, in the order of the help."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def unexpected(top: argparse.ArgumentParser, command: str | None, extra: list[str]) -> UsageError:
    """The usage error for words no option or argument took, as kubectl words it."""
    prog = subcommands(top)[command].prog if command else top.prog
    word = extra[0]
    if word.startswith("-"):
        return UsageError(f"unknown flag: {word.split('=', 1)[0]}", prog)
    return UsageError(f'unexpected argument "{word}"', prog)


def report_usage_error(error: UsageError) -> int:
    """Prints a usage error as kubectl does (``error: ...`` and where to read more); 2."""
    command = error.prog.removeprefix(PROG).strip()
    helpline = f"kubectl kfn {command} --help" if command else "kubectl kfn --help"
    print(f"error: {error}\nSee '{helpline}' for usage.", file=sys.stderr)
    return 2
