"""The subcommands of ``kubectl kfn``, one module each, in the order ``--help`` lists them.

The offline commands (init, events, completion) need no cluster; deploy, invoke, logs,
describe, publish and rollback talk to it through :mod:`kfn.cli.cluster`.
"""

from __future__ import annotations

from typing import Final

from kfn.cli.commands import (
    completion,
    deploy,
    describe,
    events,
    init,
    invoke,
    logs,
    publish,
    rollback,
)
from kfn.cli.parser import Command

ALL: Final[tuple[Command, ...]] = (
    init.COMMAND,
    deploy.COMMAND,
    invoke.COMMAND,
    logs.COMMAND,
    describe.COMMAND,
    publish.COMMAND,
    rollback.COMMAND,
    events.COMMAND,
    completion.COMMAND,
)
