"""``kubectl kfn``: the kubectl plugin for writing, testing and shipping kfn Functions.

* :mod:`kfn.cli.__main__`: the entry points, ``kubectl-kfn`` and ``kubectl_complete-kfn``;
* :mod:`kfn.cli.parser`: global options, the :class:`~kfn.cli.parser.Command` shape, the parser;
* :mod:`kfn.cli.commands`: one module per subcommand;
* pure parts the commands use: :mod:`kfn.cli.scaffold` (what ``init`` writes),
  :mod:`kfn.cli.events` (test events), :mod:`kfn.cli.ignore` (``.kfnignore``),
  :mod:`kfn.cli.package` (a folder as inline source, function.yaml as the Function to apply),
  :mod:`kfn.cli.completion` (shell completion), :mod:`kfn.cli.output` (``-o json|yaml``).

It uses kfn's API models (:mod:`kfn.api`), YAML and the standard library; nothing of kfn's
components.
"""
