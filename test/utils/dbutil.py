"""What the data tools share: database URLs, the MIMIC schema, the demo's place.

The tools run as scripts (``python test/utils/load_csv_folder.py``) and as modules
(``from test.utils import load_csv_folder``): nothing here imports the services.
"""

from __future__ import annotations

import os
import re
import resource
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
SCHEMA_PATH = HERE / "mimic_schema.sql"
DEFAULT_SOURCE_DB_URL = "postgresql://postgres:postgres@127.0.0.1:5432/mimic"
# The shared data lives beside the checkout: ../shared/data (see its README).
DEFAULT_DEMO_DIR = REPO_ROOT.parent / "shared" / "data" / "mimic-iii-demo"


def source_db_url(url: str | None = None) -> str:
    """The URL given, else $SOURCE_DB_URL, else the local stack's `mimic`."""
    return url or os.environ.get("SOURCE_DB_URL") or DEFAULT_SOURCE_DB_URL


def demo_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The MIMIC-III demo folder: the path given, else $MIMIC_DEMO_DIR, else ../shared."""
    return Path(path or os.environ.get("MIMIC_DEMO_DIR") or DEFAULT_DEMO_DIR)


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (postgresql+psycopg://...) as libpq takes it (postgresql://...)."""
    return re.sub(r"^postgres(?:ql)?\+\w+://", "postgresql://", url)


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def apply_schema(conn, path: Path = SCHEMA_PATH) -> None:
    """Create the MIMIC tables and indexes that are missing (idempotent)."""
    with conn.cursor() as cur:
        cur.execute(path.read_text())


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
