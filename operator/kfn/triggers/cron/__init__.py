"""The cron trigger worker: fires Triggers with ``spec.cron`` on their schedule.

Design:

* :mod:`~kfn.triggers.cron.schedule` is pure: parsing cron, ``rate()`` and ``@every``
  expressions, the next tick in a time zone, which ticks to fire after an outage and the
  EventBridge-shaped event. Time is always passed in.
* :mod:`kfn.triggers.leader` decides, from a ``coordination.k8s.io/v1`` Lease and this
  replica's own monotonic clock, whether it leads (:mod:`kfn.triggers.lease` keeps the
  Lease). Only the leader fires, so several replicas give one fire per tick; a replica that
  cannot renew in time stops firing before its lease could have been taken over.
* :mod:`~kfn.triggers.cron.validity` says, purely, why a schedule can never fire (it does not
  parse, its time zone is unknown, it names no date that occurs), in words for the
  Trigger's ``InvalidSchedule`` condition.
* :mod:`~kfn.triggers.cron.overlap` decides, purely, which of a Trigger's ticks start, wait
  or are skipped while its earlier ticks are in hand; :mod:`~kfn.triggers.cron.lanes` runs
  each Trigger's fires in threads of their own under that decision.
* :mod:`~kfn.triggers.cron.table` is the table of cron Triggers the watch keeps.
* :mod:`~kfn.triggers.cron.worker` is the process: a reflector thread keeps every cron
  Trigger in memory, a lease thread keeps leadership, and the main loop sleeps until the
  earliest tick, then hands it to the Trigger's lane, which delivers the event through
  :mod:`kfn.triggers.delivery` (a synchronous invoke through the activator, which wakes the
  function, with the Trigger's retries and onFailure destination) and records
  ``status.lastFireTime`` and ``status.nextFireTime``.

Delivery is at least once on a leader crash: ``lastFireTime`` is written after the tick was
handled, so a leader that dies in between leaves the tick to its successor (under CatchUp).
Event ids are derived from the Trigger's uid and the tick, so the duplicate carries the
same id and a handler can drop it.
"""
