"""The entry points: ``kubectl-kfn`` (:func:`main`) and ``kubectl_complete-kfn`` (:func:`complete`).

Exit codes follow kubectl's: 0 done, 1 an error (``error: <message>`` on stderr), 2 a usage
error (the message and where to read the help).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kfn.cli import commands, completion, errors, parser

COMPLETE: str = "__complete"
"""The hidden first word that asks for completions (as cobra's programs have it)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``kubectl kfn`` with ``argv`` (default: the process's arguments)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == [COMPLETE]:
        return complete(args[1:])
    top = parser.build(commands.ALL)
    try:
        namespace, extra = top.parse_known_args(args)
        if extra:
            raise parser.unexpected(top, namespace.command, extra)
    except parser.UsageError as exc:
        return parser.report_usage_error(exc)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    if namespace.command is None:  # as kubectl: the help, and success
        top.print_help()
        return 0
    return _run(namespace)


def _run(namespace: argparse.Namespace) -> int:
    try:
        result: int = namespace.run(namespace)
    except (errors.CliError, OSError) as exc:  # OSError: a file that cannot be read or written
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


def complete(argv: Sequence[str] | None = None) -> int:
    """Prints the completions of the words after ``kubectl kfn`` (the last one being the word
    under the cursor), as kubectl asks a plugin's ``kubectl_complete-<name>``."""
    words = list(sys.argv[1:] if argv is None else argv)
    sys.stdout.write(completion.render(completion.complete(parser.build(commands.ALL), words)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
