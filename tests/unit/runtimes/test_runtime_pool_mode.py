"""Pool mode (CONTRACT.md §13): a runtime started with ``KFN_POOL=1`` and no function serves at
once, refuses invocations as not started, and becomes its function when ``/_kfn/specialise``
brings the handler, the environment and the layers; layers it must not take spend the pod.

A real runtime process each time, with a pool pod's environment and its writable directories
(the task root and /opt) made here; the layers are real tar files built by the tests (with
pool_layers.py, which the Node.js runtime's pool tests share).
The Python runtime's; the Node.js runtime's pool mode has its own tests, with its own tar
reader's cases, in test_runtime_pool_mode_node.py.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import stat
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kfn_runtime import layers, pool

from .conftest import (
    IMAGE_PATH,
    REPO,
    Interpreter,
    Response,
    RunningRuntime,
    Starter,
    launch,
)
from .pool_layers import (
    TAR,
    Entry,
    Layer,
    digest_of,
    file,
    layer,
    specialise_body,
    starting,
)

#: The variables a start fills in where the environment has none (CONTRACT.md §1).
LAMBDA_FILLED_IN = {
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "_HANDLER",
}
#: In the process's environment from its start without being in the one the test gave: the
#: interpreter sets LC_CTYPE where the locale is C (PEP 538), and the shell that runs a base
#: image's interpreter in its root filesystem (conftest) sets PWD.
ADDED_AT_START = {"LC_CTYPE", "PWD"}

ENV_HANDLER = """\
import json
import os
import subprocess
import sys


def handler(event, context):
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {
        "env": dict(os.environ),
        "child": json.loads(child.stdout),
        "function_name": context.function_name,
        "cwd": os.getcwd(),
    }
"""

DEPENDENCY_HANDLER = """\
import greeting


def handler(event, context):
    return {"greeting": greeting.GREETING, "from": greeting.__file__}
"""


#: The layout's bare directories, which a layer the builder makes has first (and a runtime
#: ignores).
BARE = [
    Entry(name, type=tarfile.DIRTYPE, mode=0o755)
    for name in (".", "var", "var/task", "opt", "opt/python")
]


def builder_layer(*entries: Entry, gzipped: bool = True) -> Layer:
    """A layer as the builder makes one: the layout's bare directories first, then ``entries``."""
    return layer(*BARE, *entries, gzipped=gzipped)


@dataclasses.dataclass
class PoolPod:
    """A runtime in pool mode, its writable directories, and the environment it started with."""

    runtime: RunningRuntime
    task_root: Path
    opt: Path
    env: dict[str, str]

    def specialise(self, body: bytes, headers: dict[str, str] | None = None) -> Response:
        return self.runtime.request("POST", "/_kfn/specialise", body, headers)

    def specialise_with(
        self, handler: str, *blobs: Layer, env: dict[str, str] | None = None
    ) -> Response:
        """Specialises with the layers ``blobs``, their digests true."""
        return self.specialise(specialise_body(handler, env or {}, blobs))


StartPool = Callable[..., PoolPod]


@pytest.fixture
def start_pool(tmp_path: Path, runtime: str) -> Iterator[StartPool]:
    """``start_pool(**env)`` → a pool pod with a pool pod's environment (plus ``env``), killed
    at teardown. Its task root and /opt are empty directories, as a pool pod's volumes."""

    def start(found: Interpreter, extra: dict[str, str]) -> PoolPod:
        task_root, opt = tmp_path / "var-task", tmp_path / "opt"
        task_root.mkdir()
        (opt / "python").mkdir(parents=True)
        env = {
            "PATH": IMAGE_PATH if found.rootfs else os.environ.get("PATH", "/usr/bin:/bin"),
            pool.VARIABLE: "1",
            "KFN_HOST": "127.0.0.1",
            "KFN_PORT": "0",
            "LAMBDA_TASK_ROOT": str(task_root),
            "KFN_OPT_ROOT": str(opt),
            "PYTHONPATH": str(REPO / "runtime-images/python"),
            "PYTHONDONTWRITEBYTECODE": "1",
            **extra,
        }
        return PoolPod(launch("python", found.argv(), env, task_root), task_root, opt, env)

    elsewhere = "the Node.js runtime's pool mode is tested in test_runtime_pool_mode_node.py"
    yield from starting(runtime, "python", elsewhere, start)


