"""What the data tools share: database URLs, the MIMIC schema, the test data's place.

The test data ship with the repository, gzip'd, in test/data (its README.md says
where they come from): the MIMIC-III demo as `<table>.csv.gz`, the Pyrog mappings
as `<name>.json.gz`. `open_csv` reads a `.csv` or a `.csv.gz` alike; `unpacked`
gives a plain copy of a gzip'd file or folder, for what reads plain files only
(the services, `river --mapping`, CONCEPT_MAPS).

The tools run as scripts (``python test/utils/load_csv_folder.py``) and as modules
(``from test.utils import load_csv_folder``): nothing here imports the services.
"""

from __future__ import annotations

import atexit
import gzip
import hashlib
import io
import os
import re
import resource
import shutil
import sys
import tempfile
from pathlib import Path
from typing import IO

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
SCHEMA_PATH = HERE / "mimic_schema.sql"
DEFAULT_SOURCE_DB_URL = "postgresql://postgres:postgres@127.0.0.1:5432/mimic"
# The test data of the repository (see test/data/README.md).
DATA_DIR = REPO_ROOT / "test" / "data"
DEFAULT_DEMO_DIR = DATA_DIR / "mimic-iii-demo"
MAPPINGS_DIR = DATA_DIR / "mappings"


def source_db_url(url: str | None = None) -> str:
    """The URL given, else $SOURCE_DB_URL, else the local stack's `mimic`."""
    return url or os.environ.get("SOURCE_DB_URL") or DEFAULT_SOURCE_DB_URL


def demo_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The MIMIC-III demo folder: the path given, else $MIMIC_DEMO_DIR, else the one
    shipped in test/data."""
    return Path(path or os.environ.get("MIMIC_DEMO_DIR") or DEFAULT_DEMO_DIR)


# --------------------------------------------------------------------------- #
# CSV files, plain or gzip'd
# --------------------------------------------------------------------------- #
CSV_SUFFIXES = (".csv", ".csv.gz")


def table_of(path: str | os.PathLike[str]) -> str | None:
    """`name` for a file `name.csv` or `name.csv.gz`, else None."""
    name = Path(path).name
    for suffix in CSV_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def csv_path(folder: str | os.PathLike[str], table: str) -> Path | None:
    """The file of `table` in `folder`: `<table>.csv`, else `<table>.csv.gz`; None if neither."""
    for suffix in CSV_SUFFIXES:
        path = Path(folder) / f"{table}{suffix}"
        if path.is_file():
            return path
    return None


def csv_files(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """table -> its file, for every `<table>.csv` and `<table>.csv.gz` of `folder`, in
    the order of the table names. A table with both files is refused (which one?)."""
    files: dict[str, Path] = {}
    for path in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else ():
        table = table_of(path)
        if table is None or not path.is_file():
            continue
        if table in files:
            raise ValueError(
                f"{folder} has both {files[table].name} and {path.name}: keep one of them"
            )
        files[table] = path
    return dict(sorted(files.items()))


def open_bytes(path: str | os.PathLike[str]) -> IO[bytes]:
    """A data file opened for reading bytes: decompressed as it is read when it is
    gzip'd (`.gz`), as it is otherwise."""
    path = Path(path)
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def open_csv(path: str | os.PathLike[str]) -> IO[str]:
    """A `.csv` or `.csv.gz` file opened as text for the csv module (UTF-8, newline='')."""
    return io.TextIOWrapper(open_bytes(path), encoding="utf-8", newline="")


# --------------------------------------------------------------------------- #
# Plain copies of gzip'd files, for what reads plain files only
# --------------------------------------------------------------------------- #
_unpacked_dir: Path | None = None
_unpacked: dict[Path, Path] = {}


def _scratch() -> Path:
    """This process's folder of plain copies, removed when it exits."""
    global _unpacked_dir
    if _unpacked_dir is None:
        _unpacked_dir = Path(tempfile.mkdtemp(prefix="fhir-river-data-"))
        owner = os.getpid()

        def remove(path: Path = _unpacked_dir) -> None:
            if os.getpid() == owner:  # not in a forked child
                shutil.rmtree(path, ignore_errors=True)

        atexit.register(remove)
    return _unpacked_dir


def _gunzip(source: Path, target: Path) -> None:
    with gzip.open(source, "rb") as f, open(target, "wb") as out:
        shutil.copyfileobj(f, out)


def unpacked(path: str | os.PathLike[str]) -> Path:
    """`path` as a plain file or folder, for what cannot read gzip'd files.

    A file that exists is itself; a missing `name` whose `name.gz` exists is a
    decompressed copy of it, under the same name; a folder holding `.gz` files is a
    copy of it with them decompressed (`x.json.gz` gives `x.json`). Copies are made
    once per process, in a temporary folder removed when the process exits.
    """
    path = Path(path).resolve()
    if path in _unpacked:
        return _unpacked[path]
    packed = path.with_name(path.name + ".gz")
    if path.is_file() or (path.is_dir() and not any(path.glob("*.gz"))):
        return path
    if not path.exists() and not packed.is_file():
        raise FileNotFoundError(f"neither {path} nor {packed.name} beside it exists")
    # One folder per source, so that two sources of the same name never meet.
    home = _scratch() / hashlib.sha256(str(path).encode()).hexdigest()[:12]
    home.mkdir()
    target = home / path.name
    if path.is_dir():
        target.mkdir()
        for entry in sorted(path.iterdir()):
            if entry.is_file() and entry.suffix == ".gz":
                _gunzip(entry, target / entry.name[: -len(".gz")])
            elif entry.is_file():
                shutil.copyfile(entry, target / entry.name)
    else:
        _gunzip(packed, target)
    _unpacked[path] = target
    return target


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
