"""Server-side apply of the local cluster's add-ons (the Gateway, Contour, Prometheus) through
``kubectl``, under one field manager, so a later bring-up owns and updates what an earlier one
wrote."""

from __future__ import annotations

import pathlib
from collections.abc import Iterable
from typing import Any, Protocol

import yaml

FIELD_MANAGER = "kfn-cluster"
_APPLY = ("apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}")


class Kubectl(Protocol):
    def __call__(self, *args: str, check: bool = True, input: str | None = None) -> str: ...


def docs(objects: Iterable[dict[str, Any]]) -> str:
    """``objects`` as one multi-document YAML stream."""
    return "\n---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objects)


def apply(kubectl: Kubectl, objects: Iterable[dict[str, Any]]) -> None:
    kubectl(*_APPLY, "-f", "-", input=docs(objects))


def apply_files(kubectl: Kubectl, files: Iterable[pathlib.Path]) -> None:
    kubectl(*_APPLY, *(a for f in files for a in ("-f", str(f))))
