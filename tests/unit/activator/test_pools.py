"""Warm pools, the activator's side, end to end on this machine: the Specialiser pulls a
function image's own layers from a real registry (docker-registry with kfn's token service),
reads the function's Secrets and ConfigMaps from the stand-in API server, and specialises real
Python runtimes started in pool mode (CONTRACT.md §13); the idle pods come to it through its
store, fed by the stand-in reflector.

Each pool runtime runs in a private mount namespace with a tmpfs on /var, so its task root is
``/var/task`` as a pool pod's (the function's environment says so) and nothing of the machine's
changes; all listen on one port, each on its own loopback address (root only).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import http.client
import json
import os
import pathlib
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import pytest

from kfn import oci, stats
from kfn.activator import pools
from kfn.api import function as function_api
from kfn.resources import pools as pool_rules
from tests.unit import registries
from tests.unit.apiserver import ApiServer
from tests.unit.operator import kubeapi
from tests.unit.runtimes import conftest as runtimes

from .conftest import until

pytestmark = pytest.mark.asyncio

RUNTIME = "python3.11"
NS = "team"
PODS = f"/api/v1/namespaces/{NS}/pods"
GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

HANDLER = """\
import os

import greeting


def handler(event, context):
    names = ("PASSWORD", "MODE", "PLAIN", "FROM_IMAGE", "AWS_LAMBDA_FUNCTION_NAME", "KFN_POOL")
    return {
        "env": {name: os.environ.get(name) for name in names},
        "greeting": greeting.GREETING,
        "function_name": context.function_name,
        "cwd": os.getcwd(),
    }
"""


# --- images in the registry --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Images:
    """The pool's base, a function image built on it, and one built on another base."""

    registry: registries.TokenRegistry
    base: str
    function: str
    elsewhere: str
    code_digest: str


def _tree(root: pathlib.Path, files: Mapping[str, str]) -> pathlib.Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _base(
    registry: registries.TokenRegistry, tmp: pathlib.Path, name: str
) -> tuple[oci.Reference, str]:
    """A two-layer "runtime" image pushed by the admin as ``kfn/<name>:1``."""
    store = oci.BlobStore(tmp / f"{name}-blobs")
    system = store.layer_from_tree([("etc", _tree(tmp / f"{name}-etc", {"os": name}))])
    runtime = store.layer_from_tree(
        [("opt/kfn", _tree(tmp / f"{name}-kfn", {"runtime.txt": f"the runtime of {name}\n"}))]
    )
    image = store.image([system, runtime], oci.ImageConfig(entrypoint=["runtime"]))
    ref = oci.Reference(registry.host, f"kfn/{name}", "1")
    digest = registry.client(registry.admin).push_image(image, ref)
    return ref, f"{registry.host}/kfn/{name}@{digest}"


def _function_image(
    registry: registries.TokenRegistry, tmp: pathlib.Path, base: oci.Reference, name: str
) -> tuple[str, str]:
    """The function ``name``'s image on ``base``: a dependency layer and a code layer (both
    tar.gz), pushed by the namespace's robot; its reference and its code layer's digest."""
    store = oci.BlobStore(tmp / f"fn-{name}-blobs")
    deps = store.layer_from_tree(
        [("opt/python", _tree(tmp / f"fn-{name}-deps", {"greeting.py": "GREETING = 'hi'\n"}))],
        compress=True,
    )
    code = store.layer_from_tree(
        [("var/task", _tree(tmp / f"fn-{name}-code", {"app.py": HANDLER}))], compress=True
    )
    assert code.blob.media_type == GZIP
    target = oci.Reference(registry.host, f"fn/{NS}/{name}", "v1")
    digest = oci.extend(
        registry.client(registry.robot(NS)),
        base,
        store=store,
        layers=[deps, code],
        overrides=oci.ImageConfig(env={"FROM_IMAGE": "image config"}),
        target=target,
    )
    return f"{registry.host}/fn/{NS}/{name}@{digest}", code.blob.digest


