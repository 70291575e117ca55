"""kfn's one clock: aware UTC time, as Kubernetes writes it."""

from __future__ import annotations

import datetime

from kfn import clock


def test_the_clock_reads_aware_utc_time_between_two_readings_of_the_system_clock() -> None:
    before = datetime.datetime.now(datetime.UTC)
    now = clock.utcnow()
    after = datetime.datetime.now(datetime.UTC)
    assert now.tzinfo is datetime.UTC
    assert before <= now <= after
