"""The one error the plugin's commands raise: printed as ``error: <message>``, exit code 1."""

from __future__ import annotations


class CliError(Exception):
    """Something the user can fix; the message says what, as kubectl's errors do."""
