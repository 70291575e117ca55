"""The in-cluster builder: source + dependencies onto a runtime image, without a container engine.

A build runs as a Kubernetes Job that the operator creates for one Function and one build hash
(``kfn.resources.build``). The Job runs ``python3 -m kfn.builder`` on the kfn image, unprivileged,
as uid 65532, with a read-only root filesystem and an ``emptyDir`` workspace:

1. **Source** (:mod:`kfn.builder.source`): inline and ``configMapRef`` files arrive as a
   ConfigMap the operator owns, mounted at ``/source``; an archive is downloaded over HTTP(S)
   from no loopback, link-local or metadata address (:mod:`kfn.builder.fetch`) and refused
   unless its SHA-256 is the one in the spec. Zip and tar archives are unpacked within bounds
   (``KFN_BUILD_MAX_UNPACKED_BYTES``, ``KFN_BUILD_MAX_FILES``) without letting a member escape
   the code directory. The URL is logged and reported without its query string.
2. **Dependencies** (:mod:`kfn.builder.deps`): ``requirements.txt`` plus ``spec.dependencies``
   (Python, installed with pip into ``/opt/python``) or ``package.json`` plus
   ``spec.dependencies`` (Node.js, installed with npm into ``/opt/nodejs/node_modules``; npm runs
   in an init container on the Node.js runtime image, which has npm). Both paths are on the
   runtimes' import paths, as Lambda layers are. The package index is the one kfn is configured
   with (``KFN_PYPI_INDEX_URL`` / ``KFN_NPM_REGISTRY``): pods never reach the internet.
   The dependency layer is keyed by what decides it (runtime image, dependency list, the
   manifest files). A rebuild whose key is one the operator recorded for the Function
   (``KFN_BUILD_DEPENDENCY_LAYERS``, from its status) reuses that layer by its digest instead
   of installing again; no layer is ever found by a tag, which anyone who can push could set.
3. **Layers** (:mod:`kfn.builder.layers`): each of ``spec.layers`` (``KFN_BUILD_LAYERS``), an
   archive checked by its SHA-256 or an image's ``/opt``, becomes one image layer under
   ``/opt``, reused by digest when the operator recorded it (``KFN_BUILD_LAYER_RECORDS``).
4. **Image** (:mod:`kfn.builder.build`): the dependency layer and a code layer (``/var/task``)
   are made with :meth:`kfn.oci.BlobStore.layer_from_tree` (times zeroed, owners fixed, so equal
   trees give equal digests) and pushed on top of the runtime image with :func:`kfn.oci.extend`,
   which mounts the runtime's layers inside the registry instead of copying them; the order is
   runtime, ``spec.layers``, dependencies, code, so the function's own files win.

The registry is spoken to over HTTPS (checked against ``KFN_REGISTRY_CA_FILE`` when set), with
the namespace's login from a mounted ``.dockerconfigjson`` Secret (``KFN_REGISTRY_AUTH_FILE``,
named in messages as ``KFN_REGISTRY_AUTH_SOURCE``); ``KFN_REGISTRY_PLAIN_HTTP=true`` is for the
development registry only. A refused login or push ends the build with the registry's answer.

The result (or the error) is written as JSON to ``/dev/termination-log``, where the operator
reads it from the pod's status: the image's digest there is the only proof of a build the
operator accepts (:mod:`kfn.resources.provenance`). The log of every step goes to stdout for
``kubectl logs``. Only the standard library, :mod:`kfn.oci` and the URL rules
(:mod:`kfn.urls`) are used.
"""
