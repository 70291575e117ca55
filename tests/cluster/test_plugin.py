"""``kubectl kfn`` as a developer types it: init, deploy, invoke, logs, describe, rollback.

Every command runs as the installed executable ``kubectl-kfn`` in a subprocess, with
``KUBECONFIG`` set and this checkout's kfn first on the Python path, against kfn installed
from this tree. The invocation goes through the port-forward the plugin opens itself. Timings
are printed: the deploy (build included) and the invoke latency as the command sees it.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.cluster.kubeutil import (
    KUBECONFIG,
    REPO,
    function_pods,
    kubectl,
    kubectl_json,
    scratch_namespace,
    wait_at_zero,
    wait_for,
)

pytestmark = pytest.mark.cluster

PLUGIN = pathlib.Path(sys.executable).parent / "kubectl-kfn"
IDLE = "3s"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["KUBECONFIG"] = str(KUBECONFIG)
    # The executable is the shared virtualenv's; the code is this checkout's.
    env["PYTHONPATH"] = str(REPO / "operator")
    return env


def plugin(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    done = subprocess.run(
        [str(PLUGIN), *args], capture_output=True, text=True, env=_env(), timeout=timeout,
        check=False,
    )  # fmt: skip
    took = time.monotonic() - started
    print(f"$ kubectl kfn {' '.join(args)}  ({took:.2f}s, exit {done.returncode})")
    return done


@pytest.fixture(scope="module")
def namespace(kfn: str) -> Iterator[str]:
    with scratch_namespace("plugin") as ns:
        yield ns


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, namespace: str) -> pathlib.Path:
    where = tmp_path_factory.mktemp("plugin") / "hello"
    done = plugin("init", "hello", str(where))
    assert done.returncode == 0, done.stderr
    yaml_file = where / "function.yaml"
    text = yaml_file.read_text().replace(
        "  timeout: 30s\n", f"  timeout: 30s\n  scale: {{idleTimeout: {IDLE}}}\n"
    )
    yaml_file.write_text(text)
    return where


def test_the_developer_loop(folder: pathlib.Path, namespace: str) -> None:
    _deploy(folder, namespace)
    request_id = _invoke_and_follow(namespace)
    _logs_of_a_pod_gone(namespace, request_id)
    _describe(namespace)
    _versions_and_rollback(folder, namespace)
    print(f"request followed: {request_id}")


def _deploy(folder: pathlib.Path, namespace: str) -> None:
    ns = ["-n", namespace]
    # deploy: applies, follows the build, waits for Ready, prints the URLs.
    started = time.monotonic()
    deployed = plugin("deploy", str(folder), *ns, "--timeout", "10m", timeout=660)
    deploy_seconds = time.monotonic() - started
    print(deployed.stdout, deployed.stderr[-3000:], sep="\n")
    assert deployed.returncode == 0, deployed.stderr
    assert "function.kfn.dev/hello created" in deployed.stdout
    assert re.search(
        r"invoke URL: +http://\S+/_kfn/functions/" + namespace + "/hello/invoke", deployed.stdout
    )
    print(f"TIMING deploy (apply, build, Ready): {deploy_seconds:.1f}s")

    # deploy again, nothing changed: nothing applied.
    again = plugin("deploy", str(folder), *ns)
    assert again.returncode == 0, again.stderr
    assert "function.kfn.dev/hello unchanged" in again.stdout
    assert "configured" not in again.stdout


def _invoke_and_follow(namespace: str) -> str:
    ns = ["-n", namespace]

    # invoke before anyone may: 403, and the message says which RoleBinding to create.
    refused = plugin("invoke", "hello", *ns, "--event", "apigw")
    assert refused.returncode == 1
    assert (
        f"kubectl -n {namespace} create rolebinding default-invokes --clusterrole=kfn-invoker "
        f"--serviceaccount={namespace}:default"
    ) in refused.stderr, refused.stderr
    kubectl(
        "-n", namespace, "create", "rolebinding", "default-invokes", "--clusterrole=kfn-invoker",
        f"--serviceaccount={namespace}:default",
    )  # fmt: skip

    # follow the log from before the first invocation (the function may be at zero).
    follower = subprocess.Popen(
        [str(PLUGIN), "logs", "hello", *ns, "-f"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    try:
        # RBAC decisions are cached 2 s when refused: wait for the binding to count.
        def invoked() -> subprocess.CompletedProcess[str] | None:
            done = plugin("invoke", "hello", *ns, "--event", "apigw", "-v")
            return done if done.returncode == 0 else None

        answer = wait_for("the RoleBinding to let default invoke", invoked, timeout=30, every=1)
        result = json.loads(answer.stdout)
        assert result["statusCode"] == 200
        assert json.loads(result["body"]) == {"message": "Hello, kfn!", "path": "/hello"}
        rid = re.search(r"request id ([^;)\s]+)", answer.stderr)
        assert rid, answer.stderr
        request_id = rid.group(1)
        assert f"START RequestId: {request_id}" in answer.stderr  # the log tail, decoded
        assert f"REPORT RequestId: {request_id}" in answer.stderr

        # warm latency through the port-forward, as the command measures it
        latencies = []
        for _ in range(5):
            warm = plugin("invoke", "hello", *ns, "-d", '{"n": 1}', "--log-type", "None", "-v")
            assert warm.returncode == 0, warm.stderr
            assert json.loads(warm.stdout) == {"received": {"n": 1}}
            took = re.search(r": 200 in ([0-9.]+) ms", warm.stderr)
            assert took, warm.stderr
            latencies.append(float(took.group(1)))
        print(f"TIMING invoke through the port-forward (warm, ms): {sorted(latencies)}")

        # a function error: exit 1 with Lambda's errorType and errorMessage
        failed = plugin("invoke", "hello", *ns, "-d", "1")
        assert failed.returncode == 1
        assert (
            "error: function error: TypeError: argument of type 'int' is not iterable"
            in failed.stderr
        )

        # the pod scales to zero; what the follower printed stays printed
        wait_at_zero(namespace, "hello", timeout=120)
    finally:
        time.sleep(1)
        follower.terminate()
        out, err = follower.communicate(timeout=30)
    print(out[-3000:], err[-2000:], sep="\n")
    lines = out.splitlines()
    mine = [line for line in lines if f"[{request_id}]" in line]
    assert any(f"START RequestId: {request_id}" in line for line in mine), out
    assert any(f"\trequest {request_id}" in line for line in mine), out  # the handler's logging
    assert all(line.startswith("[hello-") for line in mine), mine  # the pod's name first
    assert not function_pods(namespace, "hello")  # and that pod is gone
    return request_id


def _logs_of_a_pod_gone(namespace: str, request_id: str) -> None:
    """logs without -f, the function at zero: the last lines its pods left, kept by kfn."""
    ns = ["-n", namespace]
    kept = wait_for(
        "the operator to keep the departed pod's last lines",
        lambda: kubectl("-n", namespace, "get", "configmap", "kfn-logs.hello", check=False),
        timeout=30,
    )
    print(kept)
    gone = plugin("logs", "hello", *ns)
    print(gone.stdout[-2000:], gone.stderr, sep="\n")
    assert gone.returncode == 0, gone.stderr
    assert "has no pods" in gone.stderr
    assert "the last lines its pods left" in gone.stderr
    mine = [line for line in gone.stdout.splitlines() if f"[{request_id}]" in line]
    assert any(f"START RequestId: {request_id}" in line for line in mine), gone.stdout
    assert any(f"\trequest {request_id}" in line for line in mine), gone.stdout
    assert all(line.startswith("[hello-") for line in mine), mine
    # --tail bounds each departed pod's lines too
    last = plugin("logs", "hello", *ns, "--tail", "1")
    assert last.returncode == 0, last.stderr
    assert 1 <= len(last.stdout.splitlines()) <= len(mine)


def _describe(namespace: str) -> None:
    ns = ["-n", namespace]

    # describe: the Function, Ready, its build, its events
    described = plugin("describe", "hello", *ns)
    print(described.stdout)
    assert described.returncode == 0, described.stderr
    assert "Name:         hello" in described.stdout
    assert re.search(r"  Ready +True +Ready", described.stdout), described.stdout
    assert re.search(r"  BuildSucceeded +True +Built", described.stdout), described.stdout
    figures = re.search(r"Invocations:  (\d+), (\d+) errors", described.stdout)
    assert figures, described.stdout  # the activators' metrics, read through port-forwards
    assert int(figures.group(1)) >= 7
    assert int(figures.group(2)) >= 1
    raw = plugin("describe", "hello", *ns, "-o", "json")
    assert raw.returncode == 0, raw.stderr
    assert json.loads(raw.stdout)["function"]["metadata"]["name"] == "hello"

    # completion asks the cluster: the namespace's functions, and namespaces
    completer = PLUGIN.parent / "kubectl_complete-kfn"
    names = subprocess.run(
        [str(completer), "-n", namespace, "invoke", "he"],
        capture_output=True, text=True, env=_env(), timeout=30, check=True,
    ).stdout  # fmt: skip
    assert names == "hello\n:4\n"
    spaces = subprocess.run(
        [str(completer), "logs", "-n", namespace[:-2]],
        capture_output=True, text=True, env=_env(), timeout=30, check=True,
    ).stdout  # fmt: skip
    assert f"{namespace}\n" in spaces


def _message(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return str(json.loads(json.loads(done.stdout)["body"])["message"])


def _executed(done: subprocess.CompletedProcess[str]) -> str:
    found = re.search(r"; version ([^;\s]+);", done.stderr)
    assert found, done.stderr
    return found.group(1)


def _latest_version(namespace: str) -> int:
    status = kubectl_json("-n", namespace, "get", "function", "hello").get("status") or {}
    return int(status.get("latestVersion") or 0)


def _versions_and_rollback(folder: pathlib.Path, namespace: str) -> None:
    """Every deploy is a version; an alias names one; rollback moves an alias, then $LATEST."""
    ns = ["-n", namespace]
    assert _latest_version(namespace) == 1  # publish: Always, the first deploy is version 1
    app = folder / "app.py"
    code = app.read_text()
    assert 'f"Hello, {name}!"' in code
    app.write_text(code.replace('f"Hello, {name}!"', 'f"Hello again, {name}!"'))
    redeployed = plugin("deploy", str(folder), *ns, "--timeout", "10m", timeout=660)
    assert redeployed.returncode == 0, redeployed.stderr
    wait_for("version 2", lambda: _latest_version(namespace) == 2, timeout=60)
    assert _message(plugin("invoke", "hello", *ns, "--event", "apigw")) == "Hello again, kfn!"
    print(kubectl("-n", namespace, "get", "fnv"))

    # an alias on version 2, invoked as hello:live; the answer names the version
    kubectl(
        "-n", namespace, "patch", "function", "hello", "--type", "merge",
        "-p", json.dumps({"spec": {"aliases": [{"name": "live", "version": 2}]}}),
    )  # fmt: skip

    def served() -> subprocess.CompletedProcess[str] | None:
        done = plugin("invoke", "hello:live", *ns, "--event", "apigw", "-v")
        return done if done.returncode == 0 else None

    live = wait_for("the alias to serve", served, timeout=60, every=1)
    assert (_message(live), _executed(live)) == ("Hello again, kfn!", "2")

    # rollback --alias: the alias goes back to version 1 at once
    back = plugin("rollback", "hello", *ns, "--alias", "live")
    print(back.stdout, back.stderr, sep="\n")
    assert back.returncode == 0, back.stderr
    assert "alias hello:live rolled back to version 1" in back.stdout
    old = plugin("invoke", "hello:live", *ns, "--event", "apigw", "-v")
    assert (_message(old), _executed(old)) == ("Hello, kfn!", "1")

    def routed(name: str) -> str:
        found = kubectl_json("-n", namespace, "get", "fnv", name).get("status") or {}
        condition = next((c for c in found.get("conditions", []) if c["type"] == "Routed"), {})
        return f"{condition.get('status')} {condition.get('message', '')}"

    wait_for("version 1 to be routed", lambda: routed("hello-v1") == "True alias live")
    assert routed("hello-v2").startswith("False no alias routes to it")
    print(kubectl("-n", namespace, "get", "fnv"))

    # rollback: $LATEST runs version 1's code and configuration again, without a build
    latest = plugin("rollback", "hello", *ns, timeout=300)
    print(latest.stdout, latest.stderr[-2000:], sep="\n")
    assert latest.returncode == 0, latest.stderr
    assert "function hello rolled back to version 1" in latest.stdout
    assert _message(plugin("invoke", "hello", *ns, "--event", "apigw")) == "Hello, kfn!"
    # publish: Always already published what runs
    published = plugin("publish", "hello", *ns)
    assert published.returncode == 0, published.stderr
    assert "publishes every deployed change" in published.stdout + published.stderr
    described = plugin("describe", "hello", *ns)
    print(described.stdout)
    assert re.search(r"^  live +1 \(100 %\)", described.stdout, re.MULTILINE), described.stdout
    assert re.search(r"^Versions: +latest 3$", described.stdout, re.MULTILINE)


def test_the_plugin_needs_no_kubectl_on_the_path(namespace: str) -> None:
    env = _env()
    env["PATH"] = str(PLUGIN.parent)
    assert shutil.which("kubectl", path=env["PATH"]) is None
    done = subprocess.run(
        [str(PLUGIN), "describe", "nothing-here", "-n", namespace],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip

    assert done.returncode == 1
    assert done.stderr.startswith(
        f'error: function "nothing-here" not found in namespace "{namespace}"'
    )
