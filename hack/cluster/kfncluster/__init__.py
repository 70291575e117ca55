"""kfn's local single-node Kubernetes cluster, built and run on this machine.

See ``docs/local-cluster.md`` for what runs, where its state and logs live,
and how pods are kept from reaching anything off the machine.
"""
