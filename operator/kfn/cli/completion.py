"""Shell completion of ``kubectl kfn``, read off the parser itself.

kubectl 1.26 and later complete a plugin's words by running ``kubectl_complete-<plugin>`` with
the words after the plugin's name, the last one being the word under the cursor (``""`` for a
new word). It prints the candidates one a line (``value<TAB>description``) and may end with
``:<directive>``, cobra's flags for the shell: :data:`NO_SPACE`, :data:`NO_FILE_COMP`,
:data:`FILTER_DIRS`. The scripts ``kubectl kfn completion bash|zsh`` prints ask the same
question of ``kubectl-kfn __complete`` when the plugin is run by its own name.

What a value may be comes from its option or argument: its ``choices``; its metavar ``DIR``
(directories) or ``FILE`` (files); a function in :data:`VALUES` under its metavar; or, for the
metavars in :data:`CLUSTER_LISTS` (``FUNCTION``, ``NAMESPACE``), the names the cluster lists,
asked with the ``-n``, ``--context`` and ``--kubeconfig`` typed so far. A cluster that does not
answer within :data:`CLUSTER_TIMEOUT` seconds, or refuses, offers nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from kfn.cli import events, parser

DEFAULT: Final = 0
ERROR: Final = 1
NO_SPACE: Final = 2
NO_FILE_COMP: Final = 4
FILTER_DIRS: Final = 16

VALUES: Final[dict[str, Callable[[], Sequence[str]]]] = {
    "EVENT": lambda: events.NAMES,
}
"""Candidates for the values of options and arguments with these metavars."""

CLUSTER_LISTS: Final[dict[str, tuple[str, str, bool]]] = {
    "FUNCTION": ("kfn.dev/v1alpha1", "Function", True),
    "NAMESPACE": ("v1", "Namespace", False),
}
"""Metavars whose values are the names of a kind in the cluster: (apiVersion, kind, whether
it is namespaced)."""
CLUSTER_TIMEOUT: Final = 3.0
GLOBAL_OPTIONS: Final = ("namespace", "context", "kubeconfig")

Candidates = tuple[list[str], int]


def _first_line(text: str | None) -> str:
    if not text or text == argparse.SUPPRESS:
        return ""
    return text.split("\n", 1)[0].replace("\t", " ")


def cluster_names(metavar: str, options: Mapping[str, str]) -> list[str]:
    """The names of the objects a ``FUNCTION`` or ``NAMESPACE`` may be, as the cluster of the
    global options typed so far lists them; none when it cannot be asked."""
    from kfn.cli import cluster  # noqa: PLC0415 - the Kubernetes client only when asked

    api_version, kind, namespaced = CLUSTER_LISTS[metavar]
    try:
        kube = cluster.Cluster.connect(argparse.Namespace(**options))
        items = kube.list(
            cluster.path(api_version, kind, kube.namespace if namespaced else None),
            timeout=CLUSTER_TIMEOUT,
        )
    except Exception:  # completion must never fail the shell: nothing to offer
        return []
    return sorted(str(item.get("metadata", {}).get("name", "")) for item in items)


def _values(
    action: argparse.Action,
    prefix: str,
    emit: str = "",
    options: Mapping[str, str] | None = None,
) -> Candidates:
    """The candidates for a value of ``action`` starting with ``prefix``; ``emit`` is put
    before each (``--output=`` when the value shares the option's word); ``options``: the
    global options typed so far."""
    if action.choices is not None:
        found = [f"{emit}{c}" for c in action.choices if str(c).startswith(prefix)]
        return found, NO_FILE_COMP
    metavar = action.metavar if isinstance(action.metavar, str) else ""
    if metavar == "DIR":
        return [], FILTER_DIRS
    if metavar == "FILE":
        return [], DEFAULT
    source = VALUES.get(metavar)
    if source is not None:
        return [f"{emit}{v}" for v in source() if v.startswith(prefix)], NO_FILE_COMP
    if metavar in CLUSTER_LISTS:
        names = cluster_names(metavar, options or {})
        return [f"{emit}{v}" for v in names if v.startswith(prefix)], NO_FILE_COMP
    return [], NO_FILE_COMP


def _options(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in p._actions for s in a.option_strings}


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


@dataclasses.dataclass
class _Position:
    """Where the words before the cursor leave the command line."""

    parser: argparse.ArgumentParser
    positionals: int = 0
    pending: argparse.Action | None = None
    """An option whose value is the word under the cursor."""
    options: dict[str, str] = dataclasses.field(default_factory=dict)
    """The global options typed so far (-n, --context, --kubeconfig), by dest."""


def _locate(top: argparse.ArgumentParser, before: Sequence[str]) -> _Position:
    commands = parser.subcommands(top)
    at = _Position(top)
    for word in before:
        if at.pending is not None:
            if at.pending.dest in GLOBAL_OPTIONS:
                at.options[at.pending.dest] = word
            at.pending = None
        elif word.startswith("-") and word != "-":
            name, given, value = word.partition("=")
            action = _options(at.parser).get(name)
            if action is not None and _takes_value(action) and not given:
                at.pending = action
            elif action is not None and given and action.dest in GLOBAL_OPTIONS:
                at.options[action.dest] = value
        elif at.parser is top and word in commands:
            at.parser = commands[word]
        else:
            at.positionals += 1
    return at


def _option_names(
    top: argparse.ArgumentParser, active: argparse.ArgumentParser, prefix: str
) -> list[str]:
    found = []
    for action in active._actions:
        # The global options, hidden on subcommands, are offered with the top's help.
        help_text = _first_line(action.help)
        for option in action.option_strings:
            if option.startswith(prefix):
                found.append(f"{option}\t{help_text or _global_help(top, option)}")
    return found


def _command_names(top: argparse.ArgumentParser, prefix: str) -> list[str]:
    summaries = {
        choice.dest: _first_line(choice.help)
        for action in top._actions
        if isinstance(action, argparse._SubParsersAction)
        for choice in action._choices_actions
    }
    return [
        f"{name}\t{summaries.get(name, '')}"
        for name in parser.subcommands(top)
        if name.startswith(prefix)
    ]


def _inline_value(at: _Position, word: str) -> Candidates:
    """Values for ``--option=<value>`` typed as one word."""
    name, value = word.split("=", 1)
    action = _options(at.parser).get(name)
    if action is not None and _takes_value(action):
        return _values(action, value, emit=f"{name}=", options=at.options)
    return [], NO_FILE_COMP


def complete(top: argparse.ArgumentParser, words: Sequence[str]) -> Candidates:
    """The candidates for the last of ``words`` (the words after ``kubectl kfn``)."""
    *before, current = words or [""]
    at = _locate(top, before)
    if at.pending is not None:
        return _values(at.pending, current, options=at.options)
    if current.startswith("--") and "=" in current:
        return _inline_value(at, current)
    if current.startswith("-"):
        return _option_names(top, at.parser, current), NO_FILE_COMP
    if at.parser is top:
        return _command_names(top, current), NO_FILE_COMP
    arguments = [a for a in at.parser._actions if not a.option_strings]
    if at.positionals >= len(arguments):
        return [], NO_FILE_COMP
    return _values(arguments[at.positionals], current, options=at.options)


def _global_help(top: argparse.ArgumentParser, option: str) -> str:
    action = _options(top).get(option)
    return _first_line(action.help) if action is not None else ""


def render(candidates: Candidates) -> str:
    """The answer as kubectl (and cobra's ``__complete``) read it."""
    found, directive = candidates
    return "".join(f"{line}\n" for line in found) + f":{directive}\n"


BASH: Final = r"""# bash completion for kubectl-kfn.
# kubectl >= 1.26 completes "kubectl kfn ..." itself, through kubectl_complete-kfn;
# this script completes the plugin run by its own name:
#   source <(kubectl-kfn completion bash)
_kubectl_kfn_complete() {
    local cur=${COMP_WORDS[COMP_CWORD]} out line directive=0
    local -a candidates=()
    out=$(kubectl-kfn __complete "${COMP_WORDS[@]:1:COMP_CWORD-1}" "$cur" 2>/dev/null) || return 0
    while IFS= read -r line; do
        if [[ $line =~ ^:[0-9]+$ ]]; then
            directive=${line#:}
        elif [[ -n $line ]]; then
            candidates+=("${line%%$'\t'*}")
        fi
    done <<< "$out"
    if (( directive & 16 )); then
        mapfile -t COMPREPLY < <(compgen -d -- "$cur")
        return 0
    fi
    if (( ${#candidates[@]} == 0 )); then
        (( directive & 4 )) && return 0
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        return 0
    fi
    mapfile -t COMPREPLY < <(compgen -W "${candidates[*]}" -- "$cur")
    (( directive & 2 )) && compopt -o nospace
    return 0
}
complete -F _kubectl_kfn_complete kubectl-kfn
"""

ZSH: Final = r"""#compdef kubectl-kfn
# zsh completion for kubectl-kfn.
# kubectl >= 1.26 completes "kubectl kfn ..." itself, through kubectl_complete-kfn;
# this script completes the plugin run by its own name:
#   source <(kubectl-kfn completion zsh)
_kubectl_kfn() {
    local out line directive=0
    local -a lines candidates
    out=$(kubectl-kfn __complete "${(@)words[2,CURRENT-1]}" "${words[CURRENT]}" 2>/dev/null) \
        || return 1
    lines=("${(@f)out}")
    for line in "${lines[@]}"; do
        if [[ $line == :<-> ]]; then
            directive=${line#:}
        elif [[ -n $line ]]; then
            candidates+=("${${line%%$'\t'*}//:/\\:}:${line#*$'\t'}")
        fi
    done
    if (( directive & 16 )); then
        _path_files -/
        return
    fi
    if (( ${#candidates} == 0 )); then
        (( directive & 4 )) && return 1
        _files
        return
    fi
    _describe 'kubectl kfn' candidates
}
# Autoloaded from a file _kubectl-kfn on $fpath: complete now; sourced: register.
if [[ $funcstack[1] == _kubectl-kfn ]]; then
    _kubectl_kfn "$@"
else
    compdef _kubectl_kfn kubectl-kfn
fi
"""

SCRIPTS: Final = {"bash": BASH, "zsh": ZSH}