@pytest.fixture(scope="module")
def images(
    token_registry: registries.TokenRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Images:
    tmp = tmp_path_factory.mktemp("pool-images")
    base, base_image = _base(token_registry, tmp, "pool-base")
    other, _ = _base(token_registry, tmp, "other-base")
    function_image, code_digest = _function_image(token_registry, tmp, base, "hello")
    elsewhere, _ = _function_image(token_registry, tmp, other, "elsewhere")
    return Images(token_registry, base_image, function_image, elsewhere, code_digest)


# --- the namespace's objects -------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def function(name: str, image: str, **spec: Any) -> function_api.Function:
    return function_api.Function.model_validate(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}"},
            "spec": {
                "runtime": RUNTIME,
                "handler": "app.handler",
                "source": {"inline": {"files": [{"name": "app.py", "content": HANDLER}]}},
                "env": [
                    {"name": "PLAIN", "value": "plain $(MODE)"},
                    {
                        "name": "PASSWORD",
                        "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
                    },
                    {
                        "name": "MODE",
                        "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}},
                    },
                ],
                **spec,
            },
            "status": {"image": image},
        }
    )


@pytest.fixture
def namespace(api: kubeapi.KubeApi, images: Images) -> kubeapi.KubeApi:
    """The namespace's registry credential, the function's Secret and ConfigMap."""
    robot = images.registry.robot(NS)
    config = {
        "auths": {images.registry.host: {"username": robot.username, "password": robot.password}}
    }
    secrets = f"/api/v1/namespaces/{NS}/secrets"
    api.put(
        secrets,
        {
            "metadata": {"name": "kfn-registry", "namespace": NS},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": _b64(json.dumps(config).encode())},
        },
    )
    api.put(
        secrets,
        {"metadata": {"name": "creds", "namespace": NS}, "data": {"password": _b64(b"s3cr$(et)")}},
    )
    api.put(
        f"/api/v1/namespaces/{NS}/configmaps",
        {"metadata": {"name": "settings", "namespace": NS}, "data": {"mode": "fast"}},
    )
    return api


# --- pool pods: real runtimes in pool mode -----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PoolPod:
    """A pool runtime and the loopback address it listens on."""

    runtime: runtimes.RunningRuntime
    ip: str

    async def request(self, method: str, path: str, body: bytes | None = None) -> runtimes.Response:
        def call() -> runtimes.Response:
            conn = http.client.HTTPConnection(self.ip, self.runtime.port, timeout=10)
            try:
                return self.runtime.request(method, path, body, conn=conn)
            finally:
                conn.close()

        return await asyncio.to_thread(call)

    async def invoke(self) -> runtimes.Response:
        return await self.request("POST", "/_kfn/invoke", b"{}")

    async def state(self) -> str:
        """The pool state ``/_kfn/ready`` reports (``idle``, ``spent``, ...)."""
        answer = await self.request("GET", "/_kfn/ready")
        assert answer.status == 503, answer.body
        return str(answer.headers["Kfn-Pool"])


