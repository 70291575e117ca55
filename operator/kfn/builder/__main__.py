"""``python3 -m kfn.builder [build|prepare|push]``: one phase (or all) of a build.

Exit status 0 with the result as JSON in the termination log, or 1 with ``{"error": ...}``
there and the whole story on stdout.
"""

from __future__ import annotations

import json
import sys
import time

from kfn import oci
from kfn.builder import build
from kfn.builder.config import PYTHON, BuildConfig, BuildError

PHASES = ("build", "prepare", "push")
#: The kubelet keeps at most 4096 bytes of a termination message.
MESSAGE_LIMIT = 3800


def run(phase: str, cfg: BuildConfig) -> dict[str, object] | None:
    registry = oci.Registry(oci.Reference.parse(cfg.target).registry, timeout=120)
    if phase in ("build", "prepare"):
        plan = build.prepare(cfg, registry)
        if phase == "prepare":
            plan.dump(cfg.plan_path)
            return None
    else:
        plan = build.Plan.load(cfg.plan_path)
    if cfg.runtime == PYTHON:
        build.install_python(cfg, plan)
    return build.push(cfg, plan, registry)


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
    try:
        result = run(phase, cfg)
    except (BuildError, oci.RegistryError, OSError) as exc:
        message = str(exc)
        print(f"build failed: {message}", flush=True)
        _terminate(cfg, {"error": message[-MESSAGE_LIMIT:]})
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
