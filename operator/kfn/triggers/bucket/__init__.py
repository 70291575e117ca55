"""The bucket trigger worker: S3 object changes invoke functions, as S3 → Lambda does.

Design:

* :mod:`~kfn.triggers.bucket.events` is pure: it reads the notifications MinIO, Ceph RGW,
  versitygw and AWS push (each spells event names, keys and eTags a little differently),
  matches them against a Trigger's ``events`` and ``filter`` (on the real, decoded key) and
  writes the one event a Lambda handler expects: ``{"Records": [<one record>]}`` with
  ``eventName`` such as ``ObjectCreated:Put``, the key URL-encoded as AWS does and
  ``configurationId`` = the Trigger's name. Request ids are derived from the change, so a
  resend carries the same id and a handler can drop the duplicate.
* **Push mode** (:mod:`~kfn.triggers.bucket.receiver`, :mod:`~kfn.triggers.bucket.push`,
  :mod:`~kfn.triggers.bucket.holding`): stores POST to ``/events`` (routed by bucket name
  to every matching Push Trigger) or ``/events/<namespace>/<trigger>``. The
  answer is 200 only after every matching record was delivered or sent to onFailure, so
  nothing is acknowledged before it is handled; a sender that stops waiting does not cancel
  the handling. On SIGTERM ``/healthz`` turns 503 at once, the replica keeps receiving for
  a few seconds (until the Service stops sending to it), finishes what it has in hand, and
  exits; a rolling restart loses nothing. Before the Triggers are listed the replica is not
  ready and answers 503, so it never drops a notification for a Trigger it has not seen.
  Stores send a notification once at best, so the poller also lists Push Triggers' buckets
  (with their credentials) and delivers what no notification brought; the
  :mod:`~kfn.triggers.bucket.ledger` records pushed changes so that catch-up does not
  double them (:mod:`~kfn.triggers.bucket.poll` says how), and takes the record of an
  event back when no replica could deliver or take it, so that catch-up delivers it.
* **Poll mode** (:mod:`~kfn.triggers.bucket.poller`, :mod:`~kfn.triggers.bucket.poll`,
  :mod:`~kfn.triggers.bucket.s3`): the replica holding the ``kfn-bucket-poller`` Lease
  (the cron worker's election rules) lists each bucket every ``pollInterval`` with
  ListObjectsV2 (SigV4-signed, standard library) and diffs the listing against a snapshot
  ``{key: eTag}``: new or changed keys become ``ObjectCreated:Put``, missing ones
  ``ObjectRemoved:Delete``. The snapshot lives in the ConfigMap ``kfn-bucket-<trigger>``
  (gzip + base64 JSON, owned by the Trigger) and moves on only by handled changes, written
  after each batch: a poller killed mid-burst leaves the rest to the next leader, which
  resends at most the batch that was in flight.
  **The first poll takes the listing as the baseline: objects that existed before the
  Trigger (or before its endpoint, bucket or filter changed) produce no events.** Objects
  a new Trigger's first listing shows changed after its creation are reported
  (:func:`~kfn.triggers.bucket.poll.baseline`), so an upload made just after it and before
  that listing is not lost with a notification that reached no replica knowing the Trigger.
* Delivery (:mod:`~kfn.triggers.bucket.dispatch`) goes through
  :class:`kfn.triggers.delivery.AsyncDeliverer` with the Trigger's ``delivery`` policy
  (Lambda's async retries, then onFailure); status (:mod:`~kfn.triggers.bucket.conditions`,
  :mod:`~kfn.triggers.bucket.verdicts`) through
  :class:`kfn.triggers.status.StatusWriter` (SourceReachable, Delivering,
  ``lastEventTime``). Credentials are read from the Trigger's Secret on each poll and never
  appear in status, logs or errors.

Limits: a snapshot must fit a ConfigMap (about 20 000 keys of typical length; narrow the
filter prefix beyond that); Poll mode cannot tell a rewrite with identical content (same
eTag) from no change, and reports every other kind of creation as ``ObjectCreated:Put``.
"""
