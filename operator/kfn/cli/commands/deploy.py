"""``kubectl kfn deploy``: a function folder to the cluster, followed until it serves."""

from __future__ import annotations

import argparse
import pathlib
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, Final, TextIO

import pydantic

from kfn.api import function, trigger
from kfn.cli import cluster, errors, logview, package, parser, progress

_DESCRIPTION = """\
Deploy a function folder: apply function.yaml's Function, with the folder's files as its
inline source, and follow it until it serves.

function.yaml (or -f FILE) holds the Function and may hold more documents, such as its
Triggers, ConfigMaps or Secrets; each is applied by server-side apply, field manager
kubectl-kfn. The folder's files, less .kfnignore's, become spec.source.inline unless
function.yaml sets spec.source (then it is sent as written).

Nothing changed (the same code, by the kfn.dev/source-hash annotation, and the same spec):
nothing is applied, and deploy says so. Otherwise it follows the build, streaming the
build Job's log, until the Function is Ready, then prints its invoke URL and its Function
URL if it has one. A failed build or deployment ends it with exit code 1 and the reason.
With --no-wait it returns once the objects are applied."""

_EXAMPLES = """\
  # Deploy the function in the current folder to the context's namespace
  kubectl kfn deploy

  # Deploy ./hello to the namespace team-a, giving the build up to 15 minutes
  kubectl kfn deploy hello -n team-a --timeout 15m

  # Apply and return at once
  kubectl kfn deploy --no-wait"""

POLL_SECONDS: Final = 1.0
DEFAULT_TIMEOUT: Final = "10m"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "dir", metavar="DIR", nargs="?", default=".", help="the function folder (default: .)"
    )
    p.add_argument(
        "-f",
        "--filename",
        metavar="FILE",
        help="the Function's YAML (default: DIR/function.yaml)",
    )
    parser.add_wait_options(
        p,
        waits_for="follow the build and wait until the Function is Ready",
        until=" for Ready",
        default_timeout=DEFAULT_TIMEOUT,
    )


def _kind_name(obj: Mapping[str, Any]) -> str:
    """``function.kfn.dev/hello``, as kubectl names what it applied."""
    group = str(obj["apiVersion"]).rpartition("/")[0]
    kind = str(obj["kind"]).lower()
    return (
        f"{kind}.{group}/{obj['metadata']['name']}"
        if group
        else f"{kind}/{obj['metadata']['name']}"
    )


def _other(document: Mapping[str, Any], namespace: str, origin: str) -> dict[str, Any]:
    """A document beside the Function, ready to apply: one of the kinds deploy applies, in
    the namespace, a valid Trigger."""
    key = (document.get("apiVersion"), document.get("kind"))
    if key not in cluster.APPLIED_KINDS:
        kinds = ", ".join(k for _, k in cluster.APPLIED_KINDS)
        raise errors.CliError(
            f"{origin} holds a {key[1]} ({key[0]}); deploy applies {kinds}: apply the rest "
            "with kubectl apply"
        )
    obj = dict(document)
    meta = dict(obj.get("metadata") or {})
    if not meta.get("name"):
        raise errors.CliError(f"a {key[1]} in {origin} has no metadata.name")
    written = meta.get("namespace")
    if written is not None and written != namespace:
        raise errors.CliError(
            f'the namespace of {key[1]} {meta["name"]} in {origin} "{written}" does not match '
            f'the namespace "{namespace}": pass --namespace={written} or remove it'
        )
    meta["namespace"] = namespace
    obj["metadata"] = meta
    if str(document.get("kind")) == trigger.KIND:
        try:
            trigger.Trigger.model_validate(obj)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(object)'}: {e['msg']}"
                for e in exc.errors()
            )
            raise errors.CliError(f"the Trigger {meta['name']} is not valid: {problems}") from None
    return obj


def objects(folder: pathlib.Path, file: pathlib.Path, namespace: str) -> list[dict[str, Any]]:
    """What deploy applies, the Function first."""
    if not file.is_file():
        raise errors.CliError(
            f"{file} not found: run deploy in a function folder (kubectl kfn init makes one), "
            "or pass DIR or -f FILE"
        )
    documents = package.parse_documents(file.read_text(encoding="utf-8"), origin=str(file))
    functions = [d for d in documents if d.get("kind") == function.KIND]
    if len(functions) != 1:
        raise errors.CliError(f"{file} must hold exactly one Function; it holds {len(functions)}")
    fn = package.manifest(functions[0], folder, namespace)
    others = [_other(d, namespace, str(file)) for d in documents if d is not functions[0]]
    return [fn, *others]


def _apply(kube: cluster.Cluster, obj: Mapping[str, Any]) -> bool:
    """Applies ``obj`` unless it would change nothing; whether it applied."""
    meta = obj["metadata"]
    where = cluster.path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
    try:
        live = kube.get(where)
        would_be = kube.apply(obj, dry_run=True)
    except cluster.ApiError as exc:
        if exc.status == 404:
            raise errors.CliError(
                f"the cluster has no {obj['kind']}s ({obj['apiVersion']}): is kfn installed? "
                "(docs/install.md)"
            ) from None
        raise
    changed = progress.changes(live, would_be)
    if not changed:
        print(f"{_kind_name(obj)} unchanged")
        return False
    kube.apply(obj)
    verb = "created" if changed == ["created"] else f"configured ({', '.join(changed)})"
    print(f"{_kind_name(obj)} {verb}")
    return True


