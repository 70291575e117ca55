"""Printing objects as ``-o json`` or ``-o yaml`` asks, as kubectl prints them."""

from __future__ import annotations

import json
from typing import Any, Final, TextIO

import yaml

FORMATS: Final = ("json", "yaml")


def render(value: Any, fmt: str) -> str:
    """``value`` as JSON (indented, as kubectl's) or YAML, ending in a newline."""
    if fmt == "yaml":
        return str(yaml.safe_dump(value, sort_keys=False, allow_unicode=True))
    return json.dumps(value, indent=4, ensure_ascii=False) + "\n"


def table(rows: list[list[str]], out: TextIO) -> None:
    """Rows under an upper-case header, in columns three spaces apart, as ``kubectl get``."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        out.write("   ".join([*cells, row[-1]]) + "\n")
