"""``python -m kfn.operator`` logs as the chart says: in JSON, kopf's lines and its own death
are JSON lines too."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_operator_that_cannot_reach_the_api_server_says_so_in_json_lines_only(
    tmp_path: pathlib.Path,
) -> None:
    # No kubeconfig and no in-cluster account: kopf cannot log in, and the operator stops.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "KUBECONFIG": str(tmp_path / "none"),
        "PYTHONPATH": str(REPO / "operator"),
        "KFN_LOG_FORMAT": "json",
        "KFN_METRICS_PORT": str(_free_port()),
        "KFN_HEALTH_ENDPOINT": f"http://127.0.0.1:{_free_port()}/healthz",
    }
    result = subprocess.run(
        [sys.executable, "-m", "kfn.operator"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert result.returncode != 0
    docs = [json.loads(line) for line in result.stderr.splitlines() if line]
    assert {"time", "level", "logger", "message"} <= set(docs[0])
    kopfs = [d for d in docs if d["logger"].startswith("kopf.")]
    assert any("authenticate" in d["message"] for d in kopfs), kopfs
    died = next(d for d in docs if d["level"] == "CRITICAL")
    assert died["message"] == "uncaught exception"
    assert "LoginError" in died["exception"]