def _assert_spent(pod: PoolPod) -> None:
    ready = pod.runtime.request("GET", "/_kfn/ready")
    assert (ready.status, ready.headers["Kfn-Pool"]) == (503, "spent")
    invoked = pod.runtime.invoke({})
    assert invoked.status == 410
    assert invoked.headers["Kfn-Not-Started"] == "spent"
    assert (
        pod.specialise_with("app.handler", builder_layer(file("var/task/app.py", ""))).status == 410
    )


def test_an_idle_pool_runtime_is_started_and_live_but_not_ready_and_refuses_invocations(
    start_pool: StartPool,
) -> None:
    pod = start_pool()
    rt = pod.runtime
    assert rt.request("GET", "/_kfn/started").status == 200
    assert rt.request("GET", "/_kfn/live").status == 200
    ready = rt.request("GET", "/_kfn/ready")
    assert (ready.status, ready.headers["Kfn-Pool"]) == (503, "idle")
    assert "Kfn-Init-Error" not in ready.headers
    assert "Kfn-Init-Timing" not in ready.headers
    invoked = rt.invoke({})
    assert (invoked.status, invoked.headers["Kfn-Not-Started"]) == (503, "idle")
    assert invoked.json()["errorType"] == "ServiceUnavailableException"
    event = rt.request("GET", "/hello")
    assert (event.status, event.headers["Kfn-Not-Started"]) == (503, "idle")
    assert "a pool pod waiting to be specialised" in rt.output()


def test_specialising_with_a_code_layer_serves_the_handler_with_the_given_environment(
    start_pool: StartPool,
) -> None:
    pod = start_pool(POD_SETTING="from the pod", SHARED_SETTING="pod")
    given = {
        "GREETING": "hello",
        "SHARED_SETTING": "function",
        "KFN_FUNCTION_NAME": "pooled",
        "KFN_TIMEOUT_MS": "20000",
    }
    answer = pod.specialise_with(
        "app.handler", builder_layer(file("var/task/app.py", ENV_HANDLER)), env=given
    )
    assert answer.status == 200, answer.body
    assert answer.json() == {"specialised": True}
    assert re.fullmatch(
        r"start=[\d.]+;boot=[\d.]+;imported=[\d.]+", answer.headers["Kfn-Init-Timing"]
    )
    ready = pod.runtime.request("GET", "/_kfn/ready")
    assert ready.status == 200
    assert "Kfn-Pool" not in ready.headers
    invoked = pod.runtime.invoke({})
    assert invoked.status == 200, invoked.body
    result = invoked.json()
    env = result["env"]
    assert result["child"] == env
    assert pool.VARIABLE not in env
    assert env["GREETING"] == "hello"
    assert env["POD_SETTING"] == "from the pod"
    assert env["SHARED_SETTING"] == "function"
    pod_env = {k: v for k, v in pod.env.items() if k != pool.VARIABLE}
    assert {k: env[k] for k in pod_env} == {**pod_env, "SHARED_SETTING": "function"}
    assert set(env) - set(pod_env) - set(given) <= LAMBDA_FILLED_IN | ADDED_AT_START
    # Read from the environment after it changed, as a start reads it.
    assert result["function_name"] == "pooled"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "pooled"
    assert env["_HANDLER"] == "app.handler"
    assert Path(result["cwd"]).resolve() == pod.task_root.resolve()
    assert "timeout 20000 ms" in pod.runtime.output()


