"""The FHIR store on PostgreSQL: one table per resource type, the resource as
`jsonb`, the FHIR id as primary key (as Aidbox and Medplum keep FHIR), and the
batch state in three tables of the same database.

    store = PostgresStore("postgresql://postgres:postgres@127.0.0.1:5432/fhirstore")

Why it looks like this:
- Every call is one transaction: a `load` writes the resources and counts them
  for their batch together, so a crash in between leaves neither, and the
  replay that follows counts exactly once (docs/architecture.md, Guarantees).
- `load` reads the stored (batch, hash) of its ids first, locking the rows
  that exist (`FOR UPDATE`, in id order so that two loaders never deadlock),
  then upserts the rest in one `INSERT ... SELECT FROM unnest(...) ON CONFLICT`
  statement per resource type. An id that did not exist when read but that a
  concurrent loader inserted meanwhile makes the call start again (its row is
  then locked and judged), so created/updated/replayed stay exact.
- Counters are added in SQL (`x = x + n`), never read and written back; the
  statement that changes a counter also sets its row's `progressed_at` (now()),
  so that a resource that stops moving shows (river.batches, `stall`).
- Tables are made on first use (`CREATE TABLE IF NOT EXISTS`, under an advisory
  lock, because two processes creating one table can still collide on pg_type).
- Connections come from a small pool of our own (a few lines; no extra
  dependency): the API runs threads, the services one loop each. A pool is
  never shared across `fork` (gunicorn): a child drops its parent's idle ones.
- A connection failure raises `StoreUnavailable`, one sentence without the
  password: the services wait and retry, every operation being idempotent.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg import errors as pgerrors
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.types.json import set_json_loads

from adapters.store import (
    FhirStore,
    InstanceError,
    Loaded,
    ResourceRefused,
    StoreUnavailable,
)
from adapters.store.common import (
    Stored,
    check_resource_type,
    decode_key,
    encode_key,
    failed_counts,
    is_resource_type,
    keys_of,
    plan_load,
    where,
)
from river.batches import BatchState, ResourceProgress
from river.secrets import mask_url_password

T = TypeVar("T")

COUNTERS = ("transformed", "created", "updated", "deleted", "failed")
_SETTABLE = ("expected", "extracted", "error")
_RETRIES = 5  # deadlocks, serialization failures, races on new ids
_DDL_LOCK = 7_207_707_301  # pg_advisory_xact_lock key of the store's DDL

SCHEMA = """
CREATE TABLE IF NOT EXISTS river_batch (
    batch_id text PRIMARY KEY,
    resource_ids jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    canceled_at timestamptz,
    retry_of text,
    live boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS river_batch_newest ON river_batch (created_at DESC, batch_id DESC);
CREATE TABLE IF NOT EXISTS river_batch_resource (
    batch_id text NOT NULL,
    resource_id text NOT NULL,
    expected bigint,
    extracted bigint NOT NULL DEFAULT 0,
    transformed bigint NOT NULL DEFAULT 0,
    created bigint NOT NULL DEFAULT 0,
    updated bigint NOT NULL DEFAULT 0,
    deleted bigint NOT NULL DEFAULT 0,
    failed bigint NOT NULL DEFAULT 0,
    error text,
    progressed_at timestamptz,          -- when a counter above last changed
    PRIMARY KEY (batch_id, resource_id)
);
-- A store made before progressed_at existed gains it (NULL: the batch's updated_at stands
-- in); checked first so that no lock is taken on the table when it is there.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = 'river_batch_resource'
           AND column_name = 'progressed_at'
    ) THEN
        ALTER TABLE river_batch_resource ADD COLUMN progressed_at timestamptz;
    END IF;
