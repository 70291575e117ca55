"""A stream consumer wakes its function when records wait and it has not invoked it lately.

The decision is pure (:mod:`kfn.triggers.stream.waking`, time passed in); the consumer's part
runs a real :class:`source.Consumer` against the stand-in activator on 127.0.0.1.
"""

from __future__ import annotations

import concurrent.futures

from kfn.api import trigger as trigger_api
from kfn.triggers import invoke, onfailure
from kfn.triggers import status as status_
from kfn.triggers.stream import source, waking
from tests.unit.triggers.conftest import ActivatorStub

WAKE_PATH = "/_kfn/functions/shop/fn%3Alive/wake"


def test_records_waiting_for_a_function_never_invoked_wake_it() -> None:
    assert waking.should_wake(1, 100.0, last_invoked=None, last_woken=None)


def test_nothing_pending_wakes_nothing() -> None:
    assert not waking.should_wake(0, 100.0, last_invoked=None, last_woken=None)


def test_a_function_invoked_lately_is_not_woken() -> None:
    idle = waking.IDLE_AFTER
    assert not waking.should_wake(5, 100.0, last_invoked=100.0 - idle + 1, last_woken=None)
    assert waking.should_wake(5, 100.0, last_invoked=100.0 - idle, last_woken=None)


def test_a_function_is_woken_once_per_idle_period_however_many_records_come() -> None:
    idle = waking.IDLE_AFTER
    assert not waking.should_wake(5, 100.0, last_invoked=None, last_woken=99.0)
    assert waking.should_wake(5, 100.0, last_invoked=None, last_woken=100.0 - idle)


def _consumer(activator: ActivatorStub, wakes: concurrent.futures.Executor) -> source.Consumer:
    stream = trigger_api.StreamTrigger.model_validate(
        {"nats": {"servers": ["nats://n:4222"], "subject": "orders.>", "stream": "ORDERS"}}
    )
    target = source.Target("shop", "orders", "uid-1", "fn", stream, qualifier="live")
    invoker = invoke.Invoker(activator.url)
    clients = source.Clients(
        invoker, onfailure.Destinations(invoker), status_.StatusWriter(), wakes=wakes
    )
    return source.Consumer(target, clients)


def test_the_consumer_wakes_its_function_once_when_records_come_after_a_quiet_time(
    activator: ActivatorStub,
) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as wakes:
        consumer = _consumer(activator, wakes)
        consumer.pending(3, 100.0)
        consumer.pending(40, 101.0)  # the burst goes on: one wake is enough
        consumer.invoked(102.0)
        consumer.pending(2, 110.0)  # invoked lately: awake
    assert [call.path for call in activator.calls] == [WAKE_PATH]


def test_the_consumer_wakes_again_after_an_idle_period_and_on_a_lag_alone(
    activator: ActivatorStub,
) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as wakes:
        consumer = _consumer(activator, wakes)
        consumer.invoked(100.0)
        consumer.pending(1, 100.0 + waking.IDLE_AFTER)
        # The broker's lag (reported every few seconds) counts as records waiting.
        consumer.report_lag(7)
    assert [call.path for call in activator.calls] == [WAKE_PATH, WAKE_PATH]