def test_a_layer_whose_digest_does_not_match_is_refused_and_the_pod_is_spent(
    start_pool: StartPool,
) -> None:
    pod = start_pool()
    blob = builder_layer(file("var/task/app.py", ENV_HANDLER))
    claimed = digest_of(b"other bytes")
    answer = pod.specialise(
        specialise_body("app.handler", {}, [blob], [{**blob.descriptor(), "digest": claimed}])
    )
    assert answer.status == 400
    assert claimed in answer.json()["errorMessage"]
    assert list(pod.task_root.iterdir()) == []  # nothing is extracted before its digest matched
    _assert_spent(pod)


REFUSED = [
    pytest.param([file("etc/kfn-escaped", "x")], "etc/kfn-escaped: outside", id="elsewhere"),
    pytest.param([file("var/task/../../escaped", "x")], "a path with '..'", id="dot-dot"),
    pytest.param([file("/var/task/app.py", "x")], "an absolute path", id="absolute"),
    pytest.param(
        [Entry("var/task/out", type=tarfile.SYMTYPE, linkname="../../escaped")],
        "var/task/out: a link pointing outside var/task/",
        id="symlink-out",
    ),
    pytest.param(
        [Entry("var/task/etc", type=tarfile.SYMTYPE, linkname="/etc")],
        "var/task/etc: a link to an absolute path",
        id="symlink-absolute",
    ),
    pytest.param(
        [
            Entry("var/task/here", type=tarfile.SYMTYPE, linkname="."),
            Entry("var/task/up", type=tarfile.SYMTYPE, linkname="here/.."),
            file("var/task/up/escaped", "x"),
        ],
        "var/task/up: a link pointing outside var/task/",
        id="symlink-out-through-a-symlink",
    ),
    pytest.param(
        [
            file("opt/python/dep.py", "x"),
            Entry("var/task/dep.py", type=tarfile.LNKTYPE, linkname="opt/python/dep.py"),
        ],
        "var/task/dep.py: a link pointing outside var/task/",
        id="hardlink-across",
    ),
    pytest.param([file("var/task/.wh.app.py", "")], "an OCI whiteout", id="whiteout"),
    pytest.param([file("opt/python/pkg/.wh..wh..opq", "")], "an OCI whiteout", id="opaque"),
    pytest.param([Entry("var/task/null", type=tarfile.CHRTYPE)], "a device, FIFO", id="device"),
    pytest.param([Entry("var/task/fifo", type=tarfile.FIFOTYPE)], "a device, FIFO", id="fifo"),
]


@pytest.mark.parametrize(("entries", "message"), REFUSED)
def test_a_layer_with_an_entry_a_pool_pod_must_not_take_is_refused_and_the_pod_is_spent(
    start_pool: StartPool, tmp_path: Path, entries: list[Entry], message: str
) -> None:
    pod = start_pool()
    blob = builder_layer(file("var/task/app.py", ENV_HANDLER), *entries)
    answer = pod.specialise_with("app.handler", blob)
    assert answer.status == 400, answer.body
    error = answer.json()
    assert error["errorType"] == "Runtime.InvalidLayers"
    assert blob.digest in error["errorMessage"]
    assert message in error["errorMessage"]
    assert not (tmp_path / "escaped").exists()
    assert not (tmp_path / "var-task" / "escaped").exists()
    _assert_spent(pod)


def test_a_second_specialise_is_refused_with_409_and_the_function_serves_on(
    start_pool: StartPool,
) -> None:
    pod = start_pool()
    assert (
        pod.specialise_with(
            "app.handler", builder_layer(file("var/task/app.py", ENV_HANDLER))
        ).status
        == 200
    )
    again = pod.specialise_with("app.handler", builder_layer(file("var/task/app.py", "")))
    assert again.status == 409
    assert again.json()["errorType"] == "Runtime.SpecialiseConflict"
    assert pod.runtime.invoke({}).status == 200


def test_a_runtime_started_with_its_function_refuses_to_be_specialised(
    start_runtime: Starter,
) -> None:
    rt = start_runtime("python", "app.echo")
    assert rt.wait_ready().status == 200
    answer = rt.request("POST", "/_kfn/specialise", b'{"handler": "app.echo"}\n')
    assert answer.status == 409


