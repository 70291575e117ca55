"""Every external command the cluster tool runs goes through here.

One place decides what a missing program means. While bring-up installs the host packages,
nothing may use them; after that a missing program is a broken machine, and the error names
the Debian package that provides it. Clean-up asks with ``missing_ok``: a machine without
iptables has no iptables rules to remove, so a missing tool there means "nothing to clean",
never a traceback.

Every command run is appended to a trace file (``logs/commands.log`` of the cluster's state,
once :func:`trace_to` has been called), so a failure can be followed step by step.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence

#: Program → the Debian package that provides it. ``hostdeps`` installs the packages of the
#: programs bring-up needs; the rest (the host's own basics) name their package in errors.
PACKAGES: dict[str, str] = {
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "runc": "runc",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "docker-registry": "docker-registry",
    "debootstrap": "debootstrap",
    "iptables": "iptables",
    "ip6tables": "iptables",
    "conntrack": "conntrack",
    "ipset": "ipset",
    "ip": "iproute2",
    "mount": "mount",
    "umount": "mount",
    "nsenter": "util-linux",
    "socat": "socat",
    "buildah": "buildah",
    "node": "nodejs",
    "npm": "npm",
    "java": "openjdk-17-jre-headless",
    "mvn": "maven",
    "apt-get": "apt",
    "chroot": "coreutils",
    "ss": "iproute2",
    "taskset": "util-linux",
    # What bench/activator_overhead.py measures the activator against, and its load tool.
    "nginx": "nginx-light",
    "wrk": "wrk",
    "go": "",
}

_trace: pathlib.Path | None = None


class MissingToolError(RuntimeError):
    """A program the cluster needs is not installed; the message says which package has it."""

    def __init__(self, tool: str) -> None:
        package = PACKAGES.get(tool) or PACKAGES.get(pathlib.Path(tool).name, "")
        if package:
            how = f"install the Debian package {package} (`make cluster` installs it)"
        else:
            how = "it does not come from a Debian package; install it as docs/local-cluster.md says"
        super().__init__(f"{tool} is not installed: {how}")
        self.tool = tool
        self.package = package


def trace_to(path: pathlib.Path | None) -> None:
    """Sends the trace of every later command to ``path`` (None stops tracing)."""
    global _trace  # noqa: PLW0603 - one trace per process of the tool
    _trace = path


def which(tool: str) -> str | None:
    """The program's path, or None; absolute paths are checked as they are."""
    if tool.startswith("/"):
        return tool if os.access(tool, os.X_OK) else None
    return shutil.which(tool)


def _note(argv: Sequence[str], outcome: str) -> None:
    if _trace is None:
        return
    try:
        _trace.parent.mkdir(parents=True, exist_ok=True)
        with _trace.open("a") as out:
            out.write(f"{time.strftime('%H:%M:%S')} {' '.join(argv)} -> {outcome}\n")
    except OSError:
        pass


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    missing_ok: bool = False,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: pathlib.Path | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs ``argv`` and captures its output as text.

    A missing program raises :class:`MissingToolError`, or with ``missing_ok`` returns exit
    status 127 and no output, which every caller reads as "nothing there". ``check`` raises
    with the command's own error output when it fails.
    """
    if which(argv[0]) is None:
        _note(argv, "not installed")
        if missing_ok:
            return subprocess.CompletedProcess(list(argv), 127, "", "")
        raise MissingToolError(argv[0])
    result = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        input=input,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    _note(argv, f"exit {result.returncode}")
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()[-800:]
        raise RuntimeError(f"{' '.join(argv[:4])} failed (exit {result.returncode}): {detail}")
    return result


def ok(*argv: str) -> bool:
    """True when the command exists and succeeds."""
    return run(argv, check=False, missing_ok=True).returncode == 0


def output(*argv: str) -> str:
    """The command's standard output, or nothing when it is missing or fails."""
    result = run(argv, check=False, missing_ok=True)
    return result.stdout if result.returncode == 0 else ""


def run_logged(
    cmd: Sequence[str],
    log: pathlib.Path,
    what: str,
    *,
    cwd: pathlib.Path | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Runs ``cmd`` to completion with its output appended to ``log``.

    A failure raises with ``what`` and the log file to read, which is how every long step of
    the tool reports a command that went wrong.
    """
    search = (env or os.environ).get("PATH")
    found = cmd[0] if cmd[0].startswith("/") else shutil.which(cmd[0], path=search)
    if found is None or not os.access(found, os.X_OK):
        _note(cmd, "not installed")
        raise MissingToolError(cmd[0])
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        where = f"(in {cwd}) " if cwd else ""
        out.write(f"\n=== {where}{' '.join(cmd)}\n".encode())
        out.flush()
        result = subprocess.run(
            list(cmd),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    _note(cmd, f"exit {result.returncode}")
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {result.returncode}) — read {log}")
