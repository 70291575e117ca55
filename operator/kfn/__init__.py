"""kfn: functions as a service on Kubernetes.

The package is layered; each layer imports only those below it:

* ``kfn.api`` — pydantic models of the CRDs, no I/O.
* ``kfn.resources`` — pure builders of the child objects of a Function.
* ``kfn.kube`` — the one place that talks to the Kubernetes API.
* ``kfn.operator`` — thin kopf handlers.

The activator, autoscaler and triggers are separate components that share only
``kfn.api`` and the stats contract in ``kfn.stats``.
"""

__version__ = "0.1.0"
