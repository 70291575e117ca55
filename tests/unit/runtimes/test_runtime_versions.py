"""Each runtime runs on its own interpreter and tells the handler which runtime it is, as
Lambda's ``AWS_EXECUTION_ENV`` does."""

from __future__ import annotations

from .conftest import Starter, language_of, version_of


def test_the_handler_runs_on_the_runtimes_interpreter_and_is_told_its_name(
    start_runtime: Starter, runtime: str
) -> None:
    rt = start_runtime(language_of(runtime), "whoami.handler")
    r = rt.invoke({})
    assert r.status == 200, r.body
    answer = r.json()
    suffix = ".x" if language_of(runtime) == "nodejs" else ""
    assert answer["executionEnv"] == f"AWS_Lambda_{runtime}{suffix}"
    assert answer["version"].startswith(version_of(runtime) + ".")
