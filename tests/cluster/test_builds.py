"""In-cluster builds: source in, image out, new version serving — and failures that show.

Every Function here has ``minReplicas: 1`` so that its Service answers without the activator;
requests go to ``POST /_kfn/invoke`` on the Service's ClusterIP, which the host reaches
through kube-proxy. Dependencies come through the package proxies on the node.

Builds trust only what kfn built: a tag planted in the registry is not a build, archives are
unpacked within bounds and fetched from no internal address, and their URLs are never shown
with their query string.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest

from kfncluster import config, fnimage
from tests.cluster import archives
from tests.cluster.invoking import bearer
from tests.cluster.kubeutil import kubectl, kubectl_json, scratch_namespace, wait_for

pytestmark = pytest.mark.cluster

BUILD_TIMEOUT = 240


@pytest.fixture
def namespace(kfn: str) -> Iterator[str]:
    with scratch_namespace("builds") as name:
        yield name


def python_function(name: str, code: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name},
        "spec": {
            "runtime": "python3.11",
            "handler": "app.handler",
            "scale": {"minReplicas": 1},
            "source": {"inline": {"files": [{"name": "app.py", "content": code}]}},
            **spec,
        },
    }


def apply(namespace: str, fn: dict[str, Any]) -> None:
    kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(fn))


def condition(fn: dict[str, Any], type_: str) -> dict[str, Any]:
    found = [c for c in fn.get("status", {}).get("conditions", []) if c["type"] == type_]
    return found[0] if found else {}


def get(namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = kubectl_json("-n", namespace, "get", "function", name)
    return result


def wait_deployed(namespace: str, name: str, not_image: str | None = None) -> dict[str, Any]:
    """Waits until the Function is Ready with an image other than ``not_image``."""

    def probe() -> dict[str, Any] | None:
        fn = get(namespace, name)
        build = condition(fn, "BuildSucceeded")
        assert build.get("reason") != "BuildFailed", build.get("message")
        image = fn.get("status", {}).get("image")
        if condition(fn, "Ready").get("status") == "True" and image and image != not_image:
            return fn
        return None

    return wait_for(f"{namespace}/{name} built and Ready", probe, timeout=BUILD_TIMEOUT, every=0.5)


def cluster_ip(namespace: str, name: str) -> str:
    return str(kubectl_json("-n", namespace, "get", "service", name)["spec"]["clusterIP"])


def invoke(
    namespace: str, name: str, event: Any, timeout: float = 10, ip: str | None = None
) -> tuple[int, Any]:
    url = f"http://{ip or cluster_ip(namespace, name)}/_kfn/invoke"
    return post(url, event, timeout)


def post(
    url: str, event: Any, timeout: float = 10, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 - http only
        url, data=json.dumps(event).encode(), method="POST", headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - http only
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def answer(namespace: str, name: str, event: Any, expected: Any) -> Any:
    """Invokes until the answer is ``expected`` (a new pod may still be joining)."""

    def probe() -> Any:
        status, body = invoke(namespace, name, event)
        return status == 200 and body == expected

    return wait_for(f"{name} to answer {expected!r}", probe, timeout=60, every=0.5)


def build_jobs(namespace: str, name: str) -> list[str]:
    jobs = kubectl_json(
        "-n",
        namespace,
        "get",
        "jobs",
        "-l",
        f"kfn.dev/function={name},app.kubernetes.io/component=build",
    )
    return sorted(job["metadata"]["name"] for job in jobs["items"])


def test_an_inline_python_function_is_built_in_the_cluster_and_answers(namespace: str) -> None:
    code = (
        "def handler(event, context):\n"
        "    return {'hello': event['name'], 'fn': context.function_name}\n"
    )
    apply(namespace, python_function("hello", code))
    fn = wait_deployed(namespace, "hello")
    assert fn["status"]["image"].startswith(f"{config.REGISTRY}/fn/{namespace}/hello@sha256:")
    assert condition(fn, "BuildSucceeded")["reason"] == "Built"
    assert condition(fn, "SourceReady")["status"] == "True"
    answer(namespace, "hello", {"name": "kfn"}, {"hello": "kfn", "fn": "hello"})
    [job] = build_jobs(namespace, "hello")
    logs = kubectl("-n", namespace, "logs", f"job/{job}")
    assert "pushed" in logs
    pod = kubectl_json("-n", namespace, "get", "pods", "-l", f"job-name={job}")["items"][0]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert all(
        c["securityContext"]["allowPrivilegeEscalation"] is False for c in pod["spec"]["containers"]
    )
    for step in [*pod["spec"]["initContainers"], *pod["spec"]["containers"]]:
        limits = step["resources"]["limits"]
        assert {"cpu", "memory", "ephemeral-storage"} <= set(limits), step["name"]
        assert {"cpu", "memory", "ephemeral-storage"} <= set(step["resources"]["requests"])
    # The image runs by the digest the build reported, recorded in the status.
    [record] = fn["status"]["builds"]
    assert record["image"] == fn["status"]["image"]
    deployment = kubectl_json("-n", namespace, "get", "deployment", "hello")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == record["image"]


def test_an_inline_node_function_is_built_and_answers(namespace: str) -> None:
    code = (
        "exports.handler = async (event, context) =>\n"
        "  ({ sum: event.a + event.b, node: process.version.split('.')[0] });\n"
    )
    fn = {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "adder"},
        "spec": {
            "runtime": "nodejs18",
            "handler": "index.handler",
            "scale": {"minReplicas": 1},
            "source": {"inline": {"files": [{"name": "index.js", "content": code}]}},
        },
    }
    apply(namespace, fn)
    wait_deployed(namespace, "adder")
    answer(namespace, "adder", {"a": 2, "b": 40}, {"sum": 42, "node": "v18"})


def test_a_code_change_rolls_out_a_new_image_and_no_request_through_the_activator_fails(
    namespace: str,
) -> None:
    v1 = "def handler(event, context):\n    return {'version': 1}\n"
    v2 = "def handler(event, context):\n    return {'version': 2}\n"
    apply(namespace, python_function("roll", v1))
    first = wait_deployed(namespace, "roll")
    answer(namespace, "roll", {}, {"version": 1})
    failures: list[str] = []
    seen: set[int] = set()
    stop = threading.Event()

    # Through the activator's invoke API, as clients and triggers call functions: it routes
    # only to ready pods and retries a connection refused by a pod that is going away.
    activator = cluster_ip("kfn-system", "kfn-invoke")
    url = f"http://{activator}/_kfn/functions/{namespace}/roll/invoke"
    token = bearer()
    wait_for(
        "the activator to route to roll",
        lambda: post(url, {}, headers=token) == (200, {"version": 1}),
    )

    def load() -> None:
        while not stop.is_set():
            try:
                status, body = post(url, {}, headers=token)
            except Exception as exc:  # every failure counts
                failures.append(repr(exc))
                continue
            if status != 200:
                failures.append(f"{status} {body}")
            else:
                seen.add(body["version"])
            time.sleep(0.02)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        apply(namespace, python_function("roll", v2))
        second = wait_deployed(namespace, "roll", not_image=first["status"]["image"])
        answer(namespace, "roll", {}, {"version": 2})
        wait_for(
            "the old pod to drain",
            lambda: (
                len(
                    kubectl_json(
                        "-n",
                        namespace,
                        "get",
                        "pods",
                        "-l",
                        "kfn.dev/function=roll,app.kubernetes.io/component=function",
                    )["items"]
                )
                == 1
            ),
            timeout=60,
        )
    finally:
        stop.set()
        thread.join(15)
    assert second["status"]["image"] != first["status"]["image"]
    assert seen == {1, 2}
    assert failures == []


def test_an_unchanged_function_causes_no_rebuild(namespace: str) -> None:
    code = "import os\ndef handler(event, context):\n    return os.environ.get('GREETING')\n"
    apply(namespace, python_function("same", code, env=[{"name": "GREETING", "value": "hi"}]))
    first = wait_deployed(namespace, "same")
    jobs = build_jobs(namespace, "same")
    # A change outside the source (env) rolls the pods without a build.
    apply(namespace, python_function("same", code, env=[{"name": "GREETING", "value": "hello"}]))
    answer(namespace, "same", {}, "hello")
    fn = get(namespace, "same")
    assert fn["status"]["image"] == first["status"]["image"]
    assert build_jobs(namespace, "same") == jobs
    # Deleted and re-created: its build records went with it, so it is built again rather
    # than taken from the registry's tag; the build is reproducible, so the digest is the same.
    kubectl("-n", namespace, "delete", "function", "same", "--wait=true")
    apply(namespace, python_function("same", code, env=[{"name": "GREETING", "value": "hi"}]))
    again = wait_deployed(namespace, "same")
    assert again["status"]["builds"][0]["image"] == again["status"]["image"]
    assert again["status"]["image"] == first["status"]["image"]
    assert build_jobs(namespace, "same") == jobs


def test_a_pypi_dependency_is_installed_during_the_build_through_the_proxy(namespace: str) -> None:
    code = "import six\ndef handler(event, context):\n    return {'six': six.__version__}\n"
    requirements = {"name": "requirements.txt", "content": "six==1.16.0\n"}
    fn = python_function("withdeps", code)
    fn["spec"]["source"]["inline"]["files"].append(requirements)
    apply(namespace, fn)
    wait_deployed(namespace, "withdeps")
    answer(namespace, "withdeps", {}, {"six": "1.16.0"})
    [job] = build_jobs(namespace, "withdeps")
    assert "root/pypi" in kubectl("-n", namespace, "logs", f"job/{job}")


def test_a_broken_dependency_fails_the_build_visibly_while_the_old_version_serves(
    namespace: str,
) -> None:
    v1 = "def handler(event, context):\n    return {'version': 1}\n"
    apply(namespace, python_function("broken", v1))
    first = wait_deployed(namespace, "broken")
    bad = python_function(
        "broken", v1.replace("1}", "2}"), dependencies=["kfn-no-such-package-x7q==1.0"]
    )
    apply(namespace, bad)

    def failed() -> dict[str, Any] | None:
        fn = get(namespace, "broken")
        build = condition(fn, "BuildSucceeded")
        return build if build.get("reason") == "BuildFailed" else None

    build = wait_for("the build to fail", failed, timeout=BUILD_TIMEOUT, every=0.5)
    assert build["status"] == "False"
    assert "kfn-no-such-package-x7q" in build["message"]
    assert "logs job/" in build["message"]
    fn = get(namespace, "broken")
    assert fn["status"]["image"] == first["status"]["image"]
    assert invoke(namespace, "broken", {}) == (200, {"version": 1})
    events = kubectl_json(
        "-n", namespace, "get", "events", "--field-selector", "involvedObject.name=broken"
    )
    assert any(e["reason"] == "BuildFailed" and e["type"] == "Warning" for e in events["items"])


@pytest.fixture
def archive_server() -> Iterator[tuple[str, dict[str, bytes]]]:
    """An HTTP server on the node IP (pods reach it; nothing off the machine does)."""
    with archives.serving() as served:
        yield served.url, served.files


def test_an_archive_is_built_when_its_sha256_matches_and_refused_when_not(
    namespace: str, archive_server: tuple[str, dict[str, bytes]]
) -> None:
    url, files = archive_server
    data = archives.zipped(
        {"app.py": "def handler(event, context):\n    return 'from the archive'\n"}
    )
    files["/code.zip"] = data
    good = hashlib.sha256(data).hexdigest()
    fn = python_function("archived", "")
    fn["spec"]["source"] = {"archive": {"url": f"{url}/code.zip", "sha256": good}}
    apply(namespace, fn)
    wait_deployed(namespace, "archived")
    answer(namespace, "archived", {}, "from the archive")

    wrong = "0" * 64
    fn["spec"]["source"] = {"archive": {"url": f"{url}/code.zip", "sha256": wrong}}
    apply(namespace, fn)

    def failed() -> dict[str, Any] | None:
        build = condition(get(namespace, "archived"), "BuildSucceeded")
        return build if build.get("reason") == "BuildFailed" else None

    build = wait_for("the mismatch to fail the build", failed, timeout=BUILD_TIMEOUT, every=0.5)
    assert "sha256 mismatch" in build["message"]
    assert good in build["message"]
    assert invoke(namespace, "archived", {}) == (200, "from the archive")


def test_a_config_map_source_is_built_and_a_change_to_the_config_map_rebuilds_it(
    namespace: str,
) -> None:
    def config_map(version: int) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "code"},
            "data": {
                "app.py": "from helper import VERSION\n"
                "def handler(event, context):\n    return {'version': VERSION}\n",
                "helper.py": f"VERSION = {version}\n",
            },
        }

    kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(config_map(1)))
    fn = python_function("fromcm", "")
    fn["spec"]["source"] = {"configMapRef": {"name": "code"}}
    apply(namespace, fn)
    first = wait_deployed(namespace, "fromcm")
    answer(namespace, "fromcm", {}, {"version": 1})
    kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(config_map(2)))
    wait_deployed(namespace, "fromcm", not_image=first["status"]["image"])
    answer(namespace, "fromcm", {}, {"version": 2})


# --- builds trust only what kfn built ----------------------------------------------------------


def _job(namespace: str, name: str) -> dict[str, Any]:
    [job] = build_jobs(namespace, name)
    result: dict[str, Any] = kubectl_json("-n", namespace, "get", "job", job)
    return result


def test_an_image_planted_under_the_build_tag_is_not_taken_as_a_build(namespace: str) -> None:
    code = "def handler(event, context):\n    return 'built by kfn'\n"
    apply(namespace, python_function("planted", code))
    wait_deployed(namespace, "planted")
    job = _job(namespace, "planted")
    hash_ = job["metadata"]["annotations"]["kfn.dev/build-hash"]
    # The Function goes (and its records with it); then someone who can push to the
    # namespace's repositories puts their own code under the tag the next build would push.
    kubectl("-n", namespace, "delete", "function", "planted", "--wait=true")
    wait_for("the build Job to go", lambda: build_jobs(namespace, "planted") == [], timeout=60)
    planted = fnimage.push_python_function(
        f"fn/{namespace}/planted",
        hash_,
        {"app.py": "def handler(event, context):\n    return 'planted'\n"},
    )
    apply(namespace, python_function("planted", code))
    again = wait_deployed(namespace, "planted")
    assert build_jobs(namespace, "planted"), "kfn built it again"
    assert again["status"]["image"] != planted
    assert again["status"]["builds"][0]["image"] == again["status"]["image"]
    answer(namespace, "planted", {}, "built by kfn")


def _zip_bomb(unpacked_mib: int) -> bytes:
    buf = io.BytesIO()
    with (
        zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
        zf.open("zeros.bin", "w") as member,
    ):
        for _ in range(unpacked_mib):
            member.write(bytes(2**20))
    return buf.getvalue()


def _build_failed(namespace: str, name: str) -> dict[str, Any]:
    def failed() -> dict[str, Any] | None:
        build = condition(get(namespace, name), "BuildSucceeded")
        return build if build.get("reason") == "BuildFailed" else None

    return wait_for(f"{name}'s build to fail", failed, timeout=BUILD_TIMEOUT, every=0.5)


def test_a_zip_bomb_ends_in_build_failed_naming_the_bound_not_in_an_oom_killed_pod(
    namespace: str, archive_server: tuple[str, dict[str, bytes]]
) -> None:
    url, files = archive_server
    bomb = _zip_bomb(600)  # over the chart's 512 MiB, in well under 1 MiB
    files["/bomb.zip"] = bomb
    fn = python_function("bomb", "")
    fn["spec"]["source"] = {
        "archive": {"url": f"{url}/bomb.zip", "sha256": hashlib.sha256(bomb).hexdigest()}
    }
    apply(namespace, fn)
    build = _build_failed(namespace, "bomb")
    assert "unpacks to more than 512 MiB" in build["message"]
    assert "builder.archives.maxUnpackedMiB" in build["message"]
    [job] = build_jobs(namespace, "bomb")
    pod = kubectl_json("-n", namespace, "get", "pods", "-l", f"job-name={job}")["items"][0]
    prepare = pod["status"]["initContainerStatuses"][0]
    assert prepare["state"]["terminated"]["reason"] != "OOMKilled"


def test_an_archive_on_the_metadata_address_fails_at_once_and_its_url_is_shown_redacted(
    namespace: str,
) -> None:
    fn = python_function("metadata", "")
    fn["spec"]["source"] = {
        "archive": {
            "url": "http://169.254.169.254/latest/meta-data/?X-Amz-Signature=s3cr3t",
            "sha256": "0" * 64,
        }
    }
    apply(namespace, fn)
    build = _build_failed(namespace, "metadata")
    assert "169.254.169.254, a cloud metadata address" in build["message"]
    assert "builder.archives.allowedCIDRs" in build["message"]
    assert build_jobs(namespace, "metadata") == []
    ready = condition(get(namespace, "metadata"), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "BuildFailed")
    events = kubectl("-n", namespace, "get", "events", "-o", "json")
    assert "s3cr3t" not in json.dumps(get(namespace, "metadata")["status"])
    assert "s3cr3t" not in events


def test_an_archive_whose_host_resolves_to_loopback_is_refused_by_the_build(
    namespace: str,
) -> None:
    fn = python_function("loopback", "")
    fn["spec"]["source"] = {
        "archive": {"url": "http://localhost:8080/code.zip?sig=s3cr3t", "sha256": "0" * 64}
    }
    apply(namespace, fn)
    build = _build_failed(namespace, "loopback")
    assert "localhost resolves to" in build["message"]
    assert "a loopback address" in build["message"]
    assert "s3cr3t" not in build["message"]
    [job] = build_jobs(namespace, "loopback")
    assert "s3cr3t" not in kubectl("-n", namespace, "logs", f"job/{job}", "-c", "prepare")
