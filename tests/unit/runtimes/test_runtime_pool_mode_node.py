"""Runtime pool mode of the Node.js runtime (KFN_POOL=1, CONTRACT.md §13): an idle
runtime loads nothing until ``POST /_kfn/specialise`` brings a function's handler, environment
and image layers, which it checks, extracts (its own tar reader) and then loads as a normal start
does. A real runtime process each time, its task root and /opt directories made here; the
layers are real tar archives made with Python's tarfile (by pool_layers.py, which the Python
runtime's pool tests share)."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import Interpreter, Response, RunningRuntime, make_task_root, start
from .pool_layers import (
    TAR,
    TAR_GZIP,
    Descriptor,
    Entry,
    Layer,
    file,
    layer,
    specialise_body,
    starting,
)

TIMING = re.compile(r"^(start=\d+\.\d{6};)?boot=\d+\.\d{6};imported=\d+\.\d{6}$")

#: The handler the code layers carry: what it sees of its environment, itself and a child's.
APP = """\
const { execFileSync } = require('child_process');
const names = ['GIVEN', 'KFN_POOL', 'POD_ONLY', 'OVERRIDDEN'];
const pick = (env) => Object.fromEntries(names.map((n) => [n, env[n] ?? null]));
const child = `const names = ${JSON.stringify(names)};
process.stdout.write(JSON.stringify(names.map((n) => process.env[n] ?? null)));`;
exports.handler = async (event, context) => ({
  env: pick(process.env),
  child: JSON.parse(execFileSync(process.execPath, ['-e', child]).toString()),
  functionName: context.functionName,
  cwd: process.cwd(),
});
"""


def code_layer(*extra: Entry) -> Layer:
    directory = Entry("var/task", type=tarfile.DIRTYPE, mode=0o755)
    return layer(directory, file("var/task/app.js", APP), *extra)


@dataclasses.dataclass
class Pool:
    """An idle pool runtime and the directories its layers go to."""

    runtime: RunningRuntime
    task: Path
    opt: Path
    outside: Path

    def specialise(
        self,
        layers: list[Layer],
        *,
        handler: str = "app.handler",
        env: dict[str, str] | None = None,
        descriptors: list[Descriptor] | None = None,
        trailing: bytes = b"",
    ) -> Response:
        body = specialise_body(handler, env or {}, layers, descriptors) + trailing
        return self.runtime.request(
            "POST", "/_kfn/specialise", body, {"Content-Type": "application/octet-stream"}
        )

    def assert_spent(self) -> None:
        """The answers of a pod whose specialisation was refused."""
        invoked = self.runtime.invoke({})
        assert invoked.status == 410
        assert invoked.headers["Kfn-Not-Started"] == "spent"
        assert self.specialise([code_layer()]).status == 410
        ready = self.runtime.request("GET", "/_kfn/ready")
        assert ready.status == 503
        assert ready.headers["Kfn-Pool"] == "spent"
        assert "Kfn-Init-Error" not in ready.headers


StartPool = Callable[..., Pool]


@pytest.fixture
def start_pool(tmp_path: Path, runtime: str) -> Iterator[StartPool]:
    """``start_pool(**env)`` → an idle Node.js pool runtime, killed at teardown."""

    def start_one(found: Interpreter, env: dict[str, str]) -> Pool:
        task, opt, outside = tmp_path / "task", tmp_path / "opt", tmp_path / "outside"
        for directory in (task, opt / "nodejs", outside):
            directory.mkdir(parents=True)
        running = start(
            "nodejs", task, "", interpreter=found, KFN_POOL="1", KFN_OPT_ROOT=str(opt),
            POD_ONLY="from the pod", OVERRIDDEN="from the pod", **env,
        )  # fmt: skip
        return Pool(running, task, opt, outside)

    yield from starting(runtime, "nodejs", "written for the nodejs runtimes", start_one)


def test_an_idle_pool_runtime_is_started_and_live_but_not_ready_and_refuses_invocations(
    start_pool: StartPool,
) -> None:
    pool = start_pool()
    rt = pool.runtime
    assert rt.request("GET", "/_kfn/started").status == 200
    assert rt.request("GET", "/_kfn/live").status == 200
    ready = rt.request("GET", "/_kfn/ready")
    assert ready.status == 503
    assert ready.headers["Kfn-Pool"] == "idle"
    assert "Kfn-Init-Error" not in ready.headers
    assert "Kfn-Init-Timing" not in ready.headers
    invoked = rt.invoke({})
    assert invoked.status == 503
    assert invoked.headers["Kfn-Not-Started"] == "idle"
    assert invoked.json()["errorType"] == "ServiceUnavailableException"
    event = rt.request("GET", "/hello")
    assert event.status == 503
    assert event.headers["Kfn-Not-Started"] == "idle"
    assert "idle in a pool" in rt.output()
    assert "init error" not in rt.output()


def test_a_runtime_outside_pool_mode_does_not_serve_specialise(tmp_path: Path) -> None:
    rt = start("nodejs", make_task_root("nodejs", tmp_path), "app.echo")
    try:
        assert rt.wait_ready().status == 200
        refused = rt.request("POST", "/_kfn/specialise", b"{}\n")
        assert refused.status == 409
        assert refused.json()["errorType"] == "Runtime.SpecialiseConflict"
        assert rt.invoke({}).status == 200
    finally:
        rt.stop()


def test_specialising_loads_the_handler_and_serves_it_with_the_functions_environment(
    start_pool: StartPool,
) -> None:
    pool = start_pool()
    env = {"GIVEN": "given", "OVERRIDDEN": "by the function", "KFN_FUNCTION_NAME": "pooled"}
    answer = pool.specialise([code_layer()], env=env)
    assert answer.status == 200, answer.body
    assert answer.json() == {"specialised": True}
    assert TIMING.match(answer.headers["Kfn-Init-Timing"])
    assert pool.runtime.request("GET", "/_kfn/ready").status == 200
    invoked = pool.runtime.invoke({})
    assert invoked.status == 200, invoked.body
    seen = invoked.json()
    expected = {"GIVEN": "given", "KFN_POOL": None, "POD_ONLY": "from the pod"}
    assert seen["env"] == {**expected, "OVERRIDDEN": "by the function"}
    assert seen["child"] == ["given", None, "from the pod", "by the function"]
    assert seen["functionName"] == "pooled"
    assert Path(seen["cwd"]) == pool.task
    assert pool.runtime.request("GET", "/hello").status == 200


def test_files_keep_their_modes_without_setuid_and_hard_links_share_their_file(
    start_pool: StartPool,
) -> None:
    pool = start_pool()
    answer = pool.specialise(
        [
            code_layer(
                file("var/task/bin/tool", "#!/bin/sh\n", 0o4755),
                file("var/task/secret.txt", "s", 0o600),
                Entry(
                    "var/task/bin/tool-again", type=tarfile.LNKTYPE, linkname="var/task/bin/tool"
                ),
                Entry("var/task/ro", type=tarfile.DIRTYPE, mode=0o555),
                file("var/task/ro/inside.txt", "in"),
            )
        ]
    )
    assert answer.status == 200, answer.body
    tool = pool.task / "bin" / "tool"
    assert stat.S_IMODE(tool.stat().st_mode) == 0o755
    assert stat.S_IMODE((pool.task / "secret.txt").stat().st_mode) == 0o600
    assert os.path.samefile(tool, pool.task / "bin" / "tool-again")
    assert stat.S_IMODE((pool.task / "ro").stat().st_mode) == 0o555
    assert (pool.task / "ro" / "inside.txt").read_text() == "in"


def test_a_blob_whose_digest_differs_is_refused_and_the_pod_is_spent(
    start_pool: StartPool,
) -> None:
    pool = start_pool()
    good = code_layer()
    claimed = "sha256:" + "0" * 64
    refused = pool.specialise([good], descriptors=[{**good.descriptor(), "digest": claimed}])
    assert refused.status == 400
    assert claimed in refused.json()["errorMessage"]
    assert list(pool.task.iterdir()) == []
    pool.assert_spent()


BAD_ENTRIES = [
    pytest.param([file("etc/passwd", "x")], "etc/passwd", id="outside-the-prefixes"),
    pytest.param([file("opt/python/x.py", "x")], "opt/python/x.py", id="the-python-deps-dir"),
    pytest.param([file("var/task/../../outside/x", "x")], "..", id="dot-dot"),
    pytest.param([file("/var/task/abs.js", "x")], "/var/task/abs.js", id="absolute"),
    pytest.param(
        [Entry("var/task/out", type=tarfile.SYMTYPE, linkname="../../outside")],
        "var/task/out",
        id="symlink-out",
    ),
    pytest.param(
        [Entry("var/task/abs", type=tarfile.SYMTYPE, linkname="/etc/passwd")],
        "var/task/abs",
        id="absolute-symlink",
    ),
    pytest.param(
        [
            Entry("var/task/here", type=tarfile.SYMTYPE, linkname="."),
            Entry("var/task/here/up", type=tarfile.SYMTYPE, linkname="../outside"),
        ],
        "var/task/here/up",
        id="through-a-symlink",
    ),
    pytest.param(
        [Entry("var/task/h", type=tarfile.LNKTYPE, linkname="outside/x")],
        "var/task/h",
        id="hard-link-out",
    ),
    pytest.param([file("var/task/.wh.app.js", "")], ".wh.app.js", id="whiteout"),
    pytest.param(
        [file("opt/nodejs/node_modules/left/.wh..wh..opq", "")], ".wh..wh..opq", id="opaque"
    ),
    pytest.param([Entry("var/task/tty", type=tarfile.CHRTYPE)], "var/task/tty", id="device"),
    pytest.param([Entry("var/task/pipe", type=tarfile.FIFOTYPE)], "var/task/pipe", id="fifo"),
]


@pytest.mark.parametrize(("entries", "named"), BAD_ENTRIES)
def test_an_entry_outside_the_allowed_places_is_refused_by_name(
    start_pool: StartPool, entries: list[Entry], named: str
) -> None:
    pool = start_pool()
    refused = pool.specialise([layer(file("var/task/app.js", APP), *entries)])
    assert refused.status == 400, refused.body
    assert named in refused.json()["errorMessage"]
    assert list(pool.outside.iterdir()) == []
    pool.assert_spent()


def test_a_body_going_on_after_its_last_layer_is_refused(start_pool: StartPool) -> None:
    pool = start_pool()
    refused = pool.specialise([code_layer()], trailing=b"more")
    assert refused.status == 400
    assert "after the last layer" in refused.json()["errorMessage"]
    pool.assert_spent()


def test_layers_larger_together_than_the_pools_bound_are_refused(start_pool: StartPool) -> None:
    pool = start_pool(KFN_POOL_MAX_LAYER_BYTES="100")
    refused = pool.specialise([code_layer()])
    assert refused.status == 400
    assert "more than KFN_POOL_MAX_LAYER_BYTES=100" in refused.json()["errorMessage"]
    assert list(pool.task.iterdir()) == []
    pool.assert_spent()


def test_a_layer_that_is_not_what_its_media_type_says_is_refused(start_pool: StartPool) -> None:
    pool = start_pool()
    plain = layer(file("var/task/app.js", APP), gzipped=False)
    refused = pool.specialise([plain], descriptors=[{**plain.descriptor(), "mediaType": TAR_GZIP}])
    assert refused.status == 400
    assert f"layer {plain.digest}: not gzip data" in refused.json()["errorMessage"]
    pool.assert_spent()


def _truncated(archive: bytes) -> bytes:
    return archive[:700]


def _checksum_broken(archive: bytes) -> bytes:
    return archive[:10] + b"X" + archive[11:]  # a byte of the first entry's name


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        pytest.param(_truncated, "the archive ends inside", id="truncated"),
        pytest.param(_checksum_broken, "a tar header with a wrong checksum", id="checksum"),
    ],
)
def test_a_damaged_archive_is_refused_even_when_its_digest_matches(
    start_pool: StartPool, damage: Callable[[bytes], bytes], said: str
) -> None:
    pool = start_pool()
    entries = [file("var/task/app.js", APP * 3)]
    damaged = Layer(damage(layer(*entries, fmt=tarfile.USTAR_FORMAT, gzipped=False).blob), TAR)
    refused = pool.specialise([damaged])
    assert refused.status == 400, refused.body
    assert said in refused.json()["errorMessage"]
    pool.assert_spent()


def test_a_second_specialise_is_refused_with_409_and_changes_nothing(
    start_pool: StartPool,
) -> None:
    pool = start_pool()
    assert pool.specialise([code_layer()], env={"GIVEN": "first"}).status == 200
    again = pool.specialise([code_layer()], env={"GIVEN": "second"})
    assert again.status == 409
    invoked = pool.runtime.invoke({})
    assert invoked.status == 200
    assert invoked.json()["env"]["GIVEN"] == "first"


def test_a_handler_that_fails_to_load_gives_the_init_error_answer_of_the_ready_probe(
    start_pool: StartPool,
) -> None:
    pool = start_pool()
    broken = code_layer(file("var/task/broken.js", "exports.handler = async () => {;\n"))
    answer = pool.specialise([broken], handler="broken.handler")
    assert answer.status == 503
    assert answer.headers["Kfn-Init-Error"] == "Runtime.UserCodeSyntaxError"
    assert answer.json()["errorType"] == "Runtime.UserCodeSyntaxError"
    assert TIMING.match(answer.headers["Kfn-Init-Timing"])
    ready = pool.runtime.request("GET", "/_kfn/ready")
    assert (ready.status, ready.json()) == (503, answer.json())
    assert ready.headers["Kfn-Init-Error"] == "Runtime.UserCodeSyntaxError"
    invoked = pool.runtime.invoke({})
    assert invoked.status == 502
    assert invoked.json() == answer.json()
    assert "kfn runtime: init error " in pool.runtime.output()


DEPENDENT_APP = """\
const leftpad = require('leftpad');
exports.handler = async (event) => ({ padded: leftpad(event.text, 5) });
"""


def test_a_dependency_under_opt_nodejs_node_modules_is_require_able(
    start_pool: StartPool,
) -> None:
    pool = start_pool()
    # Spelt as `tar -C dir .` writes it, in a plain (not gzipped) tar.
    dependencies = layer(
        Entry("./", type=tarfile.DIRTYPE, mode=0o755),
        Entry("./opt", type=tarfile.DIRTYPE, mode=0o755),
        Entry("./opt/nodejs", type=tarfile.DIRTYPE, mode=0o755),
        Entry("./opt/nodejs/node_modules", type=tarfile.DIRTYPE, mode=0o755),
        file(
            "./opt/nodejs/node_modules/leftpad/index.js",
            "module.exports = (s, n) => s.padStart(n, '.');\n",
        ),
        gzipped=False,
    )
    code = layer(file("var/task/dependent.js", DEPENDENT_APP))
    answer = pool.specialise([dependencies, code], handler="dependent.handler")
    assert answer.status == 200, answer.body
    invoked = pool.runtime.invoke({"text": "ab"})
    assert invoked.status == 200, invoked.body
    assert invoked.json() == {"padded": "...ab"}


LONG_DIRECTORY = "/".join(["a-rather-long-directory-name"] * 4)


@pytest.mark.parametrize(
    ("fmt", "file_name"),
    [
        # PAX: a path header; GNU: an 'L' entry, and 'K' for the link target.
        pytest.param(tarfile.PAX_FORMAT, "m" * 120 + ".js", id="pax"),
        pytest.param(tarfile.GNU_FORMAT, "m" * 120 + ".js", id="gnu"),
        # ustar: the name split at a slash into the prefix field and the name field.
        pytest.param(tarfile.USTAR_FORMAT, "m" * 90 + ".js", id="ustar-prefix"),
    ],
)
def test_names_and_link_targets_longer_than_100_characters_extract_correctly(
    start_pool: StartPool, fmt: int, file_name: str
) -> None:
    pool = start_pool()
    target = f"{LONG_DIRECTORY}/{file_name}"
    assert len("var/task/" + target) > 100
    # ustar has no room for a link target over 100 characters: a short one there.
    link = target if fmt != tarfile.USTAR_FORMAT else "app.js"
    code = layer(
        file("var/task/app.js", f"exports.handler = require('./{target}').handler;\n"),
        file(f"var/task/{target}", "exports.handler = async () => 'deep';\n"),
        Entry("var/task/shortcut.js", type=tarfile.SYMTYPE, linkname=link),
        fmt=fmt,
    )
    answer = pool.specialise([code], handler="shortcut.handler")
    assert answer.status == 200, answer.body
    assert (pool.task / target).read_text() == "exports.handler = async () => 'deep';\n"
    assert os.readlink(pool.task / "shortcut.js") == link
    assert pool.runtime.invoke({}).json() == "deep"
