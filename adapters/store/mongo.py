"""The FHIR store on MongoDB (the seed's store, the default of the Compose file):
one collection per resource type, `_id` = the FHIR id, bulk upserts in chunks.

    store = MongoStore("mongodb://127.0.0.1:27017/fhirstore", bulk_size=500)

A stored document is the resource plus `_id` and one field of ours, `_river`:
`batch` and `hash` (who wrote it and its `content_hash`, to tell a replay
from an update), `read` (when its version was read from the source: an older
reading never overwrites it; deleted resources keep it in `river_tombstone`)
and `tags` ("system|code" of each `meta.tag`: an exact `_tag` search without
`$elemMatch`, a multikey index on MongoDB); all are stripped
on read. New ids are inserted (`insert_many`), known ones replaced
(`ReplaceOne(upsert=True)`), in chunks of `bulk_size`. Batch state is one
document per batch in `river_batch` (`_id` = batch id, counters under
`resources.<resource id>`); errors are documents of `river_batch_error` under
a unique index on (batch, resource, primary key, stage). The update that
changes a resource's counter also sets its `progressed_at` (river.batches,
`stall`): one `update_one` of the batch document, atomic on its own.

It is written to what FerretDB answers correctly (docs/operations.md), which the tests
run it on, so that it also runs on real MongoDB: documents keyed and found by
`_id`; `insert_many(ordered=False)`, bulk `ReplaceOne(upsert=True)`, `$inc`,
`$set`, `$in`, `$exists`, `count_documents`, sort/skip/limit; no transactions,
no `$elemMatch` (hence `_river.tags`), no `$lookup`/`$facet`/`$push`/
`$addToSet`, no `$group` after `$unwind`, no dotted `$project`. Keep
`bulk_size` at 40 on FerretDB: larger update commands deadlock it. FerretDB
1.24.2 on SQLite scans the collection for every lookup, even by `_id` (its
query is `_ferretdb_sjson->'$._id'`, its index `_ferretdb_sjson->"_id"`), for
every replace and every count: small data only (about 550 new resources/s,
14 updates/s at 1,000 documents on this machine).

What differs from the PostgreSQL store, all for want of transactions:
- A load writes the resources, then counts them. A process killed between
  the two leaves resources written but not counted; the replay that follows
  sees them as its own (same batch, same hash) and counts nothing, so the
  batch's created/updated/transformed miss those instances and it may never
  reach `completed`. The same holds for errors and `failed`. Exact counts
  under crashes need the PostgreSQL store.
- Two loaders inserting one new id at once: the second insert fails on the
  `_id` index and its item is judged against what the first wrote, so the
  count stays exact; but two replaces of one existing id at once are each
  judged on what was read before (PostgreSQL locks the rows it reads); so
  are their reading times: a batch's older version may overwrite a live
  change's newer one that a concurrent loader wrote in between.
- Timestamps keep milliseconds (BSON), not microseconds; batches created in
  the same millisecond keep their order through `created_ns`.
Same as PostgreSQL: a `_tag` search with an empty system matches the code in
any system; with a system, that exact pair.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pymongo
from pymongo import ReplaceOne, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DocumentTooLarge,
    DuplicateKeyError,
    InvalidDocument,
)

from adapters.store import (
    FhirStore,
    InstanceError,
    Loaded,
    ResourceRefused,
    StoreUnavailable,
)
from adapters.store.common import (
    LoadPlan,
    Row,
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

BATCHES, ERRORS = "river_batch", "river_batch_error"
OURS = "_river"
# Deleted resources' tombstones, `_id` "<type>/<id>", `read_at` (common.py, superseded).
TOMBSTONES = "river_tombstone"
# With a FHIR server as the target: each resource's last write there (fhir_server.py).
WRITTEN = "river_written"
COUNTERS = ("transformed", "created", "updated", "deleted", "failed")
PROGRESSED = "progressed_at"
# What a missing field of `resources.<id>` stands for (a missing expected or error is
# null, which `$ne` already treats so).
_UNSET = {"extracted": 0}
_DUPLICATE_KEY = 11000
# Ids per `$in` read. Reads are not what deadlocks FerretDB (update commands are), and it
# answers an `$in` by scanning the collection whatever the number of ids: one scan per call.
READ_CHUNK = 1000


def field_key(resource_id: str) -> str:
    """A resource id as a field name: no '.' (a path separator) nor leading '$'."""
    return resource_id.replace("%", "%25").replace(".", "%2E").replace("$", "%24") or "%"


def resource_id_of(key: str) -> str:
    return "" if key == "%" else key.replace("%24", "$").replace("%2E", ".").replace("%25", "%")


def _stored(document: dict[str, Any]) -> Stored:
    ours = document.get(OURS) or {}
    return (ours.get("batch"), ours.get("hash"), ours.get("read"))


def _chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class MongoStore(FhirStore):
    def __init__(self, url: str, bulk_size: int = 500, timeout_ms: int = 5000) -> None:
        if bulk_size < 1:
            raise ValueError("bulk_size must be 1 or more")
        self.url = url
        self.bulk_size = bulk_size
        self.timeout_ms = timeout_ms
        self._client: pymongo.MongoClient[dict[str, Any]] | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._indexed: set[str] = set()

    # --- connection -------------------------------------------------------------------------
    @property
    def db(self) -> Database[dict[str, Any]]:
        """The database of the URL (default `fhirstore`), from a client made on first
        use in this process: a client must not cross a fork (gunicorn)."""
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                options: dict[str, Any] = {"tz_aware": True, "appname": "fhir-river"}
                lowered = self.url.lower()
                for option in ("serverSelectionTimeoutMS", "connectTimeoutMS"):
                    if option.lower() not in lowered:
                        options[option] = self.timeout_ms
                self._client = pymongo.MongoClient(self.url, **options)
                self._pid = os.getpid()
                self._indexed = set()
            client = self._client
        database = client.get_default_database(default="fhirstore")
        self._first_use(database)
        return database

    def _first_use(self, database: Database[dict[str, Any]]) -> None:
        if BATCHES in self._indexed:
            return
        database[ERRORS].create_index(
            [("batch_id", 1), ("resource_id", 1), ("primary_key_value", 1), ("stage", 1)],
            unique=True,
            name="river_error_key",
        )
        database[BATCHES].create_index([("created_ns", -1)], name="river_batch_newest")
        self._indexed.add(BATCHES)

    def _collection(self, resource_type: str) -> Collection[dict[str, Any]]:
        check_resource_type(resource_type)
        collection = self.db[resource_type]
        if resource_type not in self._indexed:
            collection.create_index(f"{OURS}.tags", name="river_tags")
            self._indexed.add(resource_type)
        return collection

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Connection failures as StoreUnavailable: one sentence, no password."""
        try:
            yield
        except ConnectionFailure as error:
            reason = str(error).split(", Timeout:", 1)[0].split(" (configured timeouts", 1)[0]
            message = f"The MongoDB FHIR store at {where(self.url)} cannot be reached: {reason}"
            raise StoreUnavailable(mask_url_password(message, self.url)) from None

    # --- resources --------------------------------------------------------------------------
    def _tombstones(self, resource_type: str, ids: Sequence[str]) -> dict[tuple[str, str], float]:
        found = {}
        for chunk in _chunks(list(ids), READ_CHUNK):
            names = [f"{resource_type}/{rid}" for rid in chunk]
            for doc in self.db[TOMBSTONES].find({"_id": {"$in": names}}):
                found[(resource_type, doc["_id"].split("/", 1)[1])] = doc["read_at"]
        return found

    def _bury(self, resource_type: str, ids: Sequence[str], read_at: float) -> None:
        """Tombstones of deleted resources (adapters/store/common.py, superseded)."""
        self.db[TOMBSTONES].bulk_write(
            [
                UpdateOne(
                    {"_id": f"{resource_type}/{rid}"}, {"$max": {"read_at": read_at}}, upsert=True
                )
                for rid in ids
            ],
            ordered=False,
        )

    @staticmethod
    def _document(
        resource: dict[str, Any], batch_id: str, digest: str, read_at: float | None = None
    ) -> dict[str, Any]:
        meta = resource.get("meta")
        tags = meta.get("tag") if isinstance(meta, dict) else None
        pairs = [
            f"{tag.get('system') or ''}|{tag.get('code') or ''}"
            for tag in tags or []
            if isinstance(tag, dict)
        ]
        return {
            "_id": resource["id"],
            **resource,
            OURS: {"batch": batch_id, "hash": digest, "tags": pairs, "read": read_at},
        }

    @staticmethod
    def _resource(document: dict[str, Any]) -> dict[str, Any]:
        document.pop("_id", None)
        document.pop(OURS, None)
        return document

    def load(
        self,
        batch_id: str,
        items: Sequence[tuple[str, dict[str, Any]]],
        read_at: Sequence[float | None] | None = None,
    ) -> list[Loaded]:
        if not items:
            return []
        ids_by_type = keys_of(items)
        versioned = read_at is not None and any(r is not None for r in read_at)
        with self._guard():
            stored: dict[tuple[str, str], Stored] = {}
            deleted: dict[tuple[str, str], float] = {}
            for resource_type, ids in ids_by_type.items():
                collection = self._collection(resource_type)
                for chunk in _chunks(ids, max(self.bulk_size, READ_CHUNK)):
                    for doc in collection.find({"_id": {"$in": list(chunk)}}, {OURS: 1}):
                        stored[(resource_type, doc["_id"])] = _stored(doc)
                absent = [rid for rid in ids if (resource_type, rid) not in stored]
                if versioned and absent:
                    deleted.update(self._tombstones(resource_type, absent))
            plan = plan_load(batch_id, items, stored, read_at, deleted)
            try:
                for resource_type, rows in plan.by_type().items():
                    collection = self._collection(resource_type)
                    self._write(collection, batch_id, resource_type, rows, plan)
            except (BulkWriteError, InvalidDocument, DocumentTooLarge) as error:
                raise _refused(error, items) from None
            if plan.revived:
                self.db[TOMBSTONES].delete_many(
                    {"_id": {"$in": [f"{t}/{rid}" for t, rid in sorted(plan.revived)]}}
                )
            # Not atomic with the writes above: see the module's docstring.
            self._bump(batch_id, plan.counters())
        return plan.loaded

    def _write(
        self,
        collection: Collection[dict[str, Any]],
        batch_id: str,
        resource_type: str,
        rows: Sequence[Row],
        plan: LoadPlan,
    ) -> None:
        new = [row for row in rows if (resource_type, row[0]) in plan.first_created]
        known = [row for row in rows if (resource_type, row[0]) not in plan.first_created]
        taken = self._insert(collection, batch_id, new)
        if taken:
            # Inserted meanwhile by a concurrent loader: judged against what it wrote.
            ids = [row[0] for row in taken]
            for doc in collection.find({"_id": {"$in": ids}}, {OURS: 1}):
                if not plan.rejudge((resource_type, doc["_id"]), _stored(doc)):
                    taken = [row for row in taken if row[0] != doc["_id"]]
        self._replace(collection, batch_id, [*known, *taken])

    def _insert(
        self,
        collection: Collection[dict[str, Any]],
        batch_id: str,
        rows: Sequence[Row],
    ) -> list[Row]:
        """Insert what no document held when read: an insert needs nothing but the `_id`
        index (an upsert, on FerretDB, scans the collection first). Returns the rows whose
        id a concurrent loader inserted meanwhile (not written here)."""
        taken = []
        for chunk in _chunks(rows, self.bulk_size):
            try:
                collection.insert_many(
                    [
                        self._document(resource, batch_id, digest, read)
                        for _, resource, digest, read in chunk
                    ],
                    ordered=False,
                )
            except BulkWriteError as error:
                write_errors = error.details.get("writeErrors", [])
                if any(w.get("code") != _DUPLICATE_KEY for w in write_errors):
                    raise
                taken += [chunk[w["index"]] for w in write_errors]
        return taken

    def _replace(
        self,
        collection: Collection[dict[str, Any]],
        batch_id: str,
        rows: Sequence[Row],
    ) -> None:
        for chunk in _chunks(rows, self.bulk_size):
            collection.bulk_write(
                [
                    ReplaceOne(
                        {"_id": rid},
                        self._document(resource, batch_id, digest, read),
                        upsert=True,
                    )
                    for rid, resource, digest, read in chunk
                ],
                ordered=True,
            )

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
        with self._guard():
            collection = self._collection(resource_type)
            deleted = 0
            for chunk in _chunks(list(ids), self.bulk_size):
                if read_at is not None:
                    self._bury(resource_type, chunk, read_at)
                query: dict[str, Any] = {"_id": {"$in": list(chunk)}}
                if read_at is not None:  # a resource read after this deletion stays
                    query[f"{OURS}.read"] = {"$not": {"$gt": read_at}}
                deleted += collection.delete_many(query).deleted_count
            if deleted:
                self._bump(batch_id, {resource_id: {"deleted": deleted}})
        return deleted

    def read(self, resource_type: str, id: str) -> dict[str, Any] | None:
        if not is_resource_type(resource_type):
            return None
        with self._guard():
            document = self.db[resource_type].find_one({"_id": id})
        return self._resource(document) if document is not None else None

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
        query: dict[str, Any] = {}
        if tag is not None:
            system, code = tag
            query = {f"{OURS}.tags": f"{system}|{code}"} if system else {"meta.tag.code": code}
        with self._guard():
            collection = self.db[resource_type]
            total = collection.count_documents(query)
            if count <= 0 or offset >= total:
                return total, []
            cursor = collection.find(query).sort("_id", 1).skip(max(offset, 0)).limit(count)
            return total, [self._resource(document) for document in cursor]

    # --- batches ----------------------------------------------------------------------------
    def _bump(self, batch_id: str, counters: dict[str, dict[str, int]]) -> None:
        """$inc the counters of a batch's resources (the batch document is made if missing),
        and set the progressed_at of those whose counters change."""
        increments = {
            f"resources.{field_key(resource_id)}.{name}": n
            for resource_id, values in counters.items()
            for name, n in values.items()
            if n
        }
        if increments:
            now = _now()
            moved = {
                f"resources.{field_key(resource_id)}.{PROGRESSED}": now
                for resource_id, values in counters.items()
                if any(values.values())
            }
            self.db[BATCHES].update_one(
                {"_id": batch_id},
                {"$inc": increments, "$set": {"updated_at": now, **moved}},
                upsert=True,
            )

    def _set_progress(self, batch_id: str, resource_id: str, name: str, value: Any) -> None:
        """Set the value where it differs from the stored one, with progressed_at; the
        same value again changes nothing (as PostgreSQL's IS DISTINCT FROM)."""
        prefix = f"resources.{field_key(resource_id)}"
        now = _now()
        update = {
            "$set": {f"{prefix}.{name}": value, f"{prefix}.{PROGRESSED}": now, "updated_at": now}
        }
        differs: dict[str, Any] = {"$ne": value}
        if name in _UNSET and value == _UNSET[name]:
            differs = {"$exists": True, "$ne": value}
        where = {"_id": batch_id, f"{prefix}.{name}": differs}
        with self._guard():
            batches = self.db[BATCHES]
            try:
                batches.update_one(where, update, upsert=True)
            except DuplicateKeyError:
                # The batch exists and holds this value already (the filter matched nothing,
                # so the upsert tried a new document), or a concurrent writer made it just
                # now: set the value if it still differs.
                batches.update_one(where, update)

    def add_counts(self, batch_id: str, counters: dict[str, dict[str, int]]) -> None:
        with self._guard():
            self._bump(batch_id, counters)

    def written(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Stored]:
        found: dict[tuple[str, str], Stored] = {}
        with self._guard():
            for chunk in _chunks([f"{t}/{rid}" for t, rid in keys], READ_CHUNK):
                for doc in self.db[WRITTEN].find({"_id": {"$in": list(chunk)}}):
                    resource_type, rid = doc["_id"].split("/", 1)
                    found[resource_type, rid] = (doc["batch"], doc["hash"], doc["read"])
        return found

    def count_written(
        self,
        batch_id: str,
        counters: dict[str, dict[str, int]],
        writes: Sequence[tuple[tuple[str, str], Stored]],
    ) -> None:
        """Kept, then counted (no transactions): a crash between the two leaves those
        writes uncounted, as a `load` killed between its writes and its counts."""
        last = dict(writes)
        with self._guard():
            for chunk in _chunks(list(last.items()), self.bulk_size):
                self.db[WRITTEN].bulk_write(
                    [
                        ReplaceOne(
                            {"_id": f"{t}/{rid}"},
                            {"batch": value[0], "hash": value[1], "read": value[2]},
                            upsert=True,
                        )
                        for (t, rid), value in chunk
                    ],
                    ordered=False,
                )
            self._bump(batch_id, counters)

    def add_extracted(self, batch_id: str, resource_id: str, n: int) -> None:
        prefix = f"resources.{field_key(resource_id)}"
        now = _now()
        moved = {f"{prefix}.{PROGRESSED}": now} if n else {}
        with self._guard():
            self.db[BATCHES].update_one(
                {"_id": batch_id},
                {
                    "$inc": {f"{prefix}.expected": n, f"{prefix}.extracted": n},
                    "$set": {"updated_at": now, **moved},
                },
                upsert=True,
            )

    def create_batch(
        self,
        batch_id: str,
        resource_ids: Sequence[str],
        retry_of: str | None = None,
        live: bool = False,
    ) -> None:
        """Idempotent: creating a batch again changes nothing."""
        now = _now()
        fields = {
            "resource_ids": list(dict.fromkeys(resource_ids)),
            "created_at": now,
            "created_ns": time.time_ns(),
            "updated_at": now,
            "canceled_at": None,
            "retry_of": retry_of,
            "live": live,
        }
        with self._guard():
            batches = self.db[BATCHES]
            try:
                batches.insert_one({"_id": batch_id, **fields, "resources": {}})
            except DuplicateKeyError:
                # Counters written before the batch (a placeholder): complete it, keep them.
                batches.update_one(
                    {"_id": batch_id, "created_at": {"$exists": False}}, {"$set": fields}
                )

    def record_errors(self, errors: Sequence[InstanceError]) -> int:
        """Errors without a batch are not kept (nothing would show them); an error
        without a resource is kept but counts for no resource."""
        documents: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        now = _now()
        for e in errors:
            if e.batch_id is None:
                continue
            key = (e.batch_id, e.resource_id or "", encode_key(e.primary_key_value), e.stage)
            documents.setdefault(
                key,
                {
                    "batch_id": key[0],
                    "resource_id": key[1],
                    "primary_key_value": key[2],
                    "stage": key[3],
                    "message": e.message,
                    "at": now,
                },
            )
        new: list[tuple[str, str]] = []
        with self._guard():
            for chunk in _chunks(list(documents.values()), self.bulk_size):
                refused: set[int] = set()
                try:
                    self.db[ERRORS].insert_many(chunk, ordered=False)
                except BulkWriteError as error:
                    write_errors = error.details.get("writeErrors", [])
                    if any(w.get("code") != _DUPLICATE_KEY for w in write_errors):
                        raise
                    refused = {w["index"] for w in write_errors}
                new += [
                    (d["batch_id"], d["resource_id"])
                    for i, d in enumerate(chunk)
                    if i not in refused
                ]
            by_batch: dict[str, dict[str, dict[str, int]]] = {}
            for (batch_id, resource_id), n in failed_counts(new).items():
                by_batch.setdefault(batch_id, {})[resource_id] = {"failed": n}
            for batch_id, counters in by_batch.items():
                self._bump(batch_id, counters)
        return len(new)

    def cancel_batch(self, batch_id: str) -> bool:
        now = _now()
        exists = {"_id": batch_id, "created_at": {"$exists": True}}
        with self._guard():
            batches = self.db[BATCHES]
            result = batches.update_one(
                {**exists, "canceled_at": None},
                {"$set": {"canceled_at": now, "updated_at": now}},
            )
            if result.matched_count:
                return True
            return batches.find_one(exists, {"_id": 1}) is not None

    @staticmethod
    def _state(document: dict[str, Any]) -> BatchState:
        state = BatchState(
            batch_id=document["_id"],
            resource_ids=list(document.get("resource_ids") or []),
            created_at=document["created_at"],
            updated_at=document.get("updated_at") or document["created_at"],
            canceled_at=document.get("canceled_at"),
            retry_of=document.get("retry_of"),
            live=bool(document.get("live")),
        )
        for key, values in (document.get("resources") or {}).items():
            resource_id = resource_id_of(key)
            state.resources[resource_id] = ResourceProgress(
                resource_id,
                expected=values.get("expected"),
                extracted=values.get("extracted", 0),
                error=values.get("error"),
                progressed_at=values.get(PROGRESSED),
                **{name: values.get(name, 0) for name in COUNTERS},
            )
        return state

    def batch(self, batch_id: str) -> BatchState | None:
        with self._guard():
            document = self.db[BATCHES].find_one({"_id": batch_id})
        if document is None or "created_at" not in document:
            return None  # unknown, or counters written before the batch was created
        return self._state(document)

    def batches(
        self, limit: int = 50, offset: int = 0, live: bool | None = None
    ) -> list[BatchState]:
        if limit <= 0:
            return []
        query: dict[str, Any] = {"created_at": {"$exists": True}}
        if live is not None:
            query["live"] = True if live else {"$ne": True}
        with self._guard():
            cursor = (
                self.db[BATCHES]
                .find(query)
                .sort([("created_ns", -1), ("_id", -1)])
                .skip(max(offset, 0))
                .limit(limit)
            )
            return [self._state(document) for document in cursor]

    def errors(
        self,
        batch_id: str,
        limit: int = 100,
        offset: int = 0,
        resource_id: str | None = None,
        stage: str | None = None,
    ) -> tuple[int, list[InstanceError]]:
        query: dict[str, Any] = {"batch_id": batch_id}
        if resource_id is not None:
            query["resource_id"] = resource_id
        if stage is not None:
            query["stage"] = stage
        with self._guard():
            collection = self.db[ERRORS]
            total = collection.count_documents(query)
            if limit <= 0 or offset >= total:
                return total, []
            cursor = (
                collection.find(query)
                .sort([("at", 1), ("resource_id", 1), ("primary_key_value", 1), ("stage", 1)])
                .skip(max(offset, 0))
                .limit(limit)
            )
            return total, [
                InstanceError(
                    batch_id,
                    d["resource_id"] or None,
                    decode_key(d["primary_key_value"]),
                    d["stage"],
                    d["message"],
                )
                for d in cursor
            ]

    def failed_instances(self, batch_id: str) -> dict[str, list[Any]]:
        with self._guard():
            cursor = (
                self.db[ERRORS]
                .find({"batch_id": batch_id}, {"resource_id": 1, "primary_key_value": 1})
                .sort([("at", 1), ("resource_id", 1), ("primary_key_value", 1)])
            )
            pairs = [(d["resource_id"], d["primary_key_value"]) for d in cursor]
        out: dict[str, dict[str, None]] = {}
        for resource_id, key in pairs:
            if resource_id and key != "null":
                out.setdefault(resource_id, {})[key] = None
        return {r: [decode_key(k) for k in keys] for r, keys in sorted(out.items())}

    # --- life -------------------------------------------------------------------------------
    def record_audit(self, event: dict[str, Any]) -> None:
        with self._guard():
            self._collection(event["resourceType"]).insert_one(self._document(event, "", ""))

    def ping(self) -> None:
        with self._guard():
            self.db.command("ping")

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _refused(
    error: BulkWriteError | InvalidDocument | DocumentTooLarge,
    items: Sequence[tuple[str, dict[str, Any]]],
) -> ResourceRefused:
    """One sentence naming the resource (when there is one) and why MongoDB refused it,
    without the document the driver's error quotes (the resource's content)."""
    what = (
        f"{items[0][1].get('resourceType')}/{items[0][1].get('id')}"
        if len(items) == 1
        else f"one of {len(items)} resources"
    )
    if isinstance(error, BulkWriteError):
        first = (error.details.get("writeErrors") or [{}])[0]
        reason = f"error code {first.get('code', '?')}"
        said = str(first.get("errmsg") or "").split("{", 1)[0].strip(" :")
        if said:
            reason = f"{said} ({reason})"
    elif isinstance(error, DocumentTooLarge):
        reason = "the document is too large"
    else:  # pymongo's message may quote a value it cannot encode
        reason = "the document cannot be encoded as BSON"
    return ResourceRefused(f"the MongoDB FHIR store refused {what}: {reason}")
