"""The autoscaler: decides replicas from activator stats, then acts.

* :mod:`kfn.autoscaler.scaling` decides (pure, time passed in).
* :mod:`kfn.autoscaler.autoscaler` keeps state between decisions and acts through
  a :class:`kfn.autoscaler.scaler.Scaler`.
* :mod:`kfn.autoscaler.server` receives :mod:`kfn.stats` messages over HTTP.
* :mod:`kfn.autoscaler.cluster` reads scale bounds from Functions and acts through
  the Deployment ``scale`` subresource.
* :mod:`kfn.autoscaler.metrics` exports the decisions and the stats messages received.

It shares nothing with the activator but :mod:`kfn.stats`.
"""
