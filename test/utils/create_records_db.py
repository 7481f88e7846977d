"""Create MIMIC-shaped synthetic records in PostgreSQL (or CSV files), streamed.

    python test/utils/create_records_db.py --patients 10000 --seed 7 --replace
    python test/utils/create_records_db.py --patients 1000000 --output-dir /tmp/synth
    python test/utils/create_records_db.py --insert-new 3

Patients come with their admissions, ICU stays, services, diagnoses_icd,
procedures_icd and prescriptions in the MIMIC-III demo's proportions (synthetic.py),
plus a pool of caregivers and the ICD-9 dictionary rows the codes point to (with
synthetic titles). The proportions come from the statistics shipped in
test/utils/mimic_reference.json.gz: no demo is needed (--demo-dir, or
$MIMIC_DEMO_DIR when it holds the demo, learns them from a demo instead). The same
--patients and --seed always give the same rows. Rows are generated in blocks
and streamed with COPY (one connection a table, all committed at the end): the
memory does not grow with --patients.

--replace empties the generated tables first (the dictionaries are completed,
never emptied), and drops their keys and indexes for the load, building them
again at the end: run it again and you get the same database. Without it the
rows are added to what is there (the demo, say), and a run is refused at once,
changing nothing, when synthetic rows (row_id >= 100,000,000) are already there.
--output-dir writes `<table>.csv` files in the demo's format instead (load them
with load_csv_folder.py). --tables patients,admissions,... generates (and, with
--replace, empties) only those tables: a benchmark's source in a fraction of the
time and space.

--insert-new K (the seed's use): inserts K new patients, one admission each, into
a running database with fresh ids (above the largest there), with plain INSERTs
in one transaction, so that a live CDC pipeline sees them. Run without --replace
on a database that already holds synthetic rows (the local stack after make run),
the script does that with --patients.
"""

from __future__ import annotations

import argparse
import queue
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

try:
    from . import dbutil, synthetic
except ImportError:  # run as a script
    import dbutil
    import synthetic

MAX_PATIENTS = 10_000_000  # row_id stays an integer (prescriptions: ~100 a patient)
ROWS_PER_WRITE = 5000  # caregivers
WRITER_QUEUE = 64  # buffers of at most 128 KiB waiting for the server, per table
GENERATED_TABLES = synthetic.PATIENT_TABLES + synthetic.POOL_TABLES


class _BoundedWriter(QueuedLibpqWriter):
    """Writes on a worker thread (the server ingests while Python generates) with a
    small queue, so a slow server makes the generator wait instead of memory grow."""

    def __init__(self, cursor: psycopg.Cursor) -> None:
        super().__init__(cursor)
        self._queue = queue.Queue(maxsize=WRITER_QUEUE)


def _copy_statement(table: str) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, synthetic.COLUMNS[table])),
    )


class _Progress:
    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.quiet, self.done = total, quiet, 0
        self.started = time.perf_counter()
        self.next_report = max(1, total // 10)

    def add(self, n: int, rows: int) -> None:
        self.done += n
        if not self.quiet and self.done >= self.next_report and self.done < self.total:
            self.next_report += max(1, self.total // 10)
            print(
                f"  {self.done:,} / {self.total:,} patients, {rows:,} rows,"
                f" {time.perf_counter() - self.started:.0f} s",
                flush=True,
            )


def _ensure_dictionaries(conn: psycopg.Connection, ref: synthetic.Reference) -> dict[str, int]:
    """Add the dictionary rows that are missing (by row_id or code); rows added."""
    added = {}
    with conn.cursor() as cur:
        for table in synthetic.DICTIONARY_TABLES:
            cur.execute(
                sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                    sql.Identifier(f"new_{table}"), sql.Identifier(table)
                )
            )
            with cur.copy(
                sql.SQL("COPY {} FROM STDIN WITH (FORMAT csv)").format(
                    sql.Identifier(f"new_{table}")
                )
            ) as copy:
                copy.write(synthetic.csv_text(ref.dictionary[table]))
            cur.execute(
                sql.SQL("INSERT INTO {} SELECT * FROM {} ON CONFLICT DO NOTHING").format(
                    sql.Identifier(table), sql.Identifier(f"new_{table}")
                )
            )
            added[table] = cur.rowcount
    return added


def _synthetic_table(conn: psycopg.Connection) -> str | None:
    """A generated table that already holds synthetic rows, if any."""
    for table in GENERATED_TABLES:
        found = conn.execute(
            sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE row_id >= %s)").format(
                sql.Identifier(table)
            ),
            (synthetic.ROW_ID_BASE,),
        ).fetchone()[0]
        if found:
            return table
    return None


