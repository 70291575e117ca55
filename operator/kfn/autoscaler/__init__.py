"""The autoscaler: decides replicas from activator stats, then acts.

* :mod:`kfn.autoscaler.scaling` decides (pure, time passed in).
* :mod:`kfn.autoscaler.autoscaler` keeps state between decisions and acts through
  a :class:`kfn.autoscaler.scaler.Scaler`.
* :mod:`kfn.autoscaler.server` receives :mod:`kfn.stats` messages over HTTP.
* :mod:`kfn.autoscaler.cluster` reads scale bounds from Functions and acts through
  the Deployment ``scale`` subresource.
* :mod:`kfn.autoscaler.rollouts` moves aliases with a ``rollout`` in steps and back, from
  the same stats (:mod:`kfn.rollout` decides), writing ``status.aliases`` and Events.
* :mod:`kfn.autoscaler.metrics` exports the decisions and the stats messages received.

It shares nothing with the activator but :mod:`kfn.stats` (and :mod:`kfn.rollout`'s bins).
"""
