"""What both FHIR store backends share: telling created from updated from
replayed, the counts that follow, and where a store is (in messages, without its
password: river/secrets.py masks what a driver says).

Kept apart from the backends so that PostgreSQL and MongoDB decide the same
way (one rule, two storages): a resource is *created* when no row held its
id, *replayed* when the row was written by the same batch with the same
content (`river.batches.content_hash`), *superseded* when the store holds (or
deleted) a version read from the source after this one, else *updated*.

Superseded: batches and live changes reach the loader by two paths (topics of
their own), so an instance a batch extracted before a live change may arrive
after it. Each version carries when it was read (`ExtractEvent.read_at`), the
store keeps it beside the resource (and, for a deleted resource, in a
tombstone), and an older reading never overwrites a newer one. It counts as an
update of its batch (the instance is loaded: its resource is up to date).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from adapters.store import Loaded, Stored
from river.batches import content_hash, is_live_batch
from river.errors import RiverError

CREATED, UPDATED, REPLAYED, SUPERSEDED = "created", "updated", "replayed", "superseded"

# FHIR resource type names are CamelCase letters (Patient, MedicationRequest): checking
# them keeps table and collection names safe and apart from the store's own.
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{0,62}")

Key = tuple[str, str]  # (resource type, FHIR id)
# What to write for one key: (id, resource, content hash, read at).
Row = tuple[str, dict[str, Any], str, float | None]


def check_resource_type(resource_type: Any) -> str:
    """The resource type, if it can name a table or a collection; RiverError else."""
    if not isinstance(resource_type, str) or not _RESOURCE_TYPE.fullmatch(resource_type):
        raise RiverError(f"{resource_type!r} is not a FHIR resource type name")
    return resource_type


def is_resource_type(resource_type: Any) -> bool:
    return isinstance(resource_type, str) and _RESOURCE_TYPE.fullmatch(resource_type) is not None


def keys_of(items: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, list[str]]:
    """resource type -> the distinct ids of `items`, in first-seen order."""
    ids: dict[str, dict[str, None]] = defaultdict(dict)
    for _, resource in items:
        if not isinstance(resource, dict):
            raise RiverError("a resource to load must be a JSON object")
        resource_type = check_resource_type(resource.get("resourceType"))
        rid = resource.get("id")
        if not isinstance(rid, str) or not rid:
            raise RiverError(f"a {resource_type} to load has no id")
        ids[resource_type][rid] = None
    return {t: list(v) for t, v in ids.items()}


@dataclass
class LoadPlan:
    """What one `load` call does, decided before writing.

    `writes` holds, per key, the last version of the call that is neither a
    replay nor superseded, with its hash and reading time (what to upsert);
    `first_created` the keys no row held when read, with the position, resource
    id and hash of their first item (the backend checks them against what its
    write saw); `revived` the written keys that had a tombstone (to drop).
    """

    batch_id: str
    loaded: list[Loaded] = field(default_factory=list)
    writes: dict[Key, tuple[dict[str, Any], str, float | None]] = field(default_factory=dict)
    revived: set[Key] = field(default_factory=set)
    first_created: dict[Key, tuple[int, str, str]] = field(default_factory=dict)
    counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def rejudge(self, key: Key, stored: Stored) -> bool:
        """A key planned as created turned out to exist (a concurrent writer inserted it
        after it was read): judge its first item against `stored` instead, fix the
        counts, and say whether the key's last version must still be written."""
        index, resource_id, digest = self.first_created.pop(key)
        first = self.loaded[index]
        action = REPLAYED if stored[:2] == (self.batch_id, digest) else UPDATED
        if first.action == CREATED:
            self.loaded[index] = Loaded(first.resource_type, first.id, action)
            self.counts[resource_id][CREATED] -= 1
            if action == UPDATED or is_live_batch(self.batch_id):
                self.counts[resource_id][UPDATED] += 1
        return stored[:2] != (self.batch_id, self.writes[key][1])

    def by_type(self) -> dict[str, list[Row]]:
        """resource type -> [(id, resource, hash, read at)] to write, sorted by id (lock order)."""
        grouped: dict[str, list[Row]] = defaultdict(list)
        for (resource_type, rid), (resource, digest, read_at) in self.writes.items():
            grouped[resource_type].append((rid, resource, digest, read_at))
        for rows in grouped.values():
            rows.sort(key=lambda row: row[0])
        return grouped

    def counters(self) -> dict[str, dict[str, int]]:
        """resource id -> counter increments (transformed, created, updated), none zero."""
        out = {}
        for resource_id, counts in sorted(self.counts.items()):
            increments = {
                "transformed": counts[CREATED] + counts[UPDATED],
                "created": counts[CREATED],
                "updated": counts[UPDATED],
            }
            increments = {k: v for k, v in increments.items() if v}
            if increments:
                out[resource_id] = increments
        return out


