"""How kfn's own endpoints tell who is calling: shared by every component that serves one.

Any pod can open a connection to any Service, so an endpoint that acts on what it is sent
decides for itself who sent it (docs/security.md). The parts:

* :mod:`~kfn.authn.tokens` (pure): a bearer header read, the API server's TokenReview read as
  an :class:`~kfn.authn.tokens.Identity`, and for how long that answer may be kept.
* :mod:`~kfn.authn.reviews`: reviewed tokens kept for a minute (never past the token's
  expiry) and one review shared by concurrent callers; the API server is asked through a
  blocking call the component hands in (``kfn.kube.review_token``), run off the event loop.
* :mod:`~kfn.authn.tokenfile`: the caller's side, a projected ServiceAccount token read
  again as the kubelet rotates it.
* :mod:`~kfn.authn.webhooks` (pure): the secrets of object stores that can only call a URL,
  derived from one key so that nothing is stored per Trigger.

A leaf: it imports the standard library and kfn's pure leaves only (the cache it keeps
answers in is :class:`kfn.expiring.Expiring`), never a component, ``kfn.kube`` or an I/O
library, so the activator, the autoscaler, the operator and the trigger workers can all use it.
"""