def test_a_handler_that_fails_to_import_is_answered_as_an_init_error(
    start_pool: StartPool,
) -> None:
    pod = start_pool()
    answer = pod.specialise_with(
        "broken.handler",
        builder_layer(file("var/task/broken.py", "import kfn_no_such_dependency\n")),
    )
    assert answer.status == 503
    error = answer.json()
    assert error["errorType"] == answer.headers["Kfn-Init-Error"] == "Runtime.ImportModuleError"
    assert "kfn_no_such_dependency" in error["errorMessage"]
    assert "Kfn-Init-Timing" in answer.headers
    ready = pod.runtime.request("GET", "/_kfn/ready")
    assert (ready.status, ready.json()) == (503, error)
    invoked = pod.runtime.invoke({})
    assert (invoked.status, invoked.json()) == (502, error)
    assert "kfn runtime: init error " in pod.runtime.output()


def test_a_dependency_layer_under_opt_python_is_importable_by_the_handler(
    start_pool: StartPool,
) -> None:
    pod = start_pool()
    code = builder_layer(file("var/task/app.py", DEPENDENCY_HANDLER), gzipped=False)
    dependencies = builder_layer(file("opt/python/greeting.py", "GREETING = 'hi from a layer'\n"))
    body = specialise_body("app.handler", {}, [dependencies, code])
    assert pod.specialise(body).status == 200
    result = pod.runtime.invoke({}).json()
    assert result["greeting"] == "hi from a layer"
    assert Path(result["from"]).resolve() == (pod.opt / "python" / "greeting.py").resolve()


def test_files_keep_their_modes_but_not_setuid_or_setgid(start_pool: StartPool) -> None:
    pod = start_pool()
    blob = builder_layer(
        file("var/task/app.py", ENV_HANDLER, mode=0o640),
        file("var/task/tool", "#!/bin/sh\n", mode=0o6755),
        Entry("var/task/bin", type=tarfile.SYMTYPE, linkname="tool"),
    )
    assert pod.specialise_with("app.handler", blob).status == 200
    assert stat.S_IMODE((pod.task_root / "app.py").stat().st_mode) == 0o640
    assert stat.S_IMODE((pod.task_root / "tool").stat().st_mode) == 0o755
    assert os.readlink(pod.task_root / "bin") == "tool"


def test_a_later_layer_replaces_an_earlier_layers_file(start_pool: StartPool) -> None:
    pod = start_pool()
    first = builder_layer(file("var/task/app.py", "def handler(e, c):\n    return 'first'\n"))
    second = builder_layer(file("var/task/app.py", "def handler(e, c):\n    return 'second'\n"))
    assert pod.specialise_with("app.handler", first, second).status == 200
    assert pod.runtime.invoke({}).json() == "second"


def test_a_body_sent_chunked_in_small_pieces_specialises_as_one_with_a_length(
    start_pool: StartPool,
) -> None:
    pod = start_pool()
    body = specialise_body("app.handler", {}, [builder_layer(file("var/task/app.py", ENV_HANDLER))])
    conn = pod.runtime.connection()
    try:
        pieces = (body[i : i + 100] for i in range(0, len(body), 100))
        conn.request("POST", "/_kfn/specialise", body=pieces, encode_chunked=True)
        answer = conn.getresponse()
        assert answer.status == 200, answer.read()
    finally:
        conn.close()
    assert pod.runtime.invoke({}).status == 200


def test_layers_larger_than_the_pods_bound_are_refused_with_413(start_pool: StartPool) -> None:
    pod = start_pool(KFN_POOL_MAX_LAYER_BYTES="100")
    answer = pod.specialise_with("app.handler", builder_layer(file("var/task/app.py", ENV_HANDLER)))
    assert answer.status == 413
    _assert_spent(pod)


