"""Load a folder of CSV files (one file a table) into PostgreSQL with COPY.

    python test/utils/load_csv_folder.py [FOLDER] [--db-url URL] [--replace]

FOLDER defaults to $MIMIC_DEMO_DIR, else the MIMIC-III demo shipped in
test/data/mimic-iii-demo; the database to $SOURCE_DB_URL, else the local stack's
`mimic`. The MIMIC schema (mimic_schema.sql) is applied first, then each
`<table>.csv` or gzip'd `<table>.csv.gz` (decompressed as it is streamed) goes into
`<table>` with COPY (the header names the columns; an empty field is NULL), and the
rows of each table are printed.

Everything runs in one transaction: a failure leaves the database as it was.
Idempotent use: `--replace` empties each loaded table first, so running the same
command again gives the same rows. Without it the rows are appended, and loading
the same files twice fails on the duplicate row_id (and changes nothing).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

try:
    from . import dbutil
except ImportError:  # run as a script
    import dbutil

CHUNK_BYTES = 1 << 20


def csv_files(folder: Path) -> dict[str, Path]:
    """table -> its `<table>.csv` or `<table>.csv.gz` file in `folder`."""
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"no folder {folder}")
    files = dbutil.csv_files(folder)
    if not files:
        raise FileNotFoundError(f"no .csv or .csv.gz file in {folder}")
    return files


def read_header(raw: bytes, path: Path) -> list[str]:
    header = next(csv.reader(io.StringIO(raw.decode("utf-8"))), None)
    if not header:
        raise ValueError(f"{path} has no header line")
    return [name.strip() for name in header]


def existing_tables(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    ).fetchall()
    return {name for (name,) in rows}


def copy_file(cur: psycopg.Cursor, table: str, path: Path) -> int:
    """Stream one CSV file (gzip'd or not) into `table` with COPY; the rows copied."""
    with dbutil.open_bytes(path) as f:
        columns = read_header(f.readline(), path)
        statement = sql.SQL(
            "COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER false, ENCODING 'UTF8')"
        ).format(sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
        with cur.copy(statement) as copy:
            while chunk := f.read(CHUNK_BYTES):
                copy.write(chunk)
    return cur.rowcount


def load_folder(
    url: str | None,
    folder: str | Path,
    replace: bool = True,
    schema: Path | None = dbutil.SCHEMA_PATH,
) -> dict[str, int]:
    """Load every `<table>.csv` (or `.csv.gz`) of `folder` into `<table>`; rows per table.

    `replace` empties the loaded tables first (so a re-run gives the same rows);
    `schema` is applied first (None: the tables must exist). One transaction.
    """
    url = dbutil.source_db_url(url)
    files = csv_files(Path(folder))
    counts: dict[str, int] = {}
    with psycopg.connect(dbutil.libpq_url(url)) as conn:
        if schema is not None:
            dbutil.apply_schema(conn, schema)
        tables = existing_tables(conn)
        missing = [table for table in files if table not in tables]
        if missing:
            raise ValueError(
                f"no table for {', '.join(missing)} in the database: add it to the schema"
            )
        with conn.cursor() as cur:
            if replace:
                cur.execute(
                    sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, files)))
                )
            for table, path in files.items():
                counts[table] = copy_file(cur, table, path)
            for table in files:
                cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Load a folder of CSV files (one a table) into PostgreSQL with COPY.",
        epilog=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "folder",
        nargs="?",
        type=Path,
        default=None,
        help="folder of <table>.csv or <table>.csv.gz files (default: $MIMIC_DEMO_DIR, else"
        f" {dbutil.DEFAULT_DEMO_DIR})",
    )
    parser.add_argument(
        "--db-url", default=None, help="database URL (default: $SOURCE_DB_URL, else local mimic)"
    )
    parser.add_argument(
        "--replace", action="store_true", help="empty each loaded table before copying"
    )
    parser.add_argument(
        "--no-schema", action="store_true", help="do not apply mimic_schema.sql first"
    )
    args = parser.parse_args(argv)

    folder = args.folder or dbutil.demo_dir()
    url = dbutil.source_db_url(args.db_url)
    started = time.perf_counter()
    try:
        counts = load_folder(
            url, folder, replace=args.replace, schema=None if args.no_schema else dbutil.SCHEMA_PATH
        )
    except (OSError, ValueError, psycopg.Error) as exc:
        hint = ""
        if isinstance(exc, psycopg.errors.UniqueViolation):
            hint = "\nThese rows are already there: add --replace to load the folder again."
        print(f"load_csv_folder: {str(exc).rstrip()}{hint}", file=sys.stderr)
        return 1
    width = max(map(len, counts))
    for table, rows in counts.items():
        print(f"{table:<{width}}  {rows:>10,}")
    print(
        f"{sum(counts.values()):,} rows in {len(counts)} tables of {dbutil.redact(url)}"
        f" in {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
