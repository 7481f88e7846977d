"""Stopping and starting parts of the local stack (PostgreSQL, Kafka, Kafka Connect),
for the outage tests."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from test.conftest import ROOT

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _state() -> Path:
    state = Path(os.environ.get("STATE_DIR", ROOT / ".state"))
    return state if state.is_absolute() else ROOT / state


def _data_dir() -> Path:
    return _state() / "postgres" / "data"


def _pg_ctl(*args: str) -> None:
    subprocess.run(
        ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(_data_dir()), *args],
        check=True,
        capture_output=True,
        timeout=120,
    )


def stop_postgres() -> None:
    _pg_ctl("-m", "fast", "-w", "stop")


def start_postgres() -> None:
    # The stack's start script passes the same options; pg_ctl reads them back from postmaster.opts.
    start_stack()


def stop_connect(sig: int = signal.SIGTERM) -> None:
    """Stop the stack's Kafka Connect worker with `sig`, and wait until it is gone."""
    stop_part("connect", sig)


def stop_part(name: str, sig: int = signal.SIGTERM) -> None:
    """Stop a part the stack started (`kafka`, `connect`) with `sig`; wait until gone."""
    pid = int((_state() / "pids" / f"{name}.pid").read_text().split()[0])
    os.kill(pid, sig)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)


def start_stack() -> None:
    """Start whatever part of the stack is not running (the start script is idempotent)."""
    subprocess.run(
        ["bash", str(ROOT / "infra" / "start.sh")], check=True, capture_output=True, timeout=300
    )
