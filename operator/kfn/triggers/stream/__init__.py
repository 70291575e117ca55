"""The stream trigger worker: Lambda's event source mappings for Kafka (and JetStream).

Design:

* One consumer per stream Trigger, in the Kafka consumer group ``spec.kafka.consumerGroup``
  (default ``kfn.<namespace>.<trigger>``); several worker replicas share the partitions
  through the group. :mod:`~kfn.triggers.stream.worker` reflects the Triggers and starts,
  restarts (new generation) and stops consumers.
* Each invocation carries records of ONE partition: at most ``batchSize``, gathered for at
  most ``maxBatchingWindow``, below Lambda's 6 MB request limit. Partitions run
  concurrently, each strictly in order, never with two batches in flight
  (:mod:`~kfn.triggers.stream.kafka`).
* Invocations are synchronous, through the activator (:class:`kfn.triggers.invoke.Invoker`),
  which wakes a function at zero. The event has Lambda's self-managed Kafka shape
  (:mod:`~kfn.triggers.stream.events`).
* Kafka offsets are committed synchronously (offset + 1) only for the longest prefix of a batch
  the function succeeded for or that went to onFailure (:mod:`~kfn.triggers.stream.runner`),
  so delivery is at least once: a killed worker's uncommitted records are delivered again.
  On revocation and at SIGTERM fetching stops, the in-flight batch finishes and commits.
* Failures are decided by pure functions with time passed in
  (:mod:`~kfn.triggers.stream.batching`): a function error retries the batch after 1 s
  doubling to 30 s, up to ``maxRetries`` (-1: until ``maxRecordAge``); with
  ``bisectBatchOnError`` a failed batch is split in halves first (a split is not a retry),
  which isolates a poison record while the rest flows; with ``reportBatchItemFailures`` the
  records before the lowest reported ``itemIdentifier`` (the record's offset, as a string)
  are done and the rest is retried. Records older than ``maxRecordAge`` are not invoked.
  Given-up records go to ``onFailure`` as Lambda's failure record (condition
  ``RetriesExhausted`` or ``RecordAgeExceeded``, ``approximateInvokeCount``,
  ``responseContext``) with ``KafkaBatchInfo`` and, as ``requestPayload``, the event of
  exactly those records; without a destination they are logged, counted and skipped.
  Throttling, an unavailable activator or a missing function never use retries: the
  partition backs off indefinitely and, its buffer full, stops fetching.
* JetStream (:mod:`~kfn.triggers.stream.nats`): one durable pull consumer per Trigger
  (``spec.nats.durableName``, default ``kfn_<namespace>_<trigger>``), created if missing
  with explicit acks, the Trigger's subject as filter, the deliver policy from
  ``startingPosition`` and ``max_ack_pending`` = ``batchSize``, so the server hands out one
  batch at a time and replicas sharing the durable keep the stream's order. nats-py runs
  on an event loop of the consumer's own; batches go through the same runner and decisions
  (``itemIdentifier``: the stream sequence). The finished prefix of a batch is acked, in
  order, when the batch ends (an earlier ack would free slots for another replica to pull
  past the records still retried); held records get in-progress acks meanwhile, so
  ``ack_wait`` (30 s) only bounds how long a dead worker's records stay hidden. Failed
  records are retried, never NAK'd; at shutdown the unprocessed ones are NAK'd so they are
  redelivered at once. ``lag`` is the consumer's pending plus ack-pending records.
* Status (:mod:`kfn.triggers.status`): SourceReachable (broker or topic errors, missing
  credentials, a Secret not allowed for these brokers), Delivering (the last function
  error), ``lag`` (high watermark minus committed, summed over the assigned partitions) and
  ``lastEventTime``. Metrics by trigger through :mod:`kfn.triggers.metrics`.
"""
