"""The import contracts in pyproject.toml hold on this tree, cover all of kfn, and can fail.

A contract that passes whatever the code imports protects nothing, so each one is shown to
break: the test copies ``operator/`` and ``pyproject.toml`` into a scratch directory, adds one
import that breaches the contract, and runs ``lint-imports`` on the copy. kfn is also installed
(editable) from the main checkout, so the copy's ``operator/`` goes first on ``PYTHONPATH``;
the breach exists only in the copy, so a failure naming the contract proves that the copy
was the tree analysed.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys
import tomllib
from typing import Any

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
LINT_IMPORTS = pathlib.Path(sys.executable).with_name("lint-imports")
CONTRACTS: list[dict[str, Any]] = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"][
    "importlinter"
]["contracts"]


@dataclasses.dataclass(frozen=True)
class Breach:
    """One import, added at the end of one file under ``operator/kfn``, that breaks a contract."""

    contract: str
    """The contract's ``id``."""
    path: str
    line: str
    shown: str = ""
    """How the report names the breach, when not as ``importer -> imported (l.``."""

    @property
    def edge(self) -> str:
        """The import as lint-imports names it: ``importer -> imported``, with an external
        package by its top-level name (that is all the import graph knows of it)."""
        importer = "kfn." + self.path.removesuffix(".py").removesuffix("/__init__")
        words = self.line.split()
        imported = f"{words[1]}.{words[3]}" if words[0] == "from" else words[1]
        if not imported.startswith("kfn."):
            imported = imported.split(".")[0]
        return f"{importer.replace('/', '.')} -> {imported}"


BREACHES = [
    Breach("operator-layers", "resources/__init__.py", "from kfn import kube"),
    Breach("api-leaf", "api/meta.py", "import urllib.request"),
    Breach("stdlib-leaves", "stats.py", "from kfn import kube"),
    Breach("stdlib-leaves", "retry.py", "import urllib.request"),
    # The URL rules decide; the builder's fetcher resolves and connects.
    Breach("stdlib-leaves", "urls.py", "import socket"),
    # The expiring cache keeps what it is given; it reads no clock and no file.
    Breach("stdlib-leaves", "expiring.py", "import os"),
    # The rollout decisions take the figures they judge; they reach no stats message or clock.
    Breach("stdlib-leaves", "rollout.py", "from kfn import stats"),
    # Every component configures its log with it: it reaches no component and no client.
    Breach("logs-leaf", "logs.py", "import kopf"),
    Breach("pure-builders", "resources/status.py", "import confluent_kafka"),
    # Indirect: kfn.resources.bucket_events derives the stores' tokens with kfn.authn.webhooks.
    Breach("pure-builders", "authn/webhooks.py", "import socket"),
    # Indirect: kfn.resources.credentials imports the token service's pure policy module.
    Breach("pure-builders", "registry_auth/policy.py", "import socket"),
    Breach("components", "autoscaler/__init__.py", "from kfn import builder"),
    Breach("one-kubernetes-client", "triggers/__init__.py", "import kubernetes"),
    Breach("thin-kube", "kube/__init__.py", "import kopf"),
    # The store is generic over what it keeps: it cannot reach the models it keeps.
    Breach("thin-kube", "kube/cache.py", "from kfn.api import trigger"),
    Breach("build-job", "oci.py", "import pydantic"),
    # The shared authentication leaf is handed the API server's call; it never imports it.
    Breach("authn-leaf", "authn/reviews.py", "from kfn import kube"),
    Breach("authn-leaf", "authn/tokenfile.py", "from kfn.triggers import invoke"),
    # The kubectl plugin reaches the cluster only through its own client, never kfn's parts.
    Breach("cli", "cli/events.py", "from kfn import kube"),
    Breach("components", "cli/package.py", "from kfn.triggers import invoke"),
    Breach(
        "registry-token-service", "registry_auth/__init__.py", "from kfn.resources import objects"
    ),
    # An import for types only closes a circle too: relay states what it needs of its
    # exchange as a Protocol instead.
    Breach(
        "no-circles",
        "activator/relay.py",
        "if typing.TYPE_CHECKING: from kfn.activator import exchange",
        shown="- .relay -> .exchange (1 import)",
    ),
]


def _name(contract_id: str) -> str:
    return next(str(c["name"]) for c in CONTRACTS if c.get("id") == contract_id)


def _lint_imports(root: pathlib.Path) -> tuple[int, str]:
    """Runs lint-imports on the tree at ``root``: its own package, its own contracts."""
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(root / "pyproject.toml")],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root / "operator")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # The report wraps long contract names; compare with single spaces.
    return result.returncode, " ".join((result.stdout + result.stderr).split())


def test_every_contract_is_kept_on_this_tree() -> None:
    returncode, output = _lint_imports(REPO)
    assert returncode == 0, output
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in output


def test_every_module_of_kfn_is_the_subject_of_a_contract() -> None:
    kfn = REPO / "operator" / "kfn"
    modules = {f"kfn.{p.stem}" for p in kfn.glob("*.py") if p.name != "__init__.py"}
    modules |= {f"kfn.{p.parent.name}" for p in kfn.glob("*/__init__.py")}
    subjects = {
        module
        for contract in CONTRACTS
        for key in ("source_modules", "layers", "modules")
        for module in contract.get(key, [])
    }
    assert modules - subjects == set()


def test_every_contract_has_a_breach_that_must_break_it() -> None:
    assert all("id" in contract for contract in CONTRACTS)
    assert {b.contract for b in BREACHES} == {c["id"] for c in CONTRACTS}


@pytest.mark.parametrize("breach", BREACHES, ids=[f"{b.contract}:{b.path}" for b in BREACHES])
def test_a_contract_fails_on_an_import_that_breaches_it(
    breach: Breach, tmp_path: pathlib.Path
) -> None:
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(
        REPO / "operator", tmp_path / "operator", ignore=shutil.ignore_patterns("__pycache__")
    )
    target = tmp_path / "operator" / "kfn" / breach.path
    target.write_text(target.read_text() + f"\n{breach.line}\n")

    returncode, output = _lint_imports(tmp_path)

    assert returncode == 1, output
    assert f"{_name(breach.contract)} BROKEN" in output
    assert (breach.shown or f"{breach.edge} (l.") in output