def holds_synthetic_rows(url: str | None) -> bool:
    url = dbutil.libpq_url(dbutil.source_db_url(url))
    with psycopg.connect(url) as conn:
        dbutil.apply_schema(conn)
        return _synthetic_table(conn) is not None


def _refuse_existing(conn: psycopg.Connection) -> None:
    """Fail now, not after the last COPY, when synthetic rows are already there."""
    table = _synthetic_table(conn)
    if table is not None:
        raise ValueError(
            f"{table} already holds synthetic rows (row_id >= {synthetic.ROW_ID_BASE:,}):"
            " add --replace to make them again, or use --insert-new to add patients"
        )


def _indexes(conn: psycopg.Connection, tables: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(table, name, definition) of the primary keys, then of the plain indexes
    of `tables`; other constraints and their indexes are left alone."""
    return conn.execute(
        """
        SELECT t.relname, c.conname, pg_get_constraintdef(c.oid)
        FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
        WHERE t.relnamespace = current_schema()::regnamespace
          AND t.relname = ANY(%s) AND c.contype = 'p'
        UNION ALL
        SELECT t.relname, ic.relname, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_class t ON t.oid = i.indrelid
        WHERE t.relnamespace = current_schema()::regnamespace
          AND t.relname = ANY(%s)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        """,
        (list(tables), list(tables)),
    ).fetchall()


def _drop_indexes(conn: psycopg.Connection, indexes: list[tuple[str, str, str]]) -> None:
    for table, name, definition in indexes:
        if definition.startswith("PRIMARY KEY"):
            statement = "ALTER TABLE {} DROP CONSTRAINT {}"
            conn.execute(sql.SQL(statement).format(sql.Identifier(table), sql.Identifier(name)))
        else:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))


def _build_indexes(url: str, indexes: list[tuple[str, str, str]], quiet: bool) -> None:
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '256MB'")
        for table, name, definition in indexes:
            if definition.startswith("PRIMARY KEY"):
                conn.execute(
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                        sql.Identifier(table), sql.Identifier(name), sql.SQL(definition)
                    )
                )
            else:
                conn.execute(definition)
    if not quiet:
        print(f"  {len(indexes)} keys and indexes built in {time.perf_counter() - started:.0f} s")


def create_in_database(
    url: str | None,
    n_patients: int,
    seed: int = 0,
    *,
    replace: bool = False,
    demo_dir: Path | None = None,
    quiet: bool = True,
    tables: tuple[str, ...] = GENERATED_TABLES,
) -> dict[str, int]:
    """Generate `n_patients` with their rows into the database; rows per table.

    `tables` limits the generated tables (patients always among them): a
    benchmark of a mapping that reads three tables need not write twelve.

    With `replace` the tables are emptied, and their primary keys and indexes are
    dropped for the load and built again after it: twice as fast as keeping them
    up to date row by row. (Were the process killed meanwhile, mimic_schema.sql,
    which every run and every start of the stack applies, puts them back.)
    """
    url = dbutil.libpq_url(dbutil.source_db_url(url))
    ref = synthetic.load_reference(demo_dir)
    unknown = sorted(set(tables) - set(GENERATED_TABLES))
    if unknown or "patients" not in tables:
        raise ValueError(
            f"--tables: {', '.join(unknown) or 'patients missing'}; choose among"
            f" {', '.join(GENERATED_TABLES)} (patients always)"
        )
    tables = tuple(t for t in GENERATED_TABLES if t in tables)
    indexes: list[tuple[str, str, str]] = []
    with psycopg.connect(url) as conn:
        dbutil.apply_schema(conn)
        if replace:
            conn.execute(
                sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, tables)))
            )
            indexes = _indexes(conn, tables)
            _drop_indexes(conn, indexes)
        else:
            _refuse_existing(conn)
        counts = {f"{t} (added)": n for t, n in _ensure_dictionaries(conn, ref).items()}
    counts.update(dict.fromkeys(tables, 0))
    progress = _Progress(n_patients, quiet)
    try:
        with ExitStack() as connections:
            conns = {t: connections.enter_context(psycopg.connect(url)) for t in tables}
            with ExitStack() as copies:
                sinks = {}
                for table, conn in conns.items():
                    cur = conn.cursor()
                    sinks[table] = copies.enter_context(
                        cur.copy(_copy_statement(table), writer=_BoundedWriter(cur))
                    )
                if "caregivers" in sinks:
                    for rows in _chunks(synthetic.iter_caregivers(n_patients, seed, ref)):
                        sinks["caregivers"].write(synthetic.csv_text(rows))
                        counts["caregivers"] += len(rows)
                per_patient = [t for t in tables if t in synthetic.PATIENT_TABLES]
                for block in synthetic.iter_csv_blocks(
                    n_patients, seed, tables=per_patient, reference=ref
                ):
                    for table, (rows, text) in block.items():
                        sinks[table].write(text)
                        counts[table] += rows
                    progress.add(block["patients"][0], sum(counts.values()))
            # Every COPY ended well: the connections' exits commit them all.
    finally:
        if indexes:
            _build_indexes(url, indexes, quiet)
    with psycopg.connect(url, autocommit=True) as conn:
        for table in tables:
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
    return counts


def _chunks(rows, size: int = ROWS_PER_WRITE):
    chunk: list[tuple] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_csv_folder(
    folder: Path,
    n_patients: int,
    seed: int = 0,
    *,
    demo_dir: Path | None = None,
    quiet: bool = True,
) -> dict[str, int]:
    """Write `<table>.csv` files (the demo's format: header, CRLF, empty = NULL)."""
    ref = synthetic.load_reference(demo_dir)
    folder.mkdir(parents=True, exist_ok=True)
    counts = dict.fromkeys(synthetic.TABLES, 0)
    progress = _Progress(n_patients, quiet)
    with ExitStack() as stack:
        files = {
            t: stack.enter_context(open(folder / f"{t}.csv", "w", newline="", encoding="utf-8"))
            for t in synthetic.TABLES
        }
        for table, f in files.items():
            f.write(synthetic.csv_text([synthetic.COLUMNS[table]]))
        for table in synthetic.DICTIONARY_TABLES:
            files[table].write(synthetic.csv_text(ref.dictionary[table]))
            counts[table] = len(ref.dictionary[table])
        for rows in _chunks(synthetic.iter_caregivers(n_patients, seed, ref)):
            files["caregivers"].write(synthetic.csv_text(rows))
            counts["caregivers"] += len(rows)
        for block in synthetic.iter_csv_blocks(n_patients, seed, reference=ref):
            for table, (rows, text) in block.items():
                files[table].write(text)
                counts[table] += rows
            progress.add(block["patients"][0], sum(counts.values()))
    return counts


def _next_id(cur: psycopg.Cursor, table: str, column: str, floor: int) -> int:
    cur.execute(
        sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(column), sql.Identifier(table))
    )
    (largest,) = cur.fetchone()
    return max(floor, (largest or 0) + 1)


def insert_new(
    url: str | None, k: int, seed: int = 0, *, demo_dir: Path | None = None
) -> dict[str, list[tuple]]:
    """Insert `k` new patients with one admission each, with fresh ids; the rows."""
    url = dbutil.libpq_url(dbutil.source_db_url(url))
    ref = synthetic.load_reference(demo_dir)
    tables = ("patients", "admissions")
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        dbutil.apply_schema(conn)
        # Two inserters at once would pick the same ids: the second waits.
        cur.execute("LOCK TABLE patients, admissions IN SHARE ROW EXCLUSIVE MODE")
        start = synthetic.IdStart(
            subject_id=_next_id(cur, "patients", "subject_id", synthetic.SUBJECT_ID_BASE),
            hadm_id=_next_id(cur, "admissions", "hadm_id", synthetic.HADM_ID_BASE),
        )
        for table in tables:
            start.row_id[table] = _next_id(cur, table, "row_id", synthetic.ROW_ID_BASE)
        inserted: dict[str, list[tuple]] = {t: [] for t in tables}
        for block in synthetic.iter_blocks(
            k, seed, tables=tables, start=start, reference=ref, max_admissions=1
        ):
            for table in tables:
                columns = synthetic.COLUMNS[table]
                cur.executemany(
                    sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                        sql.Identifier(table),
                        sql.SQL(", ").join(map(sql.Identifier, columns)),
                        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
                    ),
                    block[table],
                )
                inserted[table].extend(block[table])
    return inserted


