"""One-shot `seed` service of the Compose stack: example data in the source database.

Runs `test/utils/create_records_db.py` once, when the `patients` table of the
source database (SOURCE_DB_URL) is empty, so that `docker compose up` run again
does not add the same patients twice. SEED_PATIENTS sets the count (100).

    python docker/seed.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "test" / "utils" / "create_records_db.py"


def patient_count(url: str) -> int:
    """Rows in `patients`; 0 when the table does not exist yet."""
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.patients') IS NOT NULL")
        row = cur.fetchone()
        if not row or not row[0]:
            return 0
        cur.execute("SELECT count(*) FROM patients")
        row = cur.fetchone()
        return int(row[0]) if row else 0


def main() -> int:
    url = os.environ.get("SOURCE_DB_URL", "")
    patients = os.environ.get("SEED_PATIENTS", "100")
    if not url:
        print("seed: SOURCE_DB_URL is not set: set it to the source database's URL.")
        return 2
    # SQLAlchemy URLs name their driver (postgresql+psycopg://): libpq does not.
    libpq_url = url.replace("+psycopg2://", "://").replace("+psycopg://", "://")
    count = patient_count(libpq_url)
    if count:
        print(f"seed: the source database already holds {count} patients: nothing to do.")
        return 0
    command = [sys.executable, str(SCRIPT), "--patients", patients, "--db-url", url]
    print(f"seed: {SCRIPT.relative_to(ROOT)} --patients {patients}", flush=True)
    return subprocess.call(command, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
