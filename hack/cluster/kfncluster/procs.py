"""Supervising the cluster's processes without systemd.

Each component runs detached in its own session, writes to its own log file,
and is recorded in a PID file together with its start time (from
``/proc/PID/stat``), so that a recycled PID is never mistaken for ours and we
only ever signal processes this tool started.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence


class ComponentError(RuntimeError):
    """A component failed; the message names it and the log file to read."""

    def __init__(self, component: str, log: pathlib.Path | None, detail: str) -> None:
        where = f" — read {log}" if log else ""
        super().__init__(f"{component}: {detail}{where}")
        self.component = component
        self.log = log


@dataclasses.dataclass(frozen=True)
class Record:
    """A process this tool started: its PID and kernel start time."""

    name: str
    pid: int
    start_time: int

    def alive(self) -> bool:
        return start_time_of(self.pid) == self.start_time


def start_time_of(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and parentheses; fields
    # after the last ')' are fixed. starttime is field 22 overall.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


class Supervisor:
    """Starts, records, finds and stops the cluster's processes."""

    def __init__(self, pid_dir: pathlib.Path, log_dir: pathlib.Path) -> None:
        self.pid_dir = pid_dir
        self.log_dir = log_dir

    def log_path(self, name: str) -> pathlib.Path:
        return self.log_dir / f"{name}.log"

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
    ) -> Record:
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path(name)
        with log.open("ab") as out:
            out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
                close_fds=True,
            )
        started = start_time_of(proc.pid)
        if started is None:
            raise ComponentError(name, log, "exited at once")
        record = Record(name, proc.pid, started)
        (self.pid_dir / f"{name}.pid").write_text(f"{record.pid} {record.start_time}\n")
        return record

    def records(self) -> list[Record]:
        found = []
        if not self.pid_dir.is_dir():
            return []
        for path in sorted(self.pid_dir.glob("*.pid")):
            try:
                pid, start = path.read_text().split()
                found.append(Record(path.stem, int(pid), int(start)))
            except ValueError:
                path.unlink()
        return found

    def record(self, name: str) -> Record | None:
        return next((r for r in self.records() if r.name == name), None)

    def forget(self, name: str) -> None:
        (self.pid_dir / f"{name}.pid").unlink(missing_ok=True)

    def stop(self, record: Record, grace: float = 10.0) -> None:
        """SIGTERM, wait, then SIGKILL — only if the PID is still ours."""
        if record.alive():
            _signal(record.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while record.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if record.alive():
                _signal(record.pid, signal.SIGKILL)
                while record.alive():
                    time.sleep(0.05)
        self.forget(record.name)

    def wait_until(
        self,
        record: Record,
        ready: Callable[[], bool],
        timeout: float,
        what: str = "become ready",
    ) -> None:
        """Polls ``ready`` until it holds; fails fast if the process dies."""
        deadline = time.monotonic() + timeout
        while True:
            if not record.alive():
                raise ComponentError(record.name, self.log_path(record.name), "exited")
            try:
                if ready():
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ComponentError(
                    record.name,
                    self.log_path(record.name),
                    f"did not {what} within {timeout:.0f}s",
                )
            time.sleep(0.1)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
