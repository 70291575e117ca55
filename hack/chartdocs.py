"""Generate docs/install.md's tables of chart values and RBAC from the chart itself.

``python hack/chartdocs.py`` rewrites the parts of ``docs/install.md`` between the
``<!-- values:begin -->``/``<!-- values:end -->`` and ``<!-- rbac:begin -->``/
``<!-- rbac:end -->`` markers; ``--check`` only says whether they are current (a chart test
runs it, so the page cannot drift from the chart):

* **values**: every setting of ``charts/kfn/values.yaml`` with its default and the comment
  above it, grouped by its ``# +docs:section=`` header;
* **RBAC**: every rule of every (Cluster)Role the chart renders with its default values (plus
  the settings an install must give), per component, with the comment the template puts above
  the rule as its reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import re
import subprocess
import sys
from typing import Any

import yaml

REPO = pathlib.Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "kfn"
PAGE = REPO / "docs" / "install.md"
#: What any install must set; the RBAC table is rendered with it.
REQUIRED = {
    "image": {"registry": "registry.example.com"},
    "registry": {
        "host": "registry.example.com",
        "credentials": {"managed": {"robotKeySecret": {"name": "kfn-registry-robot-key"}}},
    },
}
_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_-]+):(?P<value>.*)$")


@dataclasses.dataclass
class Value:
    key: str
    default: str
    doc: str
    section: str


def values(text: str) -> list[Value]:
    """The settings of a values.yaml: leaf keys (and empty maps and lists) with their docs."""
    lines = text.splitlines()
    found: list[Value] = []
    stack: list[tuple[int, str, str]] = []
    comment: list[str] = []
    section = ""
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("# +docs:section="):
            section = stripped.split("=", 1)[1]
            comment = []
            continue
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
            continue
        if not stripped:
            comment = [] if not comment or comment[-1] else comment
            if comment:
                comment.append("")
            continue
        match = _KEY.match(line)
        if match is None:
            continue  # a list item of a default
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = ".".join([*(k for _, k, _ in stack), match["key"]])
        value = match["value"].strip()
        nested = not value and _deeper(lines, i, indent)
        # A setting without a comment of its own is explained by the nearest parent's.
        doc = _paragraph(comment) or next((d for _, _, d in reversed(stack) if d), "")
        if nested:
            stack.append((indent, match["key"], doc))
        else:
            found.append(Value(key, value or "(see values.yaml)", doc, section))
        comment = []
    return found


def _deeper(lines: list[str], i: int, indent: int) -> bool:
    for line in lines[i + 1 :]:
        if line.strip() and not line.strip().startswith("#"):
            return len(line) - len(line.lstrip()) > indent
    return False


def _paragraph(comment: list[str]) -> str:
    """The comment's first paragraph, as one line."""
    text = " ".join(c for c in _first_paragraph(comment))
    return text.replace("|", "\\|")


def _first_paragraph(comment: list[str]) -> list[str]:
    out = []
    for line in comment:
        if not line and out:
            break
        if line:
            out.append(line)
    return out


def values_table(text: str) -> str:
    rows = []
    section = None
    for value in values(text):
        if value.section != section:
            section = value.section
            rows.append(f"\n**{section}**\n\n| Key | Default | What it is for |\n|---|---|---|")
        rows.append(f"| `{value.key}` | `{value.default}` | {value.doc} |")
    return "\n".join(rows).strip() + "\n"


def render(helm: str) -> str:
    """``helm template`` of the chart with its defaults and the required settings."""
    result = subprocess.run(
        [helm, "template", "kfn", str(CHART), "--namespace", "kfn-system", "--skip-tests",
         "--kube-version", "1.34.0", "--values", "-"],
        input=json.dumps(REQUIRED), capture_output=True, text=True, check=True,
    )  # fmt: skip
    return result.stdout


def rbac_rules(rendered: str) -> list[tuple[str, str, dict[str, Any], str]]:
    """(component, kind, rule, why) of every rule of every Role and ClusterRole."""
    found = []
    for document in rendered.split("\n---"):
        doc = yaml.safe_load(document)
        if not doc or doc.get("kind") not in ("ClusterRole", "Role"):
            continue
        component = doc["metadata"]["labels"].get("app.kubernetes.io/component", "")
        reasons = _reasons(document)
        for index, rule in enumerate(doc.get("rules") or []):
            found.append((component, doc["kind"], rule, reasons.get(index, "")))
    return found


def _reasons(document: str) -> dict[int, str]:
    """The comment above each ``- apiGroups`` item of a rendered Role, by rule index; a rule
    without a comment of its own shares the one above it (rules grouped under one reason)."""
    reasons: dict[int, str] = {}
    comment: list[str] = []
    index, last = -1, ""
    lines = document.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "rules:"), len(lines))
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
        elif stripped.startswith("- apiGroups"):
            index += 1
            last = " ".join(comment) if comment else last
            reasons[index] = last
            comment = []
    return reasons


def rbac_table(rendered: str) -> str:
    rows = ["| Component | Kind | API group | Resources | Names | Verbs | Why |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    for component, kind, rule, why in rbac_rules(rendered):
        groups = ", ".join(f"`{g}`" if g else "core" for g in rule["apiGroups"])
        resources = ", ".join(f"`{r}`" for r in rule["resources"])
        names = ", ".join(f"`{n}`" for n in rule.get("resourceNames", [])) or "any"
        verbs = ", ".join(rule["verbs"])
        rows.append(
            f"| {component} | {kind} | {groups} | {resources} | {names} | {verbs} | "
            f"{why.replace('|', '/')} |"
        )
    return "\n".join(rows) + "\n"


def _replace(page: str, name: str, body: str) -> str:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin not in page or end not in page:
        raise SystemExit(f"{PAGE}: the {begin} … {end} markers are missing")
    head, rest = page.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}{end}{tail}"


def generate(helm: str) -> str:
    page = PAGE.read_text()
    page = _replace(page, "values", values_table((CHART / "values.yaml").read_text()))
    return _replace(page, "rbac", rbac_table(render(helm)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--helm", default="helm", help="the helm binary")
    parser.add_argument("--check", action="store_true", help="only say whether it is current")
    args = parser.parse_args(argv)
    wanted = generate(args.helm)
    if args.check:
        if wanted != PAGE.read_text():
            print(f"{PAGE} is out of date: run `make docs`", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
