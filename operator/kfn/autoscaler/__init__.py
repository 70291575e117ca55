"""The autoscaler: decides replicas from activator stats, then acts.

* :mod:`kfn.autoscaler.scaling` decides (pure, time passed in).
* :mod:`kfn.autoscaler.autoscaler` keeps state between decisions and acts through
  a :class:`kfn.autoscaler.scaler.Scaler`.
* :mod:`kfn.autoscaler.server` receives :mod:`kfn.stats` messages over HTTP.

It shares nothing with the activator but :mod:`kfn.stats`.
"""
