"""kfn: functions as a service on Kubernetes.

The operator is layered; each layer imports only those below it:

* ``kfn.operator`` — thin kopf handlers and the reconcile glue.
* ``kfn.kube`` — the one place that talks to the Kubernetes API.
* ``kfn.resources`` — pure builders of a Function's children and its status.
* ``kfn.api`` — pydantic models of the CRDs, no I/O.

The other components run as processes of their own and never import one another: the
activator (``kfn.activator``), the autoscaler (``kfn.autoscaler``), the trigger workers
(``kfn.triggers``), the builder that build Jobs run (``kfn.builder``), the chart's smoke test
(``kfn.smoketest``) and the registry token service (``kfn.registry_auth``). They share only
these modules:

* ``kfn.api`` — the operator, the activator, the autoscaler and the trigger workers.
* ``kfn.kube`` — the same four and the smoke test.
* ``kfn.stats`` — the message from the activator to the autoscaler.
* ``kfn.retry`` — Lambda's asynchronous retry rule, for the activator and the trigger workers.
* ``kfn.clock`` — the clock and its types, for every component that reads the time.
* ``kfn.oci`` and ``kfn.ociauth`` — the registry client: the builder pushes with it, the
  operator asks whether an image exists.
* ``kfn.registry_auth.policy`` — the robot credentials the token service checks, which the
  operator's builders (``kfn.resources``) issue.

``kfn.api``, ``kfn.stats``, ``kfn.retry`` and ``kfn.clock`` are leaves: they import no other
part of kfn and no I/O library. The import contracts in ``pyproject.toml`` enforce the layers,
the leaves and the separation of the components.
"""

__version__ = "0.1.0"