def _print_counts(counts: dict[str, int], target: str, started: float) -> None:
    elapsed = time.perf_counter() - started
    total = sum(counts.values())
    width = max(map(len, counts))
    for table, rows in counts.items():
        print(f"{table:<{width}}  {rows:>13,}")
    print(f"{total:,} rows into {target}")
    print(
        f"time {elapsed:.1f} s ({total / max(elapsed, 1e-9):,.0f} rows/s),"
        f" peak memory {dbutil.peak_rss_mb():.0f} MiB (max RSS)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Create MIMIC-shaped synthetic records (deterministic from --seed).",
        epilog=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--patients", type=int, default=1000, help="how many (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--db-url", default=None, help="database URL (default: $SOURCE_DB_URL, else local mimic)"
    )
    parser.add_argument("--replace", action="store_true", help="empty the generated tables first")
    parser.add_argument(
        "--output-dir", type=Path, default=None, help="write <table>.csv files here instead"
    )
    parser.add_argument(
        "--insert-new",
        type=int,
        metavar="K",
        default=None,
        help="insert K new patients (one admission each) with fresh ids, then stop",
    )
    parser.add_argument(
        "--demo-dir",
        type=Path,
        default=None,
        help="learn from this MIMIC-III demo folder (default: $MIMIC_DEMO_DIR when it holds"
        " the demo, else the statistics shipped in test/utils/mimic_reference.json.gz)",
    )
    parser.add_argument(
        "--tables",
        default=",".join(GENERATED_TABLES),
        help="comma-separated tables to generate (default all; patients always)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)

    if not 1 <= args.patients <= MAX_PATIENTS:
        parser.error(f"--patients must be between 1 and {MAX_PATIENTS:,}")
    if args.insert_new is not None and args.insert_new < 1:
        parser.error("--insert-new needs a positive count")
    if args.insert_new is not None and args.output_dir:
        parser.error("--insert-new writes to a database, not to --output-dir")

    url = dbutil.source_db_url(args.db_url)
    started = time.perf_counter()
    try:
        if (
            args.insert_new is None
            and not args.replace
            and not args.output_dir
            and holds_synthetic_rows(url)
        ):
            # The seed's use against a running stack: add patients, never fail.
            print(
                "the database already holds synthetic rows: inserting"
                f" {args.patients:,} new patients with fresh ids (as --insert-new)"
            )
            args.insert_new = args.patients
        if args.insert_new is not None:
            inserted = insert_new(url, args.insert_new, args.seed, demo_dir=args.demo_dir)
            subjects = [row[1] for row in inserted["patients"]]
            hadms = [row[2] for row in inserted["admissions"]]
            print(f"inserted subject_id {', '.join(map(str, subjects))}")
            print(f"inserted hadm_id {', '.join(map(str, hadms))}")
            _print_counts(
                {t: len(rows) for t, rows in inserted.items()}, dbutil.redact(url), started
            )
        elif args.output_dir:
            print(f"writing {args.patients:,} patients (seed {args.seed}) to {args.output_dir}")
            counts = write_csv_folder(
                args.output_dir,
                args.patients,
                args.seed,
                demo_dir=args.demo_dir,
                quiet=args.quiet,
            )
            _print_counts(counts, str(args.output_dir), started)
        else:
            print(f"creating {args.patients:,} patients (seed {args.seed}) in {dbutil.redact(url)}")
            counts = create_in_database(
                url,
                args.patients,
                args.seed,
                replace=args.replace,
                demo_dir=args.demo_dir,
                quiet=args.quiet,
                tables=tuple(t.strip() for t in args.tables.split(",") if t.strip()),
            )
            _print_counts(counts, dbutil.redact(url), started)
    except (OSError, ValueError, psycopg.Error) as exc:
        hint = ""
        if isinstance(exc, psycopg.errors.UniqueViolation):
            hint = (
                "\nThese ids are already there (same --seed and --patients?):"
                " add --replace, or use --insert-new."
            )
        print(f"create_records_db: {str(exc).rstrip()}{hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
