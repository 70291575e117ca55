"""``kubectl kfn deploy``: what it applies, when nothing changed, and how it reads progress."""

from __future__ import annotations

import copy
import pathlib
import re
from typing import Any

import pytest

from kfn.cli import errors, progress, scaffold
from kfn.cli.commands import deploy

from .conftest import Run

# --- what is applied ---------------------------------------------------------------------------

TRIGGER = """\
---
apiVersion: kfn.dev/v1alpha1
kind: Trigger
metadata:
  name: hello-every-minute
spec:
  functionRef: {name: hello}
  cron: {schedule: "* * * * *"}
"""


def _folder(tmp_path: pathlib.Path, extra: str = "") -> pathlib.Path:
    folder = tmp_path / "hello"
    for name, text in scaffold.files("hello", "python3.13").items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    if extra:
        with (folder / "function.yaml").open("a") as f:
            f.write(extra)
    return folder


def test_the_function_and_the_documents_beside_it_are_applied_in_the_namespace(
    tmp_path: pathlib.Path,
) -> None:
    folder = _folder(tmp_path, TRIGGER)

    fn, trigger = deploy.objects(folder, folder / "function.yaml", "team-a")

    assert fn["kind"] == "Function"
    assert fn["metadata"]["namespace"] == "team-a"
    names = [f["name"] for f in fn["spec"]["source"]["inline"]["files"]]
    assert names == ["app.py", "requirements.txt"]  # events/ and the rest left out
    assert fn["metadata"]["annotations"]["kfn.dev/source-hash"]
    assert (trigger["kind"], trigger["metadata"]) == (
        "Trigger",
        {"name": "hello-every-minute", "namespace": "team-a"},
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
         re.escape("holds a Deployment (apps/v1); deploy applies Function, Trigger, ConfigMap, "
                   "Secret, ServiceAccount: apply the rest with kubectl apply")),
        (TRIGGER.replace("name: hello-every-minute", "name: t\n  namespace: prod"),
         'the namespace of Trigger t in .* "prod" does not match the namespace "team-a"'),
        (TRIGGER.replace('cron: {schedule: "* * * * *"}', "cron: {}"),
         "the Trigger hello-every-minute is not valid: spec.cron.schedule"),
        ("---\napiVersion: kfn.dev/v1alpha1\nkind: Function\nmetadata: {name: two}\n",
         "must hold exactly one Function; it holds 2"),
    ],
    ids=["foreign-kind", "other-namespace", "invalid-trigger", "two-functions"],
)  # fmt: skip
def test_what_deploy_cannot_apply_is_refused_before_the_cluster_is_asked(
    tmp_path: pathlib.Path, extra: str, message: str
) -> None:
    folder = _folder(tmp_path, extra)

    with pytest.raises(errors.CliError, match=message):
        deploy.objects(folder, folder / "function.yaml", "team-a")


def test_a_folder_without_function_yaml_says_where_to_run_deploy(tmp_path: pathlib.Path) -> None:
    with pytest.raises(
        errors.CliError, match=r"function\.yaml not found: run deploy in a function"
    ):
        deploy.objects(tmp_path, tmp_path / "function.yaml", "team-a")


def test_a_kubeconfig_that_cannot_be_read_says_which_options_choose_one(
    kfn: Run, tmp_path: pathlib.Path
) -> None:
    folder = _folder(tmp_path)

    result = kfn("deploy", str(folder), "--kubeconfig", str(tmp_path / "missing"))

    assert result.code == 1
    assert result.err.startswith("error: cannot read the kubeconfig")
    assert "pass --kubeconfig FILE or set KUBECONFIG" in result.err


def test_a_bad_timeout_is_an_error_before_anything_is_read(kfn: Run) -> None:
    result = kfn("deploy", ".", "--timeout", "ten minutes")

    assert result.code == 1
    assert result.err.startswith('error: --timeout: invalid duration "ten minutes"')


# --- unchanged ---------------------------------------------------------------------------------


def _live() -> dict[str, Any]:
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Function",
        "metadata": {
            "name": "hello",
            "namespace": "team-a",
            "generation": 3,
            "resourceVersion": "100",
            "annotations": {"kfn.dev/source-hash": "abc"},
            "managedFields": [{"manager": "kubectl-kfn"}],
        },
        "spec": {
            "runtime": "python3.13",
            "handler": "app.handler",
            "scale": {"idleTimeout": "60s"},
        },
        "status": {"observedGeneration": 3},
    }


