"""Batch progress as plain data, and the rule that says where a batch stands.

Both FHIR store backends keep the same counters; this module decides the
status from them, so that the rule lives in one place.

Counters per (batch, resource), all exact under replays (docs/architecture.md, Guarantees):
- expected: instances the resource has after filters, set before the first event;
- extracted: instances extracted so far (set, not added, by the extractor);
- transformed: instances that reached the loader transformed;
- created / updated / deleted: what the loader did with them in the store;
- failed: instances with an error (one per instance and stage, counted once).

Beside them, `progressed_at`: when one of them (or `error`) last changed, written
by the store in the same write as the counter. A running resource whose
counters have not moved for a while is `stalled` (`stall` below says at which
stage and why); its batch has not ended, so the batch stays `running`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

RUNNING, COMPLETED, FAILED, CANCELED = "running", "completed", "failed", "canceled"
# A live batch whose connector does not follow its source now (the API tells, asking
# Kafka Connect: api/health.py); it runs again once the connector does.
DEGRADED = "degraded"
# A resource of a running batch whose counters have not moved for the API's
# STALLED_AFTER_SECONDS: not a status of the batch, which has not ended.
STALLED = "stalled"
EXTRACT, TRANSFORM, LOAD = "extract", "transform", "load"  # the stage a resource stopped at
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
    # When a counter above last changed; None if none has since the batch was created.
    progressed_at: dt.datetime | None = None

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

    def stalls(self, now: dt.datetime, after_seconds: float | None) -> dict[str, Stall]:
        """resource id -> its stall, for the resources of this batch that have not moved
        for `after_seconds` by `now` (None or 0: none is judged). A live batch waits
        for its source and a canceled one does nothing: neither stalls.

        A resource that never moved counts from the batch's last change: queued
        behind the other resources of its batch, it is not stuck while they move.
        """
        if after_seconds is None or after_seconds <= 0 or self.live or self.canceled_at is not None:
            return {}
        found = {}
        for resource_id in self.resource_ids:
            p = self.resources.get(resource_id) or ResourceProgress(resource_id)
            found_stall = stall(p, p.progressed_at or self.updated_at, now, after_seconds)
            if found_stall is not None:
                found[resource_id] = found_stall
        return found

    def as_json(
        self, stalled_after: float | None = None, now: dt.datetime | None = None
    ) -> dict[str, Any]:
        """The batch as the API shows it. With `stalled_after` (seconds; the API's
        STALLED_AFTER_SECONDS), a running resource that has not moved for that long
        shows `stalled`, the stage it stopped at and why, and the batch `stalled`."""
        now = now or dt.datetime.now(dt.UTC)
        ended = self.ended_at
        end = ended or now
        stalls = self.stalls(now, stalled_after)
        resources = []
        for resource_id in self.resource_ids:
            p = self.resources.get(resource_id) or ResourceProgress(resource_id)
            shown: dict[str, Any] = {
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
            stalled = stalls.get(resource_id)
            if stalled is not None:
                shown["status"] = STALLED
                shown["stalled_at_stage"] = stalled.stage
                shown["reason"] = stalled.reason
            resources.append(shown)
        return {
            "batch_id": self.batch_id,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "ended_at": ended.isoformat() if ended else None,
            "duration_seconds": round((end - self.created_at).total_seconds(), 3),
            **({"retry_of": self.retry_of} if self.retry_of else {}),
            **({"live": True} if self.live else {}),
            **({"stalled": True} if stalls else {}),
            "resources": resources,
        }


@dataclass(frozen=True)
class Stall:
    """Where a resource that stopped moving stands: its stage and one sentence."""

    stage: str  # extract, transform or load
    idle_seconds: float
    reason: str


def stalled_stage(progress: ResourceProgress) -> str:
    """The stage a resource has not got through: `extract` while the instances to
    extract are not counted or not all extracted, `transform` while some extracted
    ones are neither transformed nor failed, else `load`."""
    if progress.expected is None or progress.extracted < progress.expected:
        return EXTRACT
    if progress.transformed + progress.failed < progress.extracted:
        return TRANSFORM
    return LOAD


def stall(
    progress: ResourceProgress,
    last_progress: dt.datetime,
    now: dt.datetime,
    after_seconds: float,
) -> Stall | None:
    """The stall of a resource still running (neither done nor failed) whose counters
    have not moved since `last_progress` for `after_seconds` or more by `now`; None
    for any other. The batch's side (live, canceled) is `BatchState.stalls`'."""
    if progress.status != RUNNING:
        return None
    idle = (now - last_progress).total_seconds()
    if idle < after_seconds:
        return None
    stage = stalled_stage(progress)
    p = progress
    or_failed = " or failed" if p.failed else ""
    if stage == EXTRACT and p.expected is None:
        where = "the instances to extract not counted yet"
    elif stage == EXTRACT:
        where = f"{p.extracted:,} of {p.expected:,} expected instances extracted"
    elif stage == TRANSFORM:
        where = (
            # `transformed` moves when the loader writes: a loader that cannot write
            # (its store or FHIR server refusing) stalls a resource here.
            f"{p.transformed + p.failed:,} of {p.extracted:,} extracted instances"
            f" transformed and loaded{or_failed}"
        )
    else:
        where = f"{p.loaded + p.failed:,} of {p.expected:,} expected instances loaded{or_failed}"
    reason = f"no progress for {idle:,.0f} s; stopped at stage {stage} ({where})"
    return Stall(stage, idle, reason)


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
