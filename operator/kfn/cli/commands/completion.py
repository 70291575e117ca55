"""``kubectl kfn completion``: shell completion scripts."""

from __future__ import annotations

import argparse
import sys

from kfn.cli import completion, parser

_DESCRIPTION = """\
Print a shell completion script for kubectl-kfn.

kubectl 1.26 and later complete "kubectl kfn ..." by themselves: they run the executable
kubectl_complete-kfn, installed with kubectl-kfn, and nothing needs to be set up. The
script printed here completes the plugin run by its own name, kubectl-kfn."""

_EXAMPLES = """\
  # Load completion for kubectl-kfn into the current bash
  source <(kubectl kfn completion bash)

  # Install it for zsh (a folder on $fpath)
  kubectl kfn completion zsh > "${fpath[1]}/_kubectl-kfn\""""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", metavar="SHELL", choices=sorted(completion.SCRIPTS), help="bash or zsh")


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(completion.SCRIPTS[args.shell])
    return 0


COMMAND = parser.Command(
    name="completion",
    summary="Print a shell completion script (bash, zsh)",
    description=_DESCRIPTION,
    examples=_EXAMPLES,
    add_arguments=add_arguments,
    run=run,
)