class BuildLog:
    """Streams a build Job's pod log, container by container, while the build runs."""

    def __init__(self, kube: cluster.Cluster, job: str, out: TextIO) -> None:
        self.kube = kube
        self.job = job
        self.out = out
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"build log {job}", daemon=True)
        self.thread.start()

    def _pod(self) -> dict[str, Any] | None:
        pods = self.kube.list(
            cluster.path("v1", "Pod", self.kube.namespace),
            labels=f"batch.kubernetes.io/job-name={self.job}",
        )
        pods.sort(key=lambda p: str(p["metadata"].get("creationTimestamp", "")))
        return pods[-1] if pods else None

    def _started(self, pod: Mapping[str, Any], container: str) -> bool | None:
        """Whether the container has started; None when it never will (the pod ended)."""
        status = pod.get("status") or {}
        for entry in [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]:
            if entry.get("name") == container:
                state = entry.get("state") or {}
                if "running" in state or "terminated" in state:
                    return True
        if status.get("phase") in ("Failed", "Succeeded"):
            return None
        return False

    def _run(self) -> None:
        try:
            self._follow()
        except errors.CliError as exc:
            print(f"(the build log could not be read: {exc})", file=sys.stderr)

    def _follow(self) -> None:
        pod = None
        while not self.stop.is_set() and pod is None:
            pod = self._pod()
            if pod is None:
                self.stop.wait(POLL_SECONDS)
        if pod is None:
            return
        name = pod["metadata"]["name"]
        spec = pod.get("spec") or {}
        containers = [
            c["name"]
            for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
        ]
        for container in containers:
            while not self.stop.is_set():
                now = self.kube.get(cluster.path("v1", "Pod", self.kube.namespace, name))
                if now is None:
                    return
                started = self._started(now, container)
                if started is None:
                    break
                if started:
                    for line in self.kube.log_lines(
                        self.kube.namespace, name, container, follow=True
                    ):
                        print(f"[build/{container}] {line}", file=self.out, flush=True)
                    break
                self.stop.wait(POLL_SECONDS)

    def finish(self, seconds: float) -> None:
        """Lets the stream end by itself for up to ``seconds``, then stops it."""
        self.thread.join(seconds)
        self.stop.set()


def wait(kube: cluster.Cluster, name: str, timeout: float, out: TextIO) -> dict[str, Any]:
    """Follows the Function until it is Ready (returned) or failed (CliError)."""
    deadline = time.monotonic() + timeout
    said = ""
    log: BuildLog | None = None
    while True:
        fn = kube.function(name)
        state = progress.state(fn)
        if state.job and (log is None or log.job != state.job):
            if log is not None:
                log.finish(0)
            log = BuildLog(kube, state.job, out)
        if f"{state.phase}: {state.message}" != said:
            said = f"{state.phase}: {state.message}"
            if not state.done:
                print(f"{state.phase}: {state.message}", file=out, flush=True)
        if state.done:
            if log is not None:
                log.finish(5.0)
            if state.phase == "failed":
                raise errors.CliError(
                    f"function {name} failed: {state.message} "
                    f"(kubectl kfn describe {name} -n {kube.namespace})"
                )
            return fn
        if time.monotonic() > deadline:
            raise errors.CliError(
                f"function {name} was not Ready within {timeout:.0f}s ({state.phase}: "
                f"{state.message}); it may still get there: kubectl kfn describe {name} "
                f"-n {kube.namespace}, or deploy again with a longer --timeout"
            )
        time.sleep(POLL_SECONDS)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        timeout = logview.parse_duration(args.timeout)
    except ValueError as exc:
        raise errors.CliError(f"--timeout: {exc}") from None
    folder = pathlib.Path(args.dir)
    if not folder.is_dir():
        raise errors.CliError(f"{folder} is not a directory")
    file = pathlib.Path(args.filename) if args.filename else folder / "function.yaml"
    kube = cluster.Cluster.connect(args)
    applied = objects(folder, file, kube.namespace)
    fn = applied[0]
    source = fn["spec"]["source"].get("inline")
    if source:
        warning = package.handler_warning(fn["spec"], [f["name"] for f in source["files"]])
        if warning:
            print(f"Warning: {warning}", file=sys.stderr)
    # What the Function reads (ConfigMaps, Secrets, its ServiceAccount) first, its Triggers last.
    order = {"Function": 1, "Trigger": 2}
    for obj in sorted(applied, key=lambda o: order.get(str(o["kind"]), 0)):
        _apply(kube, obj)
    name = fn["metadata"]["name"]
    if not args.wait:
        print(f"follow it with: kubectl kfn describe {name} -n {kube.namespace}")
        return 0
    ready = wait(kube, name, timeout, sys.stderr)
    status = ready.get("status") or {}
    print(f"function {name} is ready ({time.monotonic() - started:.1f}s)")
    print(f"invoke URL:   {status.get('url') or '<none>'}")
    if status.get("functionUrl"):
        print(f"Function URL: {status['functionUrl']}")
    print(f"invoke it:    kubectl kfn invoke {name} -n {kube.namespace}")
    return 0


COMMAND = parser.Command(
    name="deploy",
    summary="Deploy a function folder and follow it until it serves",
    description=_DESCRIPTION,
    examples=_EXAMPLES,
    add_arguments=add_arguments,
    run=run,
)