def plan_load(
    batch_id: str,
    items: Sequence[tuple[str, dict[str, Any]]],
    stored: Mapping[Key, Stored],
    read_at: Sequence[float | None] | None = None,
    deleted: Mapping[Key, float] | None = None,
) -> LoadPlan:
    """Decide each item's action against `stored` (what the store holds now) and
    `deleted` (the tombstones of the keys `stored` lacks: when each was deleted,
    as the reading time of the version that deleted it). `read_at` gives each
    item's reading time (None: unknown, never superseded).

    An id met twice in one call is judged against its previous version in
    the call, so that the counts are those of loading the items one by one.
    """
    plan = LoadPlan(batch_id)
    # A live batch extracts an instance again at each change that touches it: the same
    # content again is an update that changed nothing, counted; not a replay.
    live = is_live_batch(batch_id)
    state: dict[Key, Stored] = dict(stored)
    tombstones = deleted or {}
    for index, (resource_id, resource) in enumerate(items):
        key = (resource["resourceType"], resource["id"])
        digest = content_hash(resource)
        read = read_at[index] if read_at is not None else None
        before = state.get(key)
        newest = before[2] if before is not None else tombstones.get(key)
        if read is not None and newest is not None and read < newest:
            # A newer reading is in the store (or deleted it): this one is loaded as
            # an update that changes nothing.
            plan.counts[resource_id][UPDATED] += 1
            plan.loaded.append(Loaded(key[0], key[1], SUPERSEDED))
            continue
        if before is None:
            action = CREATED
            plan.first_created[key] = (len(plan.loaded), resource_id, digest)
        elif before[:2] == (batch_id, digest):
            action = REPLAYED
        else:
            action = UPDATED
        # A version of no known reading time keeps the newest known one.
        version = read if read is not None else newest
        state[key] = (batch_id, digest, version)
        if action != REPLAYED:
            plan.writes[key] = (resource, digest, version)
            plan.counts[resource_id][action] += 1
            if key in tombstones:
                plan.revived.add(key)
        elif live:
            plan.counts[resource_id][UPDATED] += 1  # nothing to write: the same content
        plan.loaded.append(Loaded(key[0], key[1], action))
    return plan


# --- errors ---------------------------------------------------------------------------------
def encode_key(value: Any) -> str:
    """A primary key value as text that keeps its JSON type (1 and "1" stay apart),
    so that a retry hands the extractor the values it had."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def decode_key(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def failed_counts(new: Sequence[tuple[str, str | None]]) -> dict[tuple[str, str], int]:
    """(batch id, resource id) -> new errors, for the `failed` counters (errors with no
    resource count for none)."""
    counts: Counter[tuple[str, str]] = Counter()
    for batch_id, resource_id in new:
        if resource_id:
            counts[(batch_id, resource_id)] += 1
    return dict(sorted(counts.items()))


# --- messages -------------------------------------------------------------------------------
def where(url: str) -> str:
    """host:port/database of a URL, without user or password (for messages)."""
    rest = url.split("://", 1)[-1]
    rest = rest.rsplit("@", 1)[-1] if "@" in rest.split("/", 1)[0] else rest
    return rest.split("?", 1)[0].rstrip("/")
