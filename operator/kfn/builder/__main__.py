"""``python3 -m kfn.builder [build|prepare|push]``: one phase (or all) of a build.

Exit status 0 with the result as JSON in the termination log, or 1 with
``{"error": ..., "phase": ...}`` there (the phase it failed in: prepare, install or push) and
the whole story on stdout.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

from kfn import oci
from kfn.builder import build
from kfn.builder.config import BuildConfig, BuildError

PHASES = ("build", "prepare", "push")
#: The kubelet keeps at most 4096 bytes of a termination message.
MESSAGE_LIMIT = 3800


def registry(cfg: BuildConfig) -> oci.Registry:
    """The client of the target's registry: its login from the mounted Secret, its CA bundle,
    or plain HTTP for the development registry."""
    host = oci.Reference.parse(cfg.target).registry
    credentials = None
    if cfg.registry_auth_file is not None:
        source = cfg.registry_auth_source
        try:
            credentials = oci.Credentials.from_docker_config(
                cfg.registry_auth_file.read_bytes(), host, source
            )
        except OSError as exc:
            raise BuildError(f"cannot read the registry credentials of {source}: {exc}") from exc
        except ValueError as exc:
            raise BuildError(str(exc)) from exc
        if credentials is None:
            raise BuildError(f"{source} holds no credentials for the registry {host}")
    ca_file = cfg.registry_ca_file
    if ca_file is None and cfg.registry_ca_pem.strip():
        cfg.ca_path.write_text(cfg.registry_ca_pem)
        ca_file = cfg.ca_path
    return oci.Registry(
        host,
        credentials=credentials,
        ca_file=str(ca_file) if ca_file is not None else None,
        plain_http=cfg.registry_plain_http,
        timeout=120,
    )


@dataclasses.dataclass
class Progress:
    """The phase a build is in, which the termination message of a failed build names."""

    phase: str = "prepare"


def run(phase: str, cfg: BuildConfig, progress: Progress | None = None) -> dict[str, object] | None:
    progress = progress or Progress()
    # The registry's login is the first thing each container needs.
    progress.phase = "push" if phase == "push" else "prepare"
    client = registry(cfg)
    if phase in ("build", "prepare"):
        progress.phase = "prepare"
        plan = build.prepare(cfg, client)
        if phase == "prepare":
            plan.dump(cfg.plan_path)
            return None
    else:
        plan = build.Plan.load(cfg.plan_path)
    if cfg.is_python:
        progress.phase = "install"
        build.install_python(cfg, plan)
    progress.phase = "push"
    return build.push(cfg, plan, client)


def main(argv: list[str]) -> int:
    phase = argv[0] if argv else "build"
    if phase not in PHASES:
        print(f"usage: python3 -m kfn.builder [{'|'.join(PHASES)}]", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    try:
        cfg = BuildConfig.from_env()
    except BuildError as exc:
        print(f"build failed: {exc}", flush=True)
        return 1
    progress = Progress()
    try:
        result = run(phase, cfg, progress)
    except (BuildError, oci.RegistryError, OSError) as exc:
        message = str(exc)
        print(f"build failed: {message}", flush=True)
        _terminate(cfg, {"error": message[-MESSAGE_LIMIT:], "phase": progress.phase})
        return 1
    if result is not None:
        result["seconds"] = {**result["seconds"], "total": round(time.monotonic() - t0, 3)}  # type: ignore[dict-item]
        _terminate(cfg, result)
        print(json.dumps(result), flush=True)
    return 0


def _terminate(cfg: BuildConfig, doc: dict[str, object]) -> None:
    try:
        cfg.termination_log.write_text(json.dumps(doc, separators=(",", ":"))[:4000])
    except OSError as exc:
        print(f"cannot write the termination message: {exc}", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