@dataclasses.dataclass
class PoolPods:
    """Starts pool runtimes on ``port``, each at its own loopback address."""

    port: int
    tmp: pathlib.Path
    interpreter: runtimes.Interpreter
    started: list[runtimes.RunningRuntime] = dataclasses.field(default_factory=list)

    def start(self, ip: str) -> PoolPod:
        opt = self.tmp / f"opt-{ip}"
        (opt / "python").mkdir(parents=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "KFN_POOL": "1",
            "KFN_HOST": ip,
            "KFN_PORT": str(self.port),
            "LAMBDA_TASK_ROOT": "/var/task",
            "KFN_OPT_ROOT": str(opt),
            "PYTHONPATH": str(runtimes.REPO / "runtime-images/python"),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        # /var/task exists, empty and writable, in this process's mount namespace only.
        script = 'mount -t tmpfs -o mode=755 tmpfs /var && mkdir /var/task && exec "$@"'
        argv = [
            "unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            *self.interpreter.argv(),
        ]  # fmt: skip
        running = runtimes.launch("python", argv, env, self.tmp)
        self.started.append(running)
        return PoolPod(running, ip)


@pytest.fixture
def pool_pods(tmp_path: pathlib.Path) -> Iterator[PoolPods]:
    if os.geteuid() != 0:
        pytest.skip("a pool runtime's /var/task is a tmpfs in a mount namespace: root only")
    found = runtimes.find_interpreter(RUNTIME)
    if isinstance(found, str):
        pytest.skip(found)
    if found.rootfs is not None:
        pytest.skip(f"{RUNTIME} runs in its base image here; these tests want this machine's")
    pods = PoolPods(registries.free_port(), tmp_path, found)
    yield pods
    for running in pods.started:
        running.stop()


def pool_pod(name: str, ip: str, image: str, pool: str, *, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": NS,
            "name": name,
            "uid": f"uid-{name}",
            "labels": {
                pools.LABEL_COMPONENT: pools.COMPONENT_POOL,
                pools.LABEL_STATE: pools.IDLE,
                pools.LABEL_POOL: pool,
            },
        },
        "spec": {"containers": [{"name": "function", "image": image}]},
        "status": {
            "podIP": ip,
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


# --- the Specialiser ---------------------------------------------------------------------------


@dataclasses.dataclass
class Bench:
    """A running Specialiser, what it was told, and the stand-in reflector of its store."""

    specialiser: pools.Specialiser
    server: ApiServer
    api: kubeapi.KubeApi
    functions: dict[str, function_api.Function]
    adopted: list[tuple[dict[str, Any], stats.FunctionKey]] = dataclasses.field(
        default_factory=list
    )
    ended: list[stats.FunctionKey] = dataclasses.field(default_factory=list)

    def add(self, fn: function_api.Function) -> stats.FunctionKey:
        self.functions[fn.metadata.name] = fn
        return stats.FunctionKey(NS, fn.metadata.name)

    async def idle(self, *pods: dict[str, Any]) -> None:
        """Puts ``pods`` in the API and makes them the store's idle pods."""
        for pod in pods:
            self.api.put(PODS, json.loads(json.dumps(pod)))
        await asyncio.to_thread(self.server.send, list(pods))

    def start(self, key: stats.FunctionKey) -> bool:
        return self.specialiser.start(key, lambda: self.ended.append(key))

    async def attempt(self, key: stats.FunctionKey) -> None:
        """Starts a specialisation for ``key`` and waits until it ended."""
        before = self.ended.count(key)
        assert self.start(key)
        await until(lambda: self.ended.count(key) > before)


@contextlib.asynccontextmanager
async def bench(api: kubeapi.KubeApi, images: Images, port: int) -> AsyncIterator[Bench]:
    server = ApiServer()
    functions: dict[str, function_api.Function] = {}
    holder: list[Bench] = []
    specialiser = pools.Specialiser(
        function_of=lambda namespace, name: functions.get(name) if namespace == NS else None,
        pool_of=pools.pool_of,
        adopt=lambda pod, key, began: holder[0].adopted.append((dict(pod), key)),
        drop=lambda uid: None,
        registry=pools.Registry(images.registry.host, ca_file=str(images.registry.ca_file)),
        reflect=server.reflect,
        port=port,
    )
    holder.append(Bench(specialiser, server, api, functions))
    running = asyncio.create_task(specialiser.run())
    try:
        yield holder[0]
        assert server.calls[0][:3] == ("v1", "Pod", pools.IDLE_SELECTOR)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        server.hang_up()


def pool_hash(fn: function_api.Function) -> str:
    found = pools.pool_of(fn)
    assert found is not None
    return found


def specialised(api: kubeapi.KubeApi, name: str) -> bool:
    """Whether the pod ``name`` was labelled specialised."""
    pod = api.get(PODS, name) or {}
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(pools.LABEL_STATE) == pools.SPECIALISED)


# --- the tests ---------------------------------------------------------------------------------


async def test_a_function_at_zero_is_specialised_into_an_idle_pool_pod_and_serves_its_env(
    namespace: kubeapi.KubeApi, images: Images, pool_pods: PoolPods
) -> None:
    runtime = pool_pods.start("127.0.0.1")
    async with bench(namespace, images, pool_pods.port) as b:
        fn = function("hello", images.function)
        key = b.add(fn)
        await b.idle(pool_pod("pool-a", "127.0.0.1", images.base, pool_hash(fn)))
        await b.attempt(key)
        assert b.specialiser.outcomes == {"specialised": 1}
        [(adopted, adopted_key)] = b.adopted
        assert adopted_key == key
        assert adopted["metadata"]["name"] == "pool-a"
        assert adopted["metadata"]["labels"][pools.LABEL_FUNCTION] == "hello"
        assert adopted["metadata"]["labels"][pools.LABEL_STATE] == pools.SPECIALISED
        assert adopted["status"]["podIP"] == "127.0.0.1"

        answer = await runtime.invoke()
        assert answer.status == 200, answer.body
        result = answer.json()
        assert result["env"] == {
            "PASSWORD": "s3cr$(et)",
            "MODE": "fast",
            "PLAIN": "plain $(MODE)",  # as the user wrote it, as in the own pod
            "FROM_IMAGE": "image config",
            "AWS_LAMBDA_FUNCTION_NAME": "hello",
            "KFN_POOL": None,
        }
        assert result["greeting"] == "hi"
        assert result["function_name"] == "hello"
        assert result["cwd"] == "/var/task"

        await until(lambda: specialised(namespace, "pool-a"))
        pod = namespace.get(PODS, "pool-a")
        assert pod is not None
        meta = pod["metadata"]
        assert meta["labels"][pools.LABEL_FUNCTION] == "hello"
        assert meta["labels"][pools.LABEL_POOL] == pool_hash(fn)
        assert pool_rules.ANNOTATION_SPECIALISED_AT in meta["annotations"]
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "kfn.dev/v1alpha1",
                "kind": "Function",
                "name": "hello",
                "uid": "uid-hello",
                "controller": True,
                "blockOwnerDeletion": False,
            }
        ]
        assert b.ended == [key]


