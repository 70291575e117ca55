"""The per-function metrics: error kinds, the handler's own time, cold-start phases, deletion."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from kfn import stats
from kfn.activator import catalog, cold_start, metrics, server
from tests.unit.apiserver import ApiServer

from .conftest import FN, MakeActivator, until
from .http import Backend, Client
from .test_catalog import IMAGE, body

# --- error kinds (pure) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "function_error", "error_type", "own", "kind"),
    [
        # The pod's answers: only those marked Kfn-Function-Error are errors.
        (200, False, "", False, None),
        (500, False, "", False, None),  # a handler returning 500 is no error, as Lambda
        (503, False, "", False, None),
        (500, True, "ValueError", False, "function"),
        (500, True, "Runtime.MarshalError", False, "function"),
        (429, True, "", False, "function"),
        (504, True, "TimeoutError", False, "timeout"),
        (502, True, "Runtime.ImportModuleError", False, "init"),
        (502, True, "ValueError", False, "init"),  # raised by the module's init code
        (502, True, "", False, "init"),  # its body not read: 502 is the init error's status
        (502, True, "ResponseSizeTooLarge", False, "function"),
        (502, True, "Runtime.InitTimeout", False, "init"),
        # The activator's own answers.
        (429, False, "TooManyRequestsException", True, "throttled"),
        (503, False, "TooManyRequestsException", True, "throttled"),  # byte budget spent
        (504, False, "TimeoutError", True, "timeout"),
        (502, False, "ServiceException", True, "unavailable"),  # could not connect
        (503, False, "ServiceException", True, "unavailable"),
        (0, False, "", True, "unavailable"),
        (502, True, "Runtime.ExitError", True, "exit"),
        (502, True, "Runtime.OutOfMemory", True, "out_of_memory"),
        (404, False, "ResourceNotFoundException", True, None),
        (413, False, "RequestEntityTooLargeException", True, None),
    ],
)
def test_each_answer_has_one_error_kind_or_none(
    status: int, function_error: bool, error_type: str, own: bool, kind: str | None
) -> None:
    assert (
        metrics.classify(status, function_error=function_error, error_type=error_type, own=own)
        == kind
    )


def test_the_error_type_is_read_from_the_beginning_of_a_lambda_shaped_body() -> None:
    assert metrics.error_type(b'{"errorType": "Runtime.ExitError", "errorMessage": "x"}') == (
        "Runtime.ExitError"
    )
    assert metrics.error_type(b'{"errorMessage": "x", "errorType":"Boom"') == "Boom"
    assert metrics.error_type(b'{"errorType": ') == ""
    assert metrics.error_type(b"plain text") == ""


# --- cold-start phases (pure) ------------------------------------------------------------------

T0 = 1_700_000_000.0


def _instants(**given: float | None) -> cold_start.Instants:
    """A cold start of 1.5 s whose every instant was seen, changed by ``given``."""
    seen: dict[str, Any] = {
        "queued": T0,
        "created": T0 + 0.300,
        "bound": T0 + 0.305,
        "start": T0 + 0.600,
        "boot": T0 + 0.640,
        "imported": T0 + 0.700,
        "probed": T0 + 0.710,
        "first_byte": T0 + 1.500,
    }
    seen.update(given)
    return cold_start.Instants(**seen)


def _ms(decided: cold_start.Phases) -> dict[str, float]:
    return {name: round(seconds * 1000, 3) for name, seconds in decided.durations.items()}


def test_every_instant_seen_gives_every_phase_and_nothing_to_other() -> None:
    decided = cold_start.phases(_instants())
    assert _ms(decided) == {
        "scale": 300.0,
        "schedule": 5.0,
        "container_start": 295.0,
        "runtime_init": 40.0,
        "handler_import": 60.0,
        "ready": 10.0,
        "first_byte": 790.0,
        "other": 0.0,
    }
    assert decided.total == pytest.approx(1.5)


def test_what_no_source_saw_goes_to_other() -> None:
    # A runtime that does not report its init: bound -> probed is other's.
    decided = cold_start.phases(_instants(start=None, boot=None, imported=None))
    ms = _ms(decided)
    assert ms["container_start"] == ms["runtime_init"] == ms["handler_import"] == 0
    assert ms["ready"] == 0
    assert ms["other"] == 405.0
    assert sum(decided.durations.values()) == pytest.approx(decided.total)


def test_an_instant_out_of_order_is_left_out_and_its_span_goes_to_other() -> None:
    # The process's start (10 ms resolution) read before the pod's binding was seen.
    decided = cold_start.phases(_instants(start=T0 + 0.301))
    ms = _ms(decided)
    assert ms["container_start"] == ms["runtime_init"] == 0
    assert ms["other"] == 335.0  # bound -> boot
    assert ms["schedule"] == 5.0
    assert ms["handler_import"] == 60.0
    assert all(v >= 0 for v in ms.values())
    assert sum(decided.durations.values()) == pytest.approx(decided.total)
    # An instant after the first byte cannot be true either.
    late = cold_start.phases(_instants(probed=T0 + 2.0))
    assert _ms(late)["ready"] == 0
    assert _ms(late)["other"] == 800.0
    assert sum(late.durations.values()) == pytest.approx(late.total)


def test_the_server_timing_lists_the_phases_in_order_in_milliseconds_then_the_total() -> None:
    header = cold_start.server_timing(cold_start.phases(_instants())).decode()
    assert header == (
        "Server-Timing: scale;dur=300.00, schedule;dur=5.00, container_start;dur=295.00, "
        "runtime_init;dur=40.00, handler_import;dur=60.00, ready;dur=10.00, "
        "first_byte;dur=790.00, other;dur=0.00, cold-start;dur=1500.00\r\n"
    )
    assert cold_start.waited(0.25) == b"Server-Timing: cold-start;dur=250.00\r\n"


def test_the_runtimes_init_timing_is_read_or_refused_whole() -> None:
    value = b"start=1700000000.100000;boot=1700000000.140000;imported=1700000000.200000"
    assert cold_start.parse_init_timing(value) == (1700000000.1, 1700000000.14, 1700000000.2)
    assert cold_start.parse_init_timing(b"start=1;boot=2") is None


def test_a_runtime_that_cannot_tell_its_process_start_still_reports_boot_and_import() -> None:
    assert cold_start.parse_init_timing(b"boot=2.5;imported=3.25") == (None, 2.5, 3.25)
    assert cold_start.parse_init_timing(b"start=x;boot=2;imported=3") is None


# --- through the proxy -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _errors(activator: server.Activator) -> dict[str, int]:
    return dict(activator.metrics.of(FN).errors)


@pytest.mark.asyncio
async def test_the_handlers_own_time_is_observed_and_not_passed_on(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    client = await Client.connect(activator.ports[0])
    response = await client.request("GET", "/timed")
    assert response.status == 200
    assert "kfn-handler-duration" not in response.headers
    await client.request("GET", "/echo")  # no duration sent: none observed
    observed = activator.metrics.of(FN).handler_durations
    assert sum(observed.counts) == 1
    assert observed.total == pytest.approx(0.003712)
    assert activator.metrics.of(FN).invocations == 2
    await client.close()


@pytest.mark.asyncio
async def test_errors_are_counted_by_kind_and_a_handlers_own_5xx_is_none(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    client = await Client.connect(activator.ports[0])
    for path in ("/own503", "/handler429"):
        assert (await client.request("GET", path)).status in (429, 503)
    assert _errors(activator) == {}
    statuses = [
        (await client.request("GET", path)).status
        for path in ("/limited", "/init-error", "/too-large", "/task-timeout")
    ]
    assert statuses == [429, 502, 502, 504]
    assert _errors(activator) == {"function": 2, "init": 1, "timeout": 1}
    assert activator.metrics.of(FN).invocations == 6
    await client.close()


@pytest.mark.asyncio
async def test_a_refusal_of_the_activators_own_is_throttled_and_no_invocation(
    make_activator: MakeActivator,
) -> None:
    activator = await make_activator(queue_limit=1, queue_timeout_ms=200)
    clients = [await Client.connect(activator.ports[0]) for _ in range(2)]
    statuses = sorted(
        r.status for r in await asyncio.gather(*(c.request("GET", "/") for c in clients))
    )
    assert statuses == [429, 429]  # one past the queue's bound, one past its timeout
    assert _errors(activator) == {"throttled": 2}
    assert activator.metrics.of(FN).invocations == 0
    for client in clients:
        await client.close()


# --- a deleted function ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_deleted_functions_series_disappear_with_it() -> None:
    servers = {"Function": ApiServer(), "Trigger": ApiServer(), "FunctionVersion": ApiServer()}

    def reflect(api_version: str, kind: str, *args: Any, **kwargs: Any) -> None:
        servers[kind].reflect(api_version, kind, *args, **kwargs)

    activator = server.Activator()
    cluster = catalog.KubeCatalog(activator.set_functions, activator.set_routes, reflect=reflect)
    running = asyncio.create_task(cluster.run())
    kept, deleted = stats.FunctionKey("team", "kept"), stats.FunctionKey("team", "gone")
    try:
        await asyncio.to_thread(
            servers["Function"].send,
            [body("Function", name, "", source=IMAGE) for name in ("kept", "gone")],
        )
        activator.metrics.of(deleted).invocations += 1
        page = activator.metrics.render().decode()
        assert (
            'kfn_function_invocations_total{function="gone",namespace="team",version="$LATEST"} 1.0'
            in page
        )
        assert (
            'kfn_activator_queue_capacity{function="gone",namespace="team",version="$LATEST"}'
            in page
        )
        await asyncio.to_thread(
            servers["Function"].send, ("DELETED", body("Function", "gone", "", source=IMAGE))
        )
        assert set(activator.ctx.functions) == {kept}
        page = activator.metrics.render().decode()
        assert 'function="gone"' not in page
        assert (
            'kfn_function_invocations_total{function="kept",namespace="team",version="$LATEST"} 0.0'
            in page
        )
        # Its events ending after it are counted, and bring no other series back.
        activator.metrics.event_dropped(deleted, "ResourceNotFound")
        activator.metrics.event_attempted(deleted, 1.0)
        page = activator.metrics.render().decode()
        assert [line for line in page.splitlines() if 'function="gone"' in line] == [
            'kfn_function_async_events_dropped_total{function="gone",namespace="team",'
            'reason="ResourceNotFound",version="$LATEST"} 1.0'
        ]
        # Added again, it starts afresh.
        await asyncio.to_thread(
            servers["Function"].send, ("ADDED", body("Function", "gone", "", source=IMAGE))
        )
        page = activator.metrics.render().decode()
        assert (
            'kfn_function_invocations_total{function="gone",namespace="team",version="$LATEST"} 0.0'
            in page
        )
        assert "ResourceNotFound" not in page
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        for api in servers.values():
            api.hang_up()


# --- the activator's own invocations -----------------------------------------------------------


@pytest.mark.asyncio
async def test_an_event_delivered_through_a_cold_start_pays_for_it_and_is_counted(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(invoke_door=False)
    client = await Client.connect(activator.ports[0])
    accepted = await client.request(
        "POST",
        "/_kfn/functions/default/hello/invoke",
        b"{}",
        headers={"Kfn-Invocation-Type": "Event"},
    )
    assert accepted.status == 202
    throttle = activator.throttlers[FN]
    await until(lambda: throttle.queued == 1)
    activator.update_endpoints(FN, frozenset({backend.address}))
    await asyncio.wait_for(activator.invoker.wait_idle(), 5)
    fm = activator.metrics.of(FN)
    assert fm.events_received == 1
    assert sum(fm.event_ages.counts) == 1
    assert fm.invocations == 1
    assert fm.cold_starts == 1
    assert sum(fm.cold_start_phases["other"].counts) == 1
    await client.close()