def test_a_dry_run_that_changes_nothing_but_bookkeeping_is_unchanged() -> None:
    live = _live()
    would_be = copy.deepcopy(live)
    would_be["metadata"]["managedFields"] = [{"manager": "kubectl-kfn", "time": "later"}]
    would_be["metadata"]["resourceVersion"] = "101"

    assert progress.changes(live, would_be) == []


def test_new_code_changes_the_source_hash_annotation_and_the_spec() -> None:
    live = _live()
    would_be = copy.deepcopy(live)
    would_be["metadata"]["annotations"]["kfn.dev/source-hash"] = "def"
    would_be["spec"]["source"] = {"inline": {"files": []}}

    assert progress.changes(live, would_be) == ["spec", "annotations"]


def test_a_field_dropped_from_function_yaml_is_a_change() -> None:
    live = _live()
    would_be = copy.deepcopy(live)
    del would_be["spec"]["scale"]  # the dry run drops what deploy no longer sends

    assert progress.changes(live, would_be) == ["spec"]


def test_an_object_that_does_not_exist_is_created() -> None:
    assert progress.changes(None, _live()) == ["created"]


# --- progress ----------------------------------------------------------------------------------


def _fn(
    generation: int, observed: int | None, *conditions: tuple[str, str, str, str]
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "conditions": [
            {"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in conditions
        ]
    }
    if observed is not None:
        status["observedGeneration"] = observed
    return {"metadata": {"name": "hello", "generation": generation}, "status": status}


def test_conditions_of_an_older_generation_are_not_taken_for_the_new_spec() -> None:
    fn = _fn(4, 3, ("Ready", "True", "Ready", ""), ("BuildSucceeded", "True", "Built", ""))

    assert progress.state(fn) == progress.State(
        "waiting", "waiting for the operator to take generation 4"
    )
    assert progress.state(_fn(1, None)).phase == "waiting"


def test_a_running_build_names_its_job() -> None:
    fn = _fn(
        2, 2,
        ("SourceReady", "True", "SourceResolved", "2 inline file(s)"),
        ("BuildSucceeded", "Unknown", "Building", "build hello-build-0123456789ab running"),
        ("Deployed", "Unknown", "Deploying", "waiting for an image"),
    )  # fmt: skip

    state = progress.state(fn)

    assert state == progress.State(
        "building", "build hello-build-0123456789ab running", "hello-build-0123456789ab"
    )
    assert not state.done


def test_a_failed_build_ends_the_wait_with_its_message() -> None:
    fn = _fn(
        2, 2,
        ("BuildSucceeded", "False", "CodeCheckFailed", "app.py:3: SyntaxError: invalid syntax"),
        ("Ready", "False", "CodeCheckFailed", "app.py:3: SyntaxError: invalid syntax"),
    )  # fmt: skip

    state = progress.state(fn)

    assert state.phase == "failed"
    assert state.done
    assert state.message == (
        "BuildSucceeded is False (CodeCheckFailed): app.py:3: SyntaxError: invalid syntax"
    )


def test_a_built_function_is_deploying_until_ready() -> None:
    built = ("BuildSucceeded", "True", "Built", "image r/fn@sha256:1")
    rolling = _fn(2, 2, built, ("Deployed", "Unknown", "Deploying", "rolling out: 0 of 1 pods"))
    ready = _fn(2, 2, built, ("Deployed", "True", "Deployed", ""), ("Ready", "True", "Ready", ""))

    assert progress.state(rolling) == progress.State("deploying", "rolling out: 0 of 1 pods")
    assert progress.state(ready).phase == "ready"


def test_a_deployment_whose_pods_fail_ends_the_wait() -> None:
    fn = _fn(
        2, 2,
        ("BuildSucceeded", "True", "Built", ""),
        ("Deployed", "False", "InitError", "Runtime.ImportModuleError: No module named 'app'"),
    )  # fmt: skip

    assert progress.state(fn).phase == "failed"
    assert "InitError" in progress.state(fn).message