def test_a_body_that_goes_on_after_its_last_layer_is_refused(start_pool: StartPool) -> None:
    pod = start_pool()
    body = specialise_body("app.handler", {}, [builder_layer(file("var/task/app.py", ""))])
    answer = pod.specialise(body + b"more")
    assert answer.status == 400
    assert "Content-Length" in answer.json()["errorMessage"]
    _assert_spent(pod)


def test_a_client_that_goes_away_inside_a_layer_leaves_the_pod_spent(
    start_pool: StartPool,
) -> None:
    pod = start_pool()
    body = specialise_body("app.handler", {}, [builder_layer(file("var/task/app.py", ENV_HANDLER))])
    head = f"POST /_kfn/specialise HTTP/1.1\r\nHost: pod\r\nContent-Length: {len(body)}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", pod.runtime.port), timeout=10) as sock:
        sock.sendall(head.encode() + body[: len(body) - 10])
    deadline = time.monotonic() + 5
    while pod.runtime.request("GET", "/_kfn/ready").headers["Kfn-Pool"] != "spent":
        assert time.monotonic() < deadline, "the pod did not turn spent"
        time.sleep(0.02)
    _assert_spent(pod)


# ---- the JSON line and the environment, in-process ------------------------------------------

BAD_LINES = [
    pytest.param(b"not json\n", "not JSON", id="not-json"),
    pytest.param(b"[]\n", "not a JSON object", id="not-an-object"),
    pytest.param(b'{"env": {}}\n', "'handler'", id="no-handler"),
    pytest.param(b'{"handler": "a.b", "env": {"A": 1}}\n', "'env' A", id="env-not-strings"),
    pytest.param(b'{"handler": "a.b", "env": {"A=B": "x"}}\n', "variable name", id="env-name"),
    pytest.param(
        b'{"handler": "a.b", "layers": [{"digest": "md5:00", "size": 1, "mediaType": "%s"}]}\n'
        % TAR.encode(),
        "'digest'",
        id="digest",
    ),
    pytest.param(
        b'{"handler": "a.b", "layers": [{"digest": "sha256:%s", "size": -1, "mediaType": "%s"}]}\n'
        % (b"0" * 64, TAR.encode()),
        "'size'",
        id="size",
    ),
    pytest.param(
        b'{"handler": "a.b", "layers": [{"digest": "sha256:%s", "size": 1, "mediaType": "x"}]}\n'
        % (b"0" * 64),
        "'mediaType'",
        id="media-type",
    ),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_a_malformed_request_line_is_refused_with_400_saying_what_is_wrong(
    line: bytes, message: str
) -> None:
    with pytest.raises(pool.RefusedError) as refused:
        pool.parse(line, pool.DEFAULT_MAX_LAYER_BYTES)
    assert refused.value.status == 400
    assert message in str(refused.value)


def test_the_functions_environment_is_the_pods_without_kfn_pool_updated_with_the_given() -> None:
    pod = {"KFN_POOL": "1", "PATH": "/bin", "KEPT": "pod", "SHARED": "pod"}
    given = {"SHARED": "function", "NEW": "function"}
    assert pool.environment(pod, given) == {
        "PATH": "/bin",
        "KEPT": "pod",
        "SHARED": "function",
        "NEW": "function",
    }


def test_replacing_the_environment_removes_what_the_new_one_lacks() -> None:
    environ = {"KFN_POOL": "1", "A": "old", "B": "b"}
    pool.replace_environ(environ, {"A": "new", "C": "c"})
    assert environ == {"A": "new", "C": "c"}


def test_each_prefix_of_a_layer_goes_to_its_own_directory() -> None:
    roots = layers.roots({"LAMBDA_TASK_ROOT": "/task", "KFN_OPT_ROOT": "/o"})
    assert roots == {"var/task": "/task", "opt/python": "/o/python", "opt/nodejs": "/o/nodejs"}
    entry = tarfile.TarInfo("./opt/nodejs/node_modules/x/index.js")
    placed = layers.place(entry)
    assert placed == layers.Placement("opt/nodejs", "node_modules/x/index.js")
