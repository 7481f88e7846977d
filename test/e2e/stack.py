"""Stopping and starting the local stack's PostgreSQL, for the outage test."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from test.conftest import ROOT

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _data_dir() -> Path:
    state = Path(os.environ.get("STATE_DIR", ROOT / ".state"))
    if not state.is_absolute():
        state = ROOT / state
    return state / "postgres" / "data"


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
    subprocess.run(
        ["bash", str(ROOT / "infra" / "start.sh")], check=True, capture_output=True, timeout=300
    )
