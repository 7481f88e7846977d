"""Batch progress as plain data, and the rule that says where a batch stands.

Both FHIR store backends keep the same counters; this module decides the
status from them, so that the rule lives in one place.

Counters per (batch, resource), all exact under replays (DESIGN.md, Guarantees):
- expected: instances the resource has after filters, set before the first event;
- extracted: instances extracted so far (set, not added, by the extractor);
- transformed: instances that reached the loader transformed;
- created / updated / deleted: what the loader did with them in the store;
- failed: instances with an error (one per instance and stage, counted once).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

RUNNING, COMPLETED, FAILED, CANCELED = "running", "completed", "failed", "canceled"
LIVE_PREFIX = "live-"  # batch ids the API makes are uuids: they never start so


def live_batch_id(connector_name: str) -> str:
    """The batch everything a live source's connector causes runs under."""
    return f"{LIVE_PREFIX}{connector_name}"


def is_live_batch(batch_id: str) -> bool:
    return batch_id.startswith(LIVE_PREFIX)


@dataclass
class ResourceProgress:
    resource_id: str
    expected: int | None = None
    extracted: int = 0
    transformed: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    failed: int = 0
    error: str | None = None  # the resource could not run at all (e.g. a missing table)

    @property
    def loaded(self) -> int:
        return self.created + self.updated

    @property
    def done(self) -> bool:
        if self.error is not None:
            return True
        return self.expected is not None and self.loaded + self.failed >= self.expected

    @property
    def status(self) -> str:
        if self.error is not None:
            return FAILED
        return COMPLETED if self.done else RUNNING


@dataclass
class BatchState:
    batch_id: str
    resource_ids: list[str]
    created_at: dt.datetime
    updated_at: dt.datetime
    canceled_at: dt.datetime | None = None
    retry_of: str | None = None
    live: bool = False  # a live source's batch: never completes
    resources: dict[str, ResourceProgress] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.canceled_at is not None:
            return CANCELED
        progress = [self.resources.get(r) or ResourceProgress(r) for r in self.resource_ids]
        if self.live or not all(p.done for p in progress):
            return RUNNING
        return FAILED if any(p.error is not None for p in progress) else COMPLETED

    @property
    def ended_at(self) -> dt.datetime | None:
        if self.status == RUNNING:
            return None
        return self.canceled_at or self.updated_at

    def as_json(self) -> dict[str, Any]:
        """The batch as the API shows it."""
        ended = self.ended_at
        end = ended or dt.datetime.now(dt.UTC)
        resources = []
        for resource_id in self.resource_ids:
            p = self.resources.get(resource_id) or ResourceProgress(resource_id)
            resources.append(
                {
                    "resource_id": resource_id,
                    "status": _resource_status(self, p),
                    "expected": p.expected,
                    "extracted": p.extracted,
                    "transformed": p.transformed,
                    "loaded": p.loaded,
                    "created": p.created,
                    "updated": p.updated,
                    "deleted": p.deleted,
                    "failed": p.failed,
                    **({"error": p.error} if p.error else {}),
                }
            )
        return {
            "batch_id": self.batch_id,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "ended_at": ended.isoformat() if ended else None,
            "duration_seconds": round((end - self.created_at).total_seconds(), 3),
            **({"retry_of": self.retry_of} if self.retry_of else {}),
            **({"live": True} if self.live else {}),
            "resources": resources,
        }


def _resource_status(batch: BatchState, progress: ResourceProgress) -> str:
    if batch.canceled_at and not progress.done:
        return CANCELED
    if batch.live and progress.error is None:
        return RUNNING  # caught up, maybe, but a live resource never ends
    return progress.status


def content_hash(resource: dict[str, Any]) -> str:
    """A resource's content, but `meta.lastUpdated`: equal for a replay of one instance.

    The loader stores it beside each resource; an upsert whose batch and hash
    equal the stored ones is a replay (a service restarted before committing)
    and is not counted again.
    """
    meta = resource.get("meta")
    if isinstance(meta, dict) and "lastUpdated" in meta:
        resource = {**resource, "meta": {k: v for k, v in meta.items() if k != "lastUpdated"}}
    return hashlib.sha1(orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)).hexdigest()
