"""The kfn operator: kopf handlers that keep each Function's children and status true.

Run it with ``python3 -m kfn.operator``. Importing :mod:`kfn.operator.handlers`
registers the handlers with kopf.
"""
