"""A replica leaving after SIGTERM (:func:`kfn.triggers.bucket.worker.run`, whole): the
poller Lease goes as soon as it polls no more, while its events in hand still end."""

from __future__ import annotations

import threading
import time

from kfn.triggers import lease
from kfn.triggers.bucket import poller, worker
from tests.unit.apiserver import ApiServer
from tests.unit.triggers.bucket.conftest import Store
from tests.unit.triggers.bucket.helpers import Recorder, make_worker, notification, trigger
from tests.unit.triggers.test_lease_keeper import LeaseEndpoint

#: Short enough for a test, in the proportions of the real one.
QUICK = worker.Shutdown(
    drain=0.3, quiet=0.1, drain_max=1.0, patience=5.0, grace=6.0, last_answers=0.5
)


def holder(endpoint: LeaseEndpoint) -> str:
    return str(((endpoint.lease or {}).get("spec") or {}).get("holderIdentity") or "")


def test_a_stopping_leader_gives_the_poller_lease_up_while_it_still_finishes_its_events(
    store: Store,
) -> None:
    endpoint = LeaseEndpoint()
    keeper = lease.LeaseKeeper("kfn-system", poller.LEASE_NAME, "old-replica", api=endpoint)
    slow = Recorder()
    slow.gate.clear()  # its function still runs when SIGTERM comes
    bucket = make_worker(slow, lease=keeper)
    api = ApiServer()
    bucket.routes.reflect = api.reflect
    running = threading.Thread(target=worker.run, args=(bucket, ("127.0.0.1", 0)),
                               kwargs={"shutdown": QUICK}, daemon=True)  # fmt: skip
    running.start()
    api.send([trigger(endpoint=store.url)])  # the Triggers' list; then nothing changes
    answers: list[tuple[int, str]] = []
    try:
        deadline = time.monotonic() + 10
        while holder(endpoint) != "old-replica" or not bucket.routes.synced.is_set():
            assert time.monotonic() < deadline, "the replica never led"
            time.sleep(0.05)
        sender = threading.Thread(
            target=lambda: answers.append(bucket.handle_push(notification("in/a.jpg")))
        )
        sender.start()
        while not slow.calls and time.monotonic() < deadline and bucket.held.wait_settled(0):
            time.sleep(0.01)
        bucket.terminating.set()  # SIGTERM
        soon = time.monotonic() + QUICK.patience / 2
        while holder(endpoint) and time.monotonic() < soon:
            time.sleep(0.05)
        assert holder(endpoint) == "", "the Lease was kept while the replica was leaving"
        assert running.is_alive()
        assert not bucket.held.wait_settled(0), "the event in hand had to end first"
    finally:
        slow.gate.set()
        api.hang_up()
    sender.join(10)
    running.join(15)
    assert not running.is_alive()
    assert answers == [(200, "1 events handled")]
    assert holder(endpoint) == ""