async def test_nothing_is_started_without_an_idle_ready_pod_for_a_version_or_an_unpoolable_function(
    namespace: kubeapi.KubeApi, images: Images, pool_pods: PoolPods
) -> None:
    async with bench(namespace, images, pool_pods.port) as b:
        fn = function("hello", images.function)
        key = b.add(fn)
        layered = b.add(
            function(
                "layered",
                images.function,
                layers=[
                    {"name": "tools", "image": f"{images.registry.host}/l/tools@sha256:{'0' * 64}"}
                ],
            )
        )
        await b.idle(pool_pod("not-ready", "127.0.0.1", images.base, pool_hash(fn), ready=False))
        assert not b.start(key)
        # Its pool had no pod to give: counted, the sign of a pool too small for its cold starts.
        assert b.specialiser.outcomes == {"no_idle_pod": 1}
        await b.idle(pool_pod("pool-a", "127.0.0.1", images.base, pool_hash(fn)))
        assert b.start(key)  # the control: the same function starts with a ready pod
        assert not b.start(stats.FunctionKey(NS, "hello", "1"))
        assert pools.pool_of(b.functions["layered"]) is None
        assert not b.start(layered)
        assert not b.start(stats.FunctionKey(NS, "missing"))
        await until(lambda: b.ended == [key])
        # No pool runtime listens: the one attempt failed to connect. That is no answer (the
        # pod may be another activator's by now): it is left to the kubelet's probe.
        assert b.specialiser.outcomes == {"no_idle_pod": 1, "taken": 1}
        assert namespace.get(PODS, "pool-a") is not None
        assert not b.adopted


async def test_a_second_specialisation_of_the_same_image_pulls_nothing_from_the_registry(
    namespace: kubeapi.KubeApi, images: Images, pool_pods: PoolPods
) -> None:
    first, second = pool_pods.start("127.0.0.2"), pool_pods.start("127.0.0.3")
    async with bench(namespace, images, pool_pods.port) as b:
        hello = b.add(function("hello", images.function))
        twin = b.add(function("twin", images.function))
        pool = pool_hash(b.functions["hello"])
        assert pool_hash(b.functions["twin"]) == pool
        await b.idle(pool_pod("pool-a", "127.0.0.2", images.base, pool))
        await b.attempt(hello)
        assert b.specialiser.blobs.get(images.code_digest) is not None
        # The registry is now out of reach: anything pulled would fail the attempt.
        b.specialiser.registry = dataclasses.replace(b.specialiser.registry, host="127.0.0.1:1")
        await b.idle(pool_pod("pool-b", "127.0.0.3", images.base, pool))
        await b.attempt(twin)
        assert b.specialiser.outcomes == {"specialised": 2}
        assert [key for _, key in b.adopted] == [hello, twin]
        for runtime, name in ((first, "hello"), (second, "twin")):
            answer = await runtime.invoke()
            assert answer.status == 200, answer.body
            assert answer.json()["function_name"] == name


