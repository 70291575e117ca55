"""A Docker registry token service: per-namespace robot credentials for ``docker-registry``.

The registry (CNCF distribution 2.8, ``auth: token``) sends clients without a token to this
service with a ``Bearer`` challenge; the client asks ``GET /token?service=…&scope=…`` with its
credentials and gets a short-lived JWT listing what it may do. The layers:

1. :mod:`~kfn.registry_auth.policy` decides, without I/O: robot credentials
   (``kfn+<namespace>``, an HMAC with an expiry, so no database), subjects, and what each may
   do: a namespace's robot pushes and pulls ``fn/<namespace>/…`` and pulls the public prefixes;
   anonymous pulls the public prefixes; the admin does anything.
2. :mod:`~kfn.registry_auth.jwt` signs the tokens the way the registry verifies them (the
   ``kid`` of a key whose certificate is in the registry's ``rootcertbundle``).
3. :mod:`~kfn.registry_auth.tokens` answers one token request from the two.
4. :mod:`~kfn.registry_auth.server` is the bounded HTTPS endpoint, and ``__main__`` its
   command line.

The registry's side of the configuration::

    auth:
      token:
        realm: https://<this service>/token
        service: <--service>
        issuer: <--issuer>
        rootcertbundle: <a PEM file with jwt.trust_certificate() of --signing-key>
"""
