"""kfn's API: the ``Function`` and ``Trigger`` kinds of group ``kfn.dev``, version ``v1alpha1``.

Design notes
------------

* **One source of truth.** The pydantic models here generate the CRDs in ``crds/``
  (``python -m kfn.api.crdgen --out crds/``, ``make crds``); a unit test fails when the committed
  YAML differs. Field descriptions become ``kubectl explain`` text, so every field has one.
* **Every rule written twice, side by side.** Object-level rules are :class:`kfn.api.meta.Rule`
  values holding the CEL expression for the API server and a Python check with the same message.
  The CEL lands in ``x-kubernetes-validations``; the check runs as a pydantic validator. Offline
  validation therefore fails with the server's words, and ``tests/cases`` holds a catalogue of
  invalid objects that must fail both ways. Transition rules (``oldSelf``: a Trigger's kind, a
  stream's consumer group and starting position) exist only on the server.
* **Structural and cheap.** :mod:`kfn.api.crdgen` inlines references and unwraps ``Optional``;
  there are no unions, no floats, and every string and list in a spec is bounded, which keeps
  the CEL cost estimate far below the API server's budget.
* **Defaults in the schema.** The server applies them, so every client (``kubectl``, the
  operator, the trigger workers) sees the same object; the pydantic defaults are the same values
  and a cluster test compares them with what the server stored.
* **Lambda where Lambda has an answer.** 128Mi, one request per pod, 15-minute maximum timeout,
  stream retries until record expiry (``-1``), two async retries within six hours, and an
  ``onFailure`` destination so no event disappears silently.
* **Conditions, not phases.** ``Ready`` summarises ``SourceReady``, ``BuildSucceeded`` and
  ``Deployed``; ``Active`` is outside ``Ready`` so a function scaled to zero stays Ready.
  :mod:`kfn.api.conditions` sets them with time passed in.

* **Routes belong to namespaces.** Whose an HTTP route is depends on every HTTP Trigger, not on
  one object, so no schema can say it: :mod:`kfn.api.routes` decides it, purely, for the
  operator (conditions) and the activator (routing) alike.

No module in this package performs I/O.
"""