async def test_a_pod_another_activator_took_is_skipped_for_the_next_one(
    namespace: kubeapi.KubeApi, images: Images, pool_pods: PoolPods
) -> None:
    taken, free = pool_pods.start("127.0.0.4"), pool_pods.start("127.0.0.5")
    async with bench(namespace, images, pool_pods.port) as b:
        hello = b.add(function("hello", images.function))
        other = b.add(function("other", images.function))
        pool = pool_hash(b.functions["hello"])
        # Another activator specialised the first pod for another function: it answers 409.
        await b.idle(pool_pod("pod-a", "127.0.0.4", images.base, pool))
        await b.attempt(other)
        conflict = await taken.request("POST", pools.SPECIALISE_PATH, b'{"handler":"a.h"}\n')
        assert conflict.status == 409
        # This activator still sees both as idle.
        await b.idle(
            pool_pod("pod-a", "127.0.0.4", images.base, pool),
            pool_pod("pod-b", "127.0.0.5", images.base, pool),
        )
        # The order is the function's own (by name, from a place its name picks): "hello"
        # tries pod-a, the taken one, first.
        order = pools.offer_order(b.specialiser.idle(NS, pool), hello)
        assert [pod.name for pod in order] == ["pod-a", "pod-b"]
        await b.attempt(hello)
        assert b.specialiser.outcomes == {"specialised": 2}
        assert [(pod["metadata"]["name"], key) for pod, key in b.adopted] == [
            ("pod-a", other),
            ("pod-b", hello),
        ]
        await until(lambda: specialised(namespace, "pod-b"))
        assert namespace.get(PODS, "pod-a") is not None, "a pod answering 409 is not deleted"
        answer = await free.invoke()
        assert (answer.status, answer.json()["function_name"]) == (200, "hello")
        answer = await taken.invoke()
        assert (answer.status, answer.json()["function_name"]) == (200, "other")


async def test_a_refused_specialisation_deletes_the_pod_and_adopts_nothing(
    namespace: kubeapi.KubeApi, images: Images, pool_pods: PoolPods
) -> None:
    runtime = pool_pods.start("127.0.0.6")
    async with bench(namespace, images, pool_pods.port) as b:
        hello = b.add(function("hello", images.function))
        # A cached code layer whose bytes are not its digest's: the runtime refuses it (400).
        registry = images.registry.client(images.registry.robot(NS))
        blob = registry.get_blob(f"fn/{NS}/hello", images.code_digest)
        b.specialiser.blobs.put(images.code_digest, bytes([blob[0] ^ 0xFF]) + blob[1:])
        await b.idle(pool_pod("pool-a", "127.0.0.6", images.base, pool_hash(b.functions["hello"])))
        await b.attempt(hello)
        assert b.specialiser.outcomes == {"refused": 1}
        assert not b.adopted
        await until(lambda: namespace.get(PODS, "pool-a") is None)
        assert await runtime.state() == "spent"


async def test_a_function_image_built_on_another_base_is_not_offered(
    namespace: kubeapi.KubeApi, images: Images, pool_pods: PoolPods
) -> None:
    runtime = pool_pods.start("127.0.0.7")
    async with bench(namespace, images, pool_pods.port) as b:
        key = b.add(function("elsewhere", images.elsewhere))
        pool = pool_hash(b.functions["elsewhere"])
        await b.idle(pool_pod("pool-a", "127.0.0.7", images.base, pool))
        await b.attempt(key)
        assert b.specialiser.outcomes == {"other_base": 1}
        assert not b.adopted
        assert await runtime.state() == "idle", "nothing was posted"
        assert namespace.get(PODS, "pool-a") is not None


async def test_a_missing_secret_leaves_the_cold_start_to_the_functions_own_pod(
    namespace: kubeapi.KubeApi, images: Images, pool_pods: PoolPods
) -> None:
    runtime = pool_pods.start("127.0.0.8")
    async with bench(namespace, images, pool_pods.port) as b:
        key = b.add(function("hello", images.function))
        namespace.objects[f"/api/v1/namespaces/{NS}/secrets"].pop("creds")
        await b.idle(pool_pod("pool-a", "127.0.0.8", images.base, pool_hash(b.functions["hello"])))
        await b.attempt(key)
        assert b.specialiser.outcomes == {"unresolvable": 1}
        assert not b.adopted
        assert await runtime.state() == "idle"
        assert namespace.get(PODS, "pool-a") is not None