END
$$;
-- A deleted resource's tombstone: the reading time of the version that deleted it, so
-- that an older reading arriving later (a batch's, behind a live deletion) stays out.
CREATE TABLE IF NOT EXISTS river_tombstone (
    resource_type text NOT NULL,
    id text NOT NULL,
    read_at double precision NOT NULL,
    PRIMARY KEY (resource_type, id)
);
-- With a FHIR server as the target: each resource's last write there (fhir_server.py).
CREATE TABLE IF NOT EXISTS river_written (
    resource_type text NOT NULL,
    id text NOT NULL,
    batch_id text,                      -- NULL: a deletion
    content_hash text,
    read_at double precision,
    PRIMARY KEY (resource_type, id)
);
CREATE TABLE IF NOT EXISTS river_batch_error (
    batch_id text NOT NULL,
    resource_id text NOT NULL,          -- '' when the error names no resource
    primary_key_value text NOT NULL,    -- JSON text: keeps 1 and "1" apart; 'null' if none
    stage text NOT NULL,
    message text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (batch_id, resource_id, primary_key_value, stage)
);
"""

RESOURCE_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    id text PRIMARY KEY,
    resource jsonb NOT NULL,
    batch_id text,
    content_hash text,
    last_updated timestamptz NOT NULL DEFAULT now(),
    source_read_at double precision     -- when the source was read (ExtractEvent.read_at)
);
-- A table made before source_read_at existed gains it (NULL: never superseded).
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = {table_name}
           AND column_name = 'source_read_at'
    ) THEN
        ALTER TABLE {table} ADD COLUMN source_read_at double precision;
    END IF;
END
$$;
CREATE INDEX IF NOT EXISTS {tag_index} ON {table}
    USING gin ((resource->'meta'->'tag') jsonb_path_ops);
CREATE INDEX IF NOT EXISTS {identifier_index} ON {table}
    USING gin ((resource->'identifier') jsonb_path_ops);
"""

_STORED = """
SELECT id, batch_id, content_hash, source_read_at FROM {table}
 WHERE id = ANY(%b::text[]) ORDER BY id FOR UPDATE
"""
_TOMBSTONES = """
SELECT id, read_at FROM river_tombstone WHERE resource_type = %s AND id = ANY(%b::text[])
"""
_UPSERT = """
INSERT INTO {table} AS t (id, resource, batch_id, content_hash, last_updated, source_read_at)
SELECT u.id, u.resource::jsonb, %s, u.hash, now(), u.read_at
  FROM unnest(%b::text[], %b::text[], %b::text[], %b::float8[]) AS u(id, resource, hash, read_at)
 ORDER BY u.id
ON CONFLICT (id) DO UPDATE SET
    resource = EXCLUDED.resource,
    batch_id = EXCLUDED.batch_id,
    content_hash = EXCLUDED.content_hash,
    last_updated = EXCLUDED.last_updated,
    source_read_at = EXCLUDED.source_read_at
RETURNING id, (xmax = 0) AS inserted
"""
# Rows read after `read_at` stay (a newer reading made them again); NULL: no version known.
_DELETE = """
DELETE FROM {table}
 WHERE id = ANY(%b::text[])
   AND (%s::float8 IS NULL OR source_read_at IS NULL OR source_read_at <= %s::float8)
"""
_BURY = """
INSERT INTO river_tombstone (resource_type, id, read_at)
SELECT %s, u.id, %s FROM unnest(%b::text[]) AS u(id) ORDER BY u.id
ON CONFLICT (resource_type, id) DO UPDATE
    SET read_at = greatest(river_tombstone.read_at, EXCLUDED.read_at)
"""
_WRITTEN = """
SELECT w.resource_type, w.id, w.batch_id, w.content_hash, w.read_at
  FROM river_written AS w
  JOIN unnest(%b::text[], %b::text[]) AS k(resource_type, id) USING (resource_type, id)
"""
_REMEMBER = """
INSERT INTO river_written AS w (resource_type, id, batch_id, content_hash, read_at)
SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::float8[])
 ORDER BY 1, 2
ON CONFLICT (resource_type, id) DO UPDATE SET
    batch_id = EXCLUDED.batch_id,
    content_hash = EXCLUDED.content_hash,
    read_at = EXCLUDED.read_at
"""
# `moved`: some increment of the row is not 0, so its counters change: progressed_at too.
_BUMP = """
INSERT INTO river_batch_resource AS r
    (batch_id, resource_id, transformed, created, updated, deleted, failed, progressed_at)
SELECT %s, u.resource_id, u.transformed, u.created, u.updated, u.deleted, u.failed,
       CASE WHEN u.moved THEN now() END
  FROM unnest(%b::text[], %b::bigint[], %b::bigint[], %b::bigint[], %b::bigint[], %b::bigint[],
              %b::boolean[])
       AS u(resource_id, transformed, created, updated, deleted, failed, moved)
 ORDER BY u.resource_id
ON CONFLICT (batch_id, resource_id) DO UPDATE SET
    transformed = r.transformed + EXCLUDED.transformed,
    created = r.created + EXCLUDED.created,
    updated = r.updated + EXCLUDED.updated,
    deleted = r.deleted + EXCLUDED.deleted,
    failed = r.failed + EXCLUDED.failed,
    progressed_at = coalesce(EXCLUDED.progressed_at, r.progressed_at)
"""
_TOUCH = "UPDATE river_batch SET updated_at = now() WHERE batch_id = %s"
_BATCH_COLUMNS = "batch_id, resource_ids, created_at, updated_at, canceled_at, retry_of, live"
_RESOURCE_COLUMNS = (
    "batch_id, resource_id, expected, extracted, transformed, created, updated, deleted, "
    "failed, error, progressed_at"
)


def _refused(
    error: pgerrors.DataError, items: Sequence[tuple[str, dict[str, Any]]]
) -> ResourceRefused:
    """One sentence naming the resource (when there is one) and what PostgreSQL said,
    without the statement's parameters it would quote (the resource's content)."""
    what = (
        f"{items[0][1].get('resourceType')}/{items[0][1].get('id')}"
        if len(items) == 1
        else f"one of {len(items)} resources"
    )
    reason = error.diag.message_primary or type(error).__name__
    detail = error.diag.message_detail
    # A detail that quotes something quotes the resource's content (`Token "..." is
    # invalid`); `\u0000 cannot be converted to text` quotes nothing. CONTEXT, which
    # quotes the JSON itself, is never shown.
    if detail and '"' not in detail and "'" not in detail:
        reason += f" ({detail.rstrip('.')})"
    return ResourceRefused(f"the PostgreSQL FHIR store refused {what}: {reason}")


# What passes: the server unreachable or restarting, a recovering server, a lock or
# statement timeout (OperationalError: SQLSTATE classes 08, 53, 55, 57), and a store
# that is read-only for now (25006: a failover to a replica, a disk-full guard).
_TRANSIENT = (psycopg.OperationalError, pgerrors.ReadOnlySqlTransaction)


class _Raced(Exception):
    """An id absent when read was inserted by a concurrent transaction: start again."""


class PostgresStore(FhirStore):
    def __init__(
        self, url: str, pool_size: int = 4, connect_timeout: float = 5, wait_timeout: float = 30
    ) -> None:
        # A SQLAlchemy-style URL (postgresql+psycopg://) names the same server for libpq.
        self.url = re.sub(r"^postgres(?:ql)?\+\w+://", "postgresql://", url)
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.wait_timeout = wait_timeout
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._pid = os.getpid()
        self._closed = False
        self._schema_ready = False
        self._tables: set[str] = set()

    # --- connections ------------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            self.url,
            autocommit=True,  # transactions are explicit: `with conn.transaction()`
            connect_timeout=max(1, round(self.connect_timeout)),
            application_name="fhir-river",
        )
        set_json_loads(orjson.loads, conn)
        return conn

    def _take(self) -> tuple[psycopg.Connection[Any], bool]:
        """An idle connection (reused=True) or a new one."""
        with self._lock:
            if os.getpid() != self._pid:  # a forked child: the parent's sockets are not ours
                self._idle = []
                self._pid = os.getpid()
            conn = self._idle.pop() if self._idle else None
        if conn is not None and not conn.closed:
            return conn, True
        return self._connect(), False

    def _give(self, conn: psycopg.Connection[Any]) -> None:
        if not conn.closed and not conn.broken:
            if conn.info.transaction_status != TransactionStatus.IDLE:
                try:
                    conn.rollback()
                except psycopg.Error:
                    conn.close()
            with self._lock:
                if not self._closed and not conn.closed and os.getpid() == self._pid:
                    self._idle.append(conn)
                    return
        conn.close()

    def _unavailable(self, error: Exception) -> StoreUnavailable:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        message = f"The PostgreSQL FHIR store at {where(self.url)} cannot be reached: {reason}"
        return StoreUnavailable(mask_url_password(message, self.url))

    def _run(self, work: Callable[[psycopg.Connection[Any]], T], transaction: bool = True) -> T:
        """`work(conn)` in one transaction, started again after a deadlock, a
        serialization failure or a race on new ids; StoreUnavailable when the
        server cannot be reached (a stale pooled connection is replaced once)."""
        if self._closed:
            raise StoreUnavailable("The PostgreSQL FHIR store was closed.")
        if not self._slots.acquire(timeout=self.wait_timeout):
            raise StoreUnavailable(
                f"All {self.pool_size} connections to the PostgreSQL FHIR store at "
                f"{where(self.url)} stayed busy for {self.wait_timeout:.0f} s."
            )
        try:
            attempt = 0
            while True:
                attempt += 1
                conn = None
                reused = False
                try:
                    conn, reused = self._take()
                    if not self._schema_ready:
                        self._create_schema(conn)
                    if not transaction:
                        return work(conn)
                    with conn.transaction():
                        return work(conn)
                except (pgerrors.DeadlockDetected, pgerrors.SerializationFailure, _Raced):
                    if attempt >= _RETRIES:
                        raise
                    time.sleep(random.uniform(0, 0.02 * attempt))  # let the other one finish
                except (*_TRANSIENT, psycopg.InterfaceError) as error:
                    # A pooled connection that the server dropped (restart, idle timeout) is
                    # replaced once; every operation is idempotent, so running it again is safe.
                    if conn is not None and reused and conn.broken and attempt == 1:
                        continue
                    raise self._unavailable(error) from None
                finally:
                    if conn is not None:
                        self._give(conn)
        finally:
            self._slots.release()

    # --- schema -----------------------------------------------------------------------------
    def _create_schema(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
            conn.execute(SCHEMA)
        self._schema_ready = True

    @staticmethod
    def table_name(resource_type: str) -> str:
        return check_resource_type(resource_type).lower()

    def _ensure_tables(self, resource_types: Sequence[str]) -> None:
        missing = [t for t in resource_types if t not in self._tables]
        if not missing:
            return

        def create(conn: psycopg.Connection[Any]) -> None:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
            for resource_type in missing:
                table = self.table_name(resource_type)
                conn.execute(
                    sql.SQL(RESOURCE_TABLE).format(
                        table=sql.Identifier(table),
                        table_name=sql.Literal(table),
                        tag_index=sql.Identifier(f"{table}_meta_tag"),
                        identifier_index=sql.Identifier(f"{table}_identifier"),
                    )
                )

        for attempt in range(_RETRIES):
            try:
                self._run(create)
                break
            except pgerrors.UniqueViolation:
                # Another process without the lock (an older version, psql) made it first.
                if attempt == _RETRIES - 1:
                    raise
        self._tables.update(missing)

    # --- resources --------------------------------------------------------------------------
    def load(
        self,
        batch_id: str,
        items: Sequence[tuple[str, dict[str, Any]]],
        read_at: Sequence[float | None] | None = None,
    ) -> list[Loaded]:
        if not items:
            return []
        ids_by_type = keys_of(items)
        self._ensure_tables(list(ids_by_type))
        versioned = read_at is not None and any(r is not None for r in read_at)

        def work(conn: psycopg.Connection[Any]) -> list[Loaded]:
            stored: dict[tuple[str, str], Stored] = {}
            deleted: dict[tuple[str, str], float] = {}
            with conn.cursor() as cur:
                for resource_type, ids in ids_by_type.items():
                    table = sql.Identifier(self.table_name(resource_type))
                    cur.execute(sql.SQL(_STORED).format(table=table), (ids,))
                    for rid, batch, digest, read in cur:
                        stored[(resource_type, rid)] = (batch, digest, read)
                    absent = [rid for rid in ids if (resource_type, rid) not in stored]
                    if versioned and absent:
                        cur.execute(_TOMBSTONES, (resource_type, absent))
                        deleted.update(((resource_type, rid), at) for rid, at in cur)
                plan = plan_load(batch_id, items, stored, read_at, deleted)
                for resource_type, rows in plan.by_type().items():
                    table = sql.Identifier(self.table_name(resource_type))
                    cur.execute(
                        sql.SQL(_UPSERT).format(table=table),
                        (
                            batch_id,
                            [row[0] for row in rows],
                            [orjson.dumps(row[1]).decode() for row in rows],
                            [row[2] for row in rows],
                            [row[3] for row in rows],
                        ),
                    )
                    inserted = dict(cur.fetchall())
                    for rid, *_ in rows:
                        if (resource_type, rid) in plan.first_created and not inserted[rid]:
                            raise _Raced
                    revived = [rid for t, rid in plan.revived if t == resource_type]
                    if revived:
                        cur.execute(
                            "DELETE FROM river_tombstone"
                            " WHERE resource_type = %s AND id = ANY(%b::text[])",
                            (resource_type, revived),
                        )
                self._bump(cur, batch_id, plan.counters())
            return plan.loaded

        try:
            try:
                return self._run(work)
            except pgerrors.UndefinedTable:
                # A table dropped behind our back (a test, a reset): make it again, once.
                self._tables.clear()
                self._ensure_tables(list(ids_by_type))
                return self._run(work)
        except pgerrors.DataError as error:
            raise _refused(error, items) from None

    def delete(
        self,
        batch_id: str,
        resource_id: str,
        resource_type: str,
        ids: Sequence[str],
        read_at: float | None = None,
    ) -> int:
        if not ids:
            return 0
        table = sql.Identifier(self.table_name(resource_type))

        def work(conn: psycopg.Connection[Any]) -> int:
            with conn.cursor() as cur:
                if read_at is not None:
                    cur.execute(_BURY, (resource_type, read_at, list(ids)))
                cur.execute(sql.SQL(_DELETE).format(table=table), (list(ids), read_at, read_at))
                deleted = cur.rowcount
                if deleted:
                    self._bump(cur, batch_id, {resource_id: {"deleted": deleted}})
            return deleted

        try:
            return self._run(work)
        except pgerrors.UndefinedTable:
            return 0

    def read(self, resource_type: str, id: str) -> dict[str, Any] | None:
        if not is_resource_type(resource_type):
            return None
        query = sql.SQL("SELECT resource FROM {table} WHERE id = %s").format(
            table=sql.Identifier(self.table_name(resource_type))
        )
        try:
            row = self._run(lambda conn: conn.execute(query, (id,)).fetchone(), transaction=False)
        except pgerrors.UndefinedTable:
            return None
        return row[0] if row else None

    def search(
        self,
        resource_type: str,
        tag: tuple[str, str] | None = None,
        count: int = 50,
        offset: int = 0,
    ) -> tuple[int, list[dict[str, Any]]]:
        """`tag` is (system, code); an empty system matches the code in any system."""
        if not is_resource_type(resource_type):
            return 0, []
        table = sql.Identifier(self.table_name(resource_type))
        condition = sql.SQL("true")
        params: list[Any] = []
        if tag is not None:
            system, code = tag
            wanted = {"system": system, "code": code} if system else {"code": code}
            # The same expression as the GIN index (jsonb_path_ops), so the index serves it.
            condition = sql.SQL("resource->'meta'->'tag' @> %s::jsonb")
            params.append(orjson.dumps([wanted]).decode())

        def work(conn: psycopg.Connection[Any]) -> tuple[int, list[dict[str, Any]]]:
            total_query = sql.SQL("SELECT count(*) FROM {table} WHERE {condition}")
            total = conn.execute(total_query.format(table=table, condition=condition), params)
            (n,) = total.fetchone() or (0,)
            if count <= 0 or offset >= n:
                return n, []
            page_query = sql.SQL(
                "SELECT resource FROM {table} WHERE {condition} ORDER BY id LIMIT %s OFFSET %s"
            ).format(table=table, condition=condition)
            page = conn.execute(page_query, [*params, count, max(offset, 0)])
            return n, [row[0] for row in page]

        try:
            # One snapshot for the total and the page.
            return self._run(work)
        except pgerrors.UndefinedTable:
            return 0, []

    def record_audit(self, event: dict[str, Any]) -> None:
        self._ensure_tables([event["resourceType"]])
        query = sql.SQL("INSERT INTO {table} (id, resource) VALUES (%s, %s::jsonb)").format(
            table=sql.Identifier(self.table_name(event["resourceType"]))
        )
        self._run(lambda conn: conn.execute(query, (event["id"], orjson.dumps(event).decode())))

    # --- batches ----------------------------------------------------------------------------
    @staticmethod
    def _bump(cur: psycopg.Cursor[Any], batch_id: str, counters: dict[str, dict[str, int]]) -> None:
        """Add to the counters of (batch, resource id) rows, made if missing; touch the batch."""
        if not counters:
            return
        resource_ids = sorted(counters)
        columns = [[counters[r].get(name, 0) for r in resource_ids] for name in COUNTERS]
        moved = [any(counters[r].get(name, 0) for name in COUNTERS) for r in resource_ids]
        cur.execute(_BUMP, (batch_id, resource_ids, *columns, moved))
        cur.execute(_TOUCH, (batch_id,))

    def _set_progress(self, batch_id: str, resource_id: str, column: str, value: Any) -> None:
        """Set the value; progressed_at moves when it differs from the stored one."""
        assert column in _SETTABLE
        query = sql.SQL(
            "INSERT INTO river_batch_resource AS r (batch_id, resource_id, {column}, progressed_at)"
            " VALUES (%s, %s, %s, now())"
            " ON CONFLICT (batch_id, resource_id) DO UPDATE SET {column} = EXCLUDED.{column},"
            " progressed_at = CASE WHEN r.{column} IS DISTINCT FROM EXCLUDED.{column}"
            " THEN now() ELSE r.progressed_at END"
        ).format(column=sql.Identifier(column))

        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute(query, (batch_id, resource_id, value))
            conn.execute(_TOUCH, (batch_id,))

        self._run(work)

    def add_counts(self, batch_id: str, counters: dict[str, dict[str, int]]) -> None:
        def work(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor() as cur:
                self._bump(cur, batch_id, counters)

        self._run(work)

    def written(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Stored]:
        if not keys:
            return {}

        def work(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], Stored]:
            rows = conn.execute(_WRITTEN, ([k[0] for k in keys], [k[1] for k in keys])).fetchall()
            return {(row[0], row[1]): (row[2], row[3], row[4]) for row in rows}

        return self._run(work, transaction=False)

    def count_written(
        self,
        batch_id: str,
        counters: dict[str, dict[str, int]],
        writes: Sequence[tuple[tuple[str, str], Stored]],
    ) -> None:
        last = dict(writes)  # one row a key (its last write), for ON CONFLICT
        columns = (
            [key[0] for key in last],
            [key[1] for key in last],
            [value[0] for value in last.values()],
            [value[1] for value in last.values()],
            [value[2] for value in last.values()],
        )

        def work(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor() as cur:
                if last:
                    cur.execute(_REMEMBER, columns)
                if counters:
                    self._bump(cur, batch_id, counters)

        self._run(work)

    def add_extracted(self, batch_id: str, resource_id: str, n: int) -> None:
        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute(
                "INSERT INTO river_batch_resource AS r"
                " (batch_id, resource_id, expected, extracted, progressed_at)"
                " VALUES (%s, %s, %s, %s, CASE WHEN %s THEN now() END)"
                " ON CONFLICT (batch_id, resource_id) DO UPDATE SET"
                " expected = coalesce(r.expected, 0) + EXCLUDED.expected,"
                " extracted = r.extracted + EXCLUDED.extracted,"
                " progressed_at = coalesce(EXCLUDED.progressed_at, r.progressed_at)",
                (batch_id, resource_id, n, n, n != 0),
            )
            conn.execute(_TOUCH, (batch_id,))

        self._run(work)

    def create_batch(
        self,
        batch_id: str,
        resource_ids: Sequence[str],
        retry_of: str | None = None,
        live: bool = False,
    ) -> None:
        """Idempotent: creating a batch again changes nothing."""
        unique = list(dict.fromkeys(resource_ids))

        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute(
                "INSERT INTO river_batch (batch_id, resource_ids, created_at, updated_at, retry_of,"
                " live) VALUES (%s, %s::jsonb, now(), now(), %s, %s)"
                " ON CONFLICT (batch_id) DO NOTHING",
                (batch_id, orjson.dumps(unique).decode(), retry_of, live),
            )
            with conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO river_batch_resource (batch_id, resource_id)"
                    " SELECT %s, r FROM unnest(%b::text[]) AS r ORDER BY r ON CONFLICT DO NOTHING",
                    (batch_id, unique),
                )

        self._run(work)

    def record_errors(self, errors: Sequence[InstanceError]) -> int:
        """Errors without a batch are not kept (nothing would show them); an error
        without a resource is kept but counts for no resource."""
        rows = {}
        for e in errors:
            if e.batch_id is None:
                continue
            key = (e.batch_id, e.resource_id or "", encode_key(e.primary_key_value), e.stage)
            rows.setdefault(key, e.message)
        if not rows:
            return 0
        keys = sorted(rows)

        def work(conn: psycopg.Connection[Any]) -> int:
            with conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO river_batch_error"
                    " (batch_id, resource_id, primary_key_value, stage, message, at)"
                    " SELECT u.b, u.r, u.k, u.s, u.m, now()"
                    "   FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[])"
                    "        AS u(b, r, k, s, m)"
                    " ON CONFLICT DO NOTHING RETURNING batch_id, resource_id",
                    (
                        [k[0] for k in keys],
                        [k[1] for k in keys],
                        [k[2] for k in keys],
                        [k[3] for k in keys],
                        [rows[k] for k in keys],
                    ),
                )
                new = cur.fetchall()
                by_batch: dict[str, dict[str, dict[str, int]]] = {}
                for (batch_id, resource_id), n in failed_counts(new).items():
                    by_batch.setdefault(batch_id, {})[resource_id] = {"failed": n}
                for batch_id in sorted(by_batch):
                    self._bump(cur, batch_id, by_batch[batch_id])
            return len(new)

        return self._run(work)

    def cancel_batch(self, batch_id: str) -> bool:
        def work(conn: psycopg.Connection[Any]) -> bool:
            row = conn.execute(
                "UPDATE river_batch SET canceled_at = coalesce(canceled_at, now()),"
                " updated_at = CASE WHEN canceled_at IS NULL THEN now() ELSE updated_at END"
                " WHERE batch_id = %s RETURNING batch_id",
                (batch_id,),
            ).fetchone()
            return row is not None

        return self._run(work)

    @staticmethod
    def _state(row: tuple[Any, ...], resources: list[tuple[Any, ...]]) -> BatchState:
        batch_id, resource_ids, created_at, updated_at, canceled_at, retry_of, live = row
        state = BatchState(
            batch_id=batch_id,
            resource_ids=list(resource_ids),
            created_at=created_at,
            updated_at=updated_at,
            canceled_at=canceled_at,
            retry_of=retry_of,
            live=live,
        )
        for r in resources:
            state.resources[r[1]] = ResourceProgress(r[1], *r[2:])
        return state

    def batch(self, batch_id: str) -> BatchState | None:
        def work(conn: psycopg.Connection[Any]) -> BatchState | None:
            row = conn.execute(
                f"SELECT {_BATCH_COLUMNS} FROM river_batch WHERE batch_id = %s", (batch_id,)
            ).fetchone()
            if row is None:
                return None
            resources = conn.execute(
                f"SELECT {_RESOURCE_COLUMNS} FROM river_batch_resource WHERE batch_id = %s",
                (batch_id,),
            ).fetchall()
            return self._state(row, resources)

        return self._run(work)

    def batches(
        self, limit: int = 50, offset: int = 0, live: bool | None = None
    ) -> list[BatchState]:
        def work(conn: psycopg.Connection[Any]) -> list[BatchState]:
            rows = conn.execute(
                f"SELECT {_BATCH_COLUMNS} FROM river_batch"
                " WHERE (%s::boolean IS NULL OR live = %s::boolean)"
                " ORDER BY created_at DESC, batch_id DESC LIMIT %s OFFSET %s",
                (live, live, max(limit, 0), max(offset, 0)),
            ).fetchall()
            resources: dict[str, list[tuple[Any, ...]]] = {row[0]: [] for row in rows}
            if rows:
                for r in conn.execute(
                    f"SELECT {_RESOURCE_COLUMNS} FROM river_batch_resource"
                    " WHERE batch_id = ANY(%b::text[])",
                    (list(resources),),
                ):
                    resources[r[0]].append(r)
            return [self._state(row, resources[row[0]]) for row in rows]

        return self._run(work)

    def errors(
        self,
        batch_id: str,
        limit: int = 100,
        offset: int = 0,
        resource_id: str | None = None,
        stage: str | None = None,
    ) -> tuple[int, list[InstanceError]]:
        where = (
            " WHERE batch_id = %s AND (%s::text IS NULL OR resource_id = %s::text)"
            " AND (%s::text IS NULL OR stage = %s::text)"
        )
        chosen = (batch_id, resource_id, resource_id, stage, stage)

        def work(conn: psycopg.Connection[Any]) -> tuple[int, list[InstanceError]]:
            (total,) = conn.execute(
                "SELECT count(*) FROM river_batch_error" + where, chosen
            ).fetchone() or (0,)
            rows = conn.execute(
                "SELECT resource_id, primary_key_value, stage, message FROM river_batch_error"
                + where
                + " ORDER BY at, resource_id, primary_key_value, stage LIMIT %s OFFSET %s",
                (*chosen, max(limit, 0), max(offset, 0)),
            ).fetchall()
            return total, [
                InstanceError(batch_id, r or None, decode_key(k), stage, message)
                for r, k, stage, message in rows
            ]

        return self._run(work)

    def failed_instances(self, batch_id: str) -> dict[str, list[Any]]:
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT resource_id, primary_key_value FROM river_batch_error"
                " WHERE batch_id = %s AND resource_id <> '' AND primary_key_value <> 'null'"
                " GROUP BY resource_id, primary_key_value"
                " ORDER BY resource_id, min(at), primary_key_value",
                (batch_id,),
            ).fetchall(),
            transaction=False,
        )
        out: dict[str, list[Any]] = {}
        for resource_id, key in rows:
            out.setdefault(resource_id, []).append(decode_key(key))
        return out

    # --- life -------------------------------------------------------------------------------
    def ping(self) -> None:
        self._run(lambda conn: conn.execute("SELECT 1").fetchone(), transaction=False)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
