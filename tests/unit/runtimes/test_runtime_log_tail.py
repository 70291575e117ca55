"""An invocation's own log handed back (``Kfn-Log-Type: Tail`` → ``Kfn-Log-Result``)."""

from __future__ import annotations

import base64
import concurrent.futures

from kfn_runtime import logs

from .conftest import RunningRuntime, Starter


def tail_of(runtime: RunningRuntime, event: object) -> tuple[str, str]:
    answer = runtime.invoke(event, {"Kfn-Log-Type": "Tail"})
    assert answer.status == 200
    rid = answer.headers["Kfn-Request-Id"]
    return rid, base64.b64decode(answer.headers["Kfn-Log-Result"]).decode()


def test_the_tail_holds_the_invocations_start_end_report_and_handler_lines(
    start_runtime: Starter, language: str
) -> None:
    runtime = start_runtime(language, "app.echo")
    runtime.wait_ready()
    rid, tail = tail_of(runtime, {})
    lines = tail.splitlines()
    assert lines[0] == f"START RequestId: {rid} Version: $LATEST"
    assert any("echo says hi" in line and rid in line for line in lines)
    assert any("echo logs via logging" in line for line in lines)
    assert lines[-2] == f"END RequestId: {rid}"
    assert lines[-1].startswith(f"REPORT RequestId: {rid}\tDuration: ")


def test_without_the_header_no_log_is_handed_back(start_runtime: Starter, language: str) -> None:
    runtime = start_runtime(language, "app.echo")
    runtime.wait_ready()
    answer = runtime.invoke({})
    assert answer.status == 200
    assert "Kfn-Log-Result" not in answer.headers


def test_concurrent_invocations_hand_back_only_their_own_lines(
    start_runtime: Starter, language: str
) -> None:
    runtime = start_runtime(language, "app.slow", KFN_CONCURRENCY="4")
    runtime.wait_ready()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: tail_of(runtime, {"ms": 200}), range(4)))
    ids = {rid for rid, _ in results}
    assert len(ids) == 4
    for rid, tail in results:
        assert f"START RequestId: {rid}" in tail
        assert f"REPORT RequestId: {rid}" in tail
        assert not any(other in tail for other in ids - {rid})


def test_a_failed_invocations_tail_holds_its_error_record(
    start_runtime: Starter, language: str
) -> None:
    runtime = start_runtime(language, "app.fail")
    runtime.wait_ready()
    answer = runtime.invoke({}, {"Kfn-Log-Type": "Tail"})
    assert answer.status == 500
    tail = base64.b64decode(answer.headers["Kfn-Log-Result"]).decode()
    assert "BoomError" in tail
    assert "END RequestId" in tail


def test_the_tail_is_the_last_4_kb_as_utf8() -> None:
    text = "é" * 3000 + "the end\n"
    kept = base64.b64decode(logs.tail_base64(text))
    assert len(kept) == logs.TAIL_BYTES
    assert kept.endswith(b"the end\n")
