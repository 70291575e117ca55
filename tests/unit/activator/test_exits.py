"""Why a function's process died mid-request: the pod's reported exit, and the answer."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from kfn.activator import answers, exits
from kfn.resources import deployment


def container(**status: Any) -> dict[str, Any]:
    return {"containerStatuses": [{"name": "function", **status}]}


OOM = {"terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": "2026-12-04T10:00:05Z"}}
ERROR = {"terminated": {"reason": "Error", "exitCode": 1, "finishedAt": "2026-12-04T10:00:07Z"}}

# --- reading the pod's status ---------------------------------------------------------------


def test_the_container_exits_are_read_from_the_container_the_function_runs_in() -> None:
    assert exits.CONTAINER == deployment.CONTAINER_NAME


def test_a_running_container_that_never_ended_has_no_exit() -> None:
    assert exits.of_pod(container(restartCount=0, state={"running": {}})) == (0, None)
    assert exits.of_pod({}) == (0, None)


def test_a_container_restarted_after_an_oom_kill_reports_it_in_its_last_state() -> None:
    count, last = exits.of_pod(container(restartCount=2, state={"running": {}}, lastState=OOM))
    assert count == 2
    assert last == exits.Exit("OOMKilled", 137, 1796378405.0)
    assert last.out_of_memory


def test_a_container_ended_and_not_yet_restarted_counts_once_more_from_its_state() -> None:
    count, last = exits.of_pod(container(restartCount=1, state=ERROR, lastState=OOM))
    assert count == 2
    assert last is not None
    assert (last.reason, last.exit_code) == ("Error", 1)
    assert not last.out_of_memory


def test_the_function_container_is_chosen_among_several() -> None:
    status = {
        "containerStatuses": [
            {"name": "sidecar", "restartCount": 5, "lastState": ERROR},
            {"name": "function", "restartCount": 1, "lastState": OOM},
        ]
    }
    count, last = exits.of_pod(status)
    assert (count, last and last.reason) == (1, "OOMKilled")


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (137, "signal: killed"),
        (139, "signal: segmentation fault"),
        (134, "signal: aborted"),
        (1, "exit status 1"),
        (0, "exit status 0"),
    ],
)
def test_an_exit_is_described_in_lambdas_words(code: int, words: str) -> None:
    assert exits.Exit("Error", code).describe() == words


# --- waiting for the report -----------------------------------------------------------------

ADDRESS = "10.0.0.7:8080"


@pytest.mark.asyncio
async def test_a_waiter_gets_the_next_exit_the_pod_reports() -> None:
    known = exits.Exits()
    known.observe(ADDRESS, 1, exits.Exit("Error", 1, finished=1.0))
    waiting = asyncio.ensure_future(known.next_exit(ADDRESS, wait=5))
    await asyncio.sleep(0)
    known.observe(ADDRESS, 1, exits.Exit("Error", 1, finished=1.0))  # the same, old end
    await asyncio.sleep(0)
    assert not waiting.done()
    oom = exits.Exit("OOMKilled", 137, finished=time.time())
    known.observe(ADDRESS, 2, oom)
    assert await waiting is oom


@pytest.mark.asyncio
async def test_a_new_last_exit_wakes_a_waiter_even_before_the_restart_count_moves() -> None:
    # In crash-loop back-off the kubelet reports the end in lastState, restartCount unchanged.
    known = exits.Exits()
    known.observe(ADDRESS, 1, exits.Exit("Error", 1, finished=1.0))
    waiting = asyncio.ensure_future(known.next_exit(ADDRESS, wait=5))
    await asyncio.sleep(0)
    again = exits.Exit("Error", 3, finished=time.time())
    known.observe(ADDRESS, 1, again)
    assert await waiting is again


@pytest.mark.asyncio
async def test_an_exit_reported_before_the_wait_ended_an_earlier_request_and_is_not_taken() -> None:
    known = exits.Exits()
    known.observe(ADDRESS, 1, exits.Exit("OOMKilled", 137, finished=time.time() - 1))
    assert await known.next_exit(ADDRESS, wait=0.05) is None


@pytest.mark.asyncio
async def test_no_report_within_the_wait_gives_no_exit() -> None:
    known = exits.Exits()
    started = time.monotonic()
    assert await known.next_exit(ADDRESS, wait=0.05) is None
    assert time.monotonic() - started < 1.0
    assert not known._waiting


@pytest.mark.asyncio
async def test_a_pod_deleted_while_waited_on_gives_no_exit_at_once() -> None:
    known = exits.Exits()
    waiting = asyncio.ensure_future(known.next_exit(ADDRESS, wait=5))
    await asyncio.sleep(0)
    known.forget(ADDRESS)
    assert await asyncio.wait_for(waiting, 1) is None


# --- the answer -----------------------------------------------------------------------------


def body(answer: answers.Answer) -> dict[str, str]:
    result: dict[str, str] = json.loads(answer.body)
    return result


def test_an_oom_killed_process_is_answered_as_lambdas_runtime_out_of_memory() -> None:
    answer = answers.runtime_exited(b"r-1", exits.Exit("OOMKilled", 137))
    assert answer.status == 502
    assert answer.extra == answers.FUNCTION_ERROR
    assert body(answer) == {
        "errorType": "Runtime.OutOfMemory",
        "errorMessage": "RequestId: r-1 Error: Runtime exited with error: signal: killed",
    }


def test_another_exit_is_a_runtime_exit_error_with_its_status() -> None:
    answer = answers.runtime_exited(b"r-2", exits.Exit("Error", 3))
    assert body(answer)["errorType"] == "Runtime.ExitError"
    assert body(answer)["errorMessage"].endswith("Runtime exited with error: exit status 3")
    assert answer.extra == answers.FUNCTION_ERROR


def test_without_a_report_the_exit_error_says_what_is_known() -> None:
    answer = answers.runtime_exited(b"r-3")
    assert body(answer)["errorType"] == "Runtime.ExitError"
    assert "before it answered" in body(answer)["errorMessage"]
