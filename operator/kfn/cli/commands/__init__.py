"""The subcommands of ``kubectl kfn``, one module each, in the order ``--help`` lists them.

The commands that talk to the cluster (deploy, invoke, logs, describe, rollback, publish) join
this list as modules of their own.
"""

from __future__ import annotations

from typing import Final

from kfn.cli.commands import completion, events, init
from kfn.cli.parser import Command

ALL: Final[tuple[Command, ...]] = (init.COMMAND, events.COMMAND, completion.COMMAND)
