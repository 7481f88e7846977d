"""The FHIR store: resources and batch state, on PostgreSQL or MongoDB.

    store = open_store(settings.fhir_store_url)   # postgresql://... or mongodb://...

Services and the API speak only to `FhirStore`; which backend runs is the
URL's business (docs/architecture.md, The FHIR store). Every write is idempotent, so that a
replayed Kafka message changes nothing and counts nothing twice.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from river.batches import BatchState
from river.errors import RiverError
from river.events import ErrorEvent


class StoreUnavailable(RiverError):
    """The store cannot be reached now; the caller waits and retries."""


class ResourceRefused(RiverError):
    """The store refused what a resource holds (PostgreSQL's jsonb takes no \\u0000):
    the bulk write that held it fails whole; written alone, it fails alone."""


@dataclass(frozen=True, slots=True)
class Loaded:
    """What became of one resource handed to `FhirStore.load`."""

    resource_type: str
    id: str
    # created, updated, replayed (already loaded by this batch, same content) or
    # superseded (the store holds a version read from the source after this one)
    action: str


# An instance's error is one record everywhere: what a service makes, what the store
# keeps and what the `errors` topic carries are the same `ErrorEvent`.
InstanceError = ErrorEvent


# A key's last write (batch id, content hash, source read at): what a database store
# keeps beside a resource, and the record of the writes to a FHIR server. Read at is
# None for a resource written before versions were kept, or loaded without one.
Stored = tuple[str | None, str | None, float | None]


class FhirStore(ABC):
    # --- resources ----------------------------------------------------------------
    @abstractmethod
    def load(
        self,
        batch_id: str,
        items: Sequence[tuple[str, dict[str, Any]]],
        read_at: Sequence[float | None] | None = None,
    ) -> list[Loaded]:
        """Upsert resources in bulk, `items` being (resource_id, resource) pairs, and
        `read_at` when each was read from the source (`ExtractEvent.read_at`): a
        resource the store holds, or deleted, from a later reading is not overwritten
        (superseded, counted as an update: adapters/store/common.py).

        In the same unit of work, count them for their batch: `transformed`
        and `created` or `updated` per resource id, but not replays (see
        `river.batches.content_hash`), except in a live batch, where the same
        content again is a change that touched the instance: an update.
        Returns one `Loaded` per item, in order.
        """

    @abstractmethod
    def delete(
        self,
        batch_id: str,
        resource_id: str,
        resource_type: str,
        ids: Sequence[str],
        read_at: float | None = None,
    ) -> int:
        """Delete resources (a source row deleted); counts `deleted` for the batch.
        With `read_at`, a resource read after it stays, and a tombstone keeps older
        readings from making it again."""

    @abstractmethod
    def read(self, resource_type: str, id: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def search(
        self,
        resource_type: str,
        tag: tuple[str, str] | None = None,
        count: int = 50,
        offset: int = 0,
    ) -> tuple[int, list[dict[str, Any]]]:
        """(total, page) of the resources of a type, with `meta.tag` system|code if given."""

    # --- a FHIR server's writes (adapters/store/fhir_server.py) ------------------------
    # With a FHIR server as the target, the store keeps each resource's last write there
    # instead of the resource: what tells a replay from an update after a restart.
    @abstractmethod
    def written(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Stored]:
        """The last write to the FHIR server of each (resource type, id) of `keys` that
        has one: (batch id, content hash, read at), (None, None, read at) a deletion."""

    @abstractmethod
    def count_written(
        self,
        batch_id: str,
        counters: dict[str, dict[str, int]],
        writes: Sequence[tuple[tuple[str, str], Stored]],
    ) -> None:
        """`add_counts` and keep `writes` as the last write of their keys, in one
        transaction where the backend has them: counted once, even across a crash."""

    # --- batches ------------------------------------------------------------------
    @abstractmethod
    def create_batch(
        self,
        batch_id: str,
        resource_ids: Sequence[str],
        retry_of: str | None = None,
        live: bool = False,
    ) -> None: ...

    def set_expected(self, batch_id: str, resource_id: str, expected: int) -> None:
        self._set_progress(batch_id, resource_id, "expected", expected)

    def set_extracted(self, batch_id: str, resource_id: str, extracted: int) -> None:
        # Set, not added: a replayed extraction counts again from 0 up to the same total.
        self._set_progress(batch_id, resource_id, "extracted", extracted)

    @abstractmethod
    def add_counts(self, batch_id: str, counters: dict[str, dict[str, int]]) -> None:
        """Add to the counters (transformed, created, updated, deleted, failed) of each
        resource id; the batch's resources are made if missing."""

    @abstractmethod
    def add_extracted(self, batch_id: str, resource_id: str, n: int) -> None:
        """A live batch grows with its source: add `n` to its expected and extracted.
        Unlike `set_extracted`, a replay (a crash before the commit) counts again."""

    def resource_failed(self, batch_id: str, resource_id: str, message: str) -> None:
        """The resource could not run at all (invalid mapping, missing table)."""
        self._set_progress(batch_id, resource_id, "error", message)

    @abstractmethod
    def _set_progress(self, batch_id: str, resource_id: str, name: str, value: Any) -> None:
        """Set one of expected, extracted, error for (batch, resource)."""

    @abstractmethod
    def record_errors(self, errors: Sequence[InstanceError]) -> int:
        """Keep errors; each new (batch, resource, primary key, stage) counts one `failed`.
        Returns how many were new."""

    @abstractmethod
    def cancel_batch(self, batch_id: str) -> bool:
        """Mark a batch canceled; False if there is no such batch."""

    @abstractmethod
    def batch(self, batch_id: str) -> BatchState | None: ...

    @abstractmethod
    def batches(
        self, limit: int = 50, offset: int = 0, live: bool | None = None
    ) -> list[BatchState]:
        """Newest first; only live batches (or only the others) when `live` says."""

    @abstractmethod
    def errors(
        self,
        batch_id: str,
        limit: int = 100,
        offset: int = 0,
        resource_id: str | None = None,
        stage: str | None = None,
    ) -> tuple[int, list[InstanceError]]:
        """(total, page) of a batch's errors, oldest first; of one resource, one stage
        when given (resource_id "" names the errors of no resource)."""

    @abstractmethod
    def failed_instances(self, batch_id: str) -> dict[str, list[Any]]:
        """resource id -> primary key values of the instances that failed (for a retry)."""

    # --- life -----------------------------------------------------------------------
    @abstractmethod
    def record_audit(self, event: dict[str, Any]) -> None:
        """Keep one AuditEvent resource (a new id each time), readable and searchable
        as any resource; raise StoreUnavailable rather than lose it."""

    @abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailable when the store cannot answer."""

    @abstractmethod
    def close(self) -> None: ...


class CanceledBatches:
    """Whether a batch was canceled, asked of the store at most once a second per
    batch: services ask it for every message."""

    def __init__(self, store: FhirStore, ttl: float = 1.0) -> None:
        self.store = store
        self.ttl = ttl
        self._known: dict[str, tuple[bool, float]] = {}

    def __call__(self, batch_id: str | None) -> bool:
        if batch_id is None:
            return False
        now = time.monotonic()
        known = self._known.get(batch_id)
        if known is not None and (known[0] or now - known[1] < self.ttl):
            return known[0]  # a canceled batch stays canceled
        state = self.store.batch(batch_id)
        canceled = state is not None and state.canceled_at is not None
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[batch_id] = (canceled, now)
        return canceled


def open_store(url: str, bulk_size: int = 500, fhir_server: Any = None) -> FhirStore:
    """The backend the URL's scheme names: postgresql:// or mongodb://.

    `bulk_size` is the documents per bulk command of the MongoDB store
    (MONGO_BULK_SIZE); PostgreSQL takes each call's resources in one statement.
    With `fhir_server` (`Settings.fhir_server`, FHIR_SERVER_URL), resources go to that
    FHIR server and the backend keeps the batch state (adapters/store/fhir_server.py).
    """
    if fhir_server is not None:
        from adapters.store.fhir_server import FhirServerStore

        return FhirServerStore(fhir_server, open_store(url, bulk_size))
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme in ("postgresql", "postgres"):
        from adapters.store.postgres import PostgresStore

        return PostgresStore(url)
    if scheme in ("mongodb", "mongodb+srv"):
        from adapters.store.mongo import MongoStore

        return MongoStore(url, bulk_size=bulk_size)
    raise RiverError(f"FHIR_STORE_URL must start with postgresql:// or mongodb://, not {scheme}://")
