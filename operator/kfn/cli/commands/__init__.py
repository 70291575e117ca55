"""The subcommands of ``kubectl kfn``, one module each, in the order ``--help`` lists them.

The offline commands (init, events, completion) need no cluster; deploy, invoke, logs and
describe talk to it through :mod:`kfn.cli.cluster`. rollback and publish will join as modules
of their own.
"""

from __future__ import annotations

from typing import Final

from kfn.cli.commands import completion, deploy, describe, events, init, invoke, logs
from kfn.cli.parser import Command

ALL: Final[tuple[Command, ...]] = (
    init.COMMAND,
    deploy.COMMAND,
    invoke.COMMAND,
    logs.COMMAND,
    describe.COMMAND,
    events.COMMAND,
    completion.COMMAND,
)
