"""Batches and previews: `POST /batch`, `POST /preview`, `GET /batches...`,
`POST /batches/<id>/retry`, `DELETE /batches/<id>`, and `GET /resources`.

A batch is written to the store first, then announced on the `batch` topic
(one event per resource): the extractor that picks an event up always finds
its batch. Everything a request names is checked against the mappings before
anything is written.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Response, g, url_for

from adapters.kafka import KafkaUnavailable
from api.fhir import (
    CONFLICT,
    EXCEPTION,
    INVALID,
    NOT_FOUND,
    TRANSIENT,
    VALUE,
    ApiError,
    json_response,
)
from api.health import live_source_problem
from api.inputs import (
    MAX_PRIMARY_KEYS,
    choice_parameter,
    int_parameter,
    json_body,
    key_list,
    no_other_parameters,
    required,
    string_list,
    string_value,
    text_parameter,
)
from api.services import Services, services
from river import events
from river.batches import CANCELED, COMPLETED, DEGRADED, FAILED, RUNNING, BatchState
from river.errors import (
    InvalidMapping,
    InvalidValue,
    RiverError,
    SourceError,
    SourceUnavailable,
    UnknownResource,
)
from river.live import CSV

log = logging.getLogger("river.api")
blueprint = Blueprint("batches", __name__)

PrimaryKeys = dict[str, list[Any] | None]
_BATCH_ID = re.compile(r"[^\x00-\x1f\x7f]{1,256}")


@blueprint.post("/batch")
def create_batch() -> Response:
    body = json_body(allowed={"resource_ids", "primary_key_values"})
    river = services()
    resource_ids = string_list(body, "resource_ids")
    _check_known(river, resource_ids, "resource_ids")
    keys = _primary_keys(body.get("primary_key_values"), resource_ids)
    for resource_id, values in keys.items():
        _check_keys(river, resource_id, values)
    batch_id = _start(river, resource_ids, keys)
    return json_response({"batch_id": batch_id, "resource_ids": resource_ids})


@blueprint.post("/preview")
def preview() -> Response:
    body = json_body(allowed={"resource_id", "primary_key_values"})
    river = services()
    resource_id = string_value(body, "resource_id")
    _check_known(river, [resource_id], "resource_id")
    keys = key_list(required(body, "primary_key_values"), "primary_key_values")
    _check_keys(river, resource_id, keys)
    with _reading_source(resource_id):
        answer = river.engine.preview(resource_id, keys)
    # Messages name the attribute and the kind of problem, never a source value
    # (river/errors.py); the instances are the user's data, returned unaltered.
    return json_response(answer)


@blueprint.get("/resources")
def resources() -> Response:
    """The resources the loaded mappings define (what `resource_ids` may name)."""
    no_other_parameters(set())
    engine = services().engine
    return json_response(
        {
            "total": len(engine.mappings),
            "items": [
                {
                    "resource_id": plan.resource_id,
                    "resource_type": plan.resource_type,
                    "label": plan.label,
                }
                for plan in engine.mappings
            ],
        }
    )


@blueprint.get("/resources/<resource_id>/keys")
def resource_keys(resource_id: str) -> Response:
    """The first primary key values of a resource (after its filters), in order: what
    a mapping author picks from to preview. Reads the source, as a preview does."""
    no_other_parameters({"limit"})
    limit = int_parameter("limit", 20, 1, 1000)
    river = services()
    _check_known(river, [resource_id], "resource_id")
    with _reading_source(resource_id):
        keys = river.engine.first_keys(resource_id, limit)
    return json_response({"resource_id": resource_id, "primary_key_values": keys})


@blueprint.get("/batches")
def list_batches() -> Response:
    """Newest first; `live=true|false` keeps live batches or the others, `status` the
    batches shown with that status."""
    no_other_parameters({"limit", "offset", "live", "status"})
    limit = int_parameter("limit", 50, 1, 1000)
    offset = int_parameter("offset", 0, 0)
    live = choice_parameter("live", ("true", "false"))
    status = choice_parameter("status", BATCH_STATUSES)
    river = services()
    only_live = None if live is None else live == "true"
    if status is None:
        # One more than asked tells whether a next page exists, without counting them all.
        shown = [_shown(river, s) for s in river.store.batches(limit + 1, offset, only_live)]
    else:
        shown = _with_status(river, status, only_live, limit + 1, offset)
    filters = {k: v for k, v in (("live", live), ("status", status)) if v is not None}
    return json_response(
        {
            "limit": limit,
            "offset": offset,
            "items": shown[:limit],
            **_page_links("batches.list_batches", filters, limit, offset, len(shown) > limit),
        }
    )


# A batch's status is worked out from its counters (river.batches), not stored: the
# batches of one status are found by reading the newest first, a page at a time.
BATCH_STATUSES = (RUNNING, COMPLETED, FAILED, CANCELED, DEGRADED)
_SCAN_PAGE = 500


def _with_status(
    river: Services, status: str, live: bool | None, wanted: int, offset: int
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    skipped = 0
    at = 0
    while len(found) < wanted:
        states = river.store.batches(_SCAN_PAGE, at, live)
        for state in states:
            shown = _shown(river, state)
            if shown["status"] != status:
                continue
            if skipped < offset:
                skipped += 1
            else:
                found.append(shown)
        if len(states) < _SCAN_PAGE:
            break
        at += _SCAN_PAGE
    return found[:wanted]


@blueprint.get("/batches/<batch_id>")
def get_batch(batch_id: str) -> Response:
    no_other_parameters(set())
    river = services()
    return json_response(_shown(river, _batch(river, batch_id)))


@blueprint.get("/batches/<batch_id>/errors")
def batch_errors(batch_id: str) -> Response:
    """Oldest first; `resource_id` and `stage` keep the errors of one resource, one stage."""
    no_other_parameters({"limit", "offset", "resource_id", "stage"})
    limit = int_parameter("limit", 100, 1, 10_000)
    offset = int_parameter("offset", 0, 0)
    resource_id = text_parameter("resource_id")
    stage = text_parameter("stage")
    river = services()
    _batch(river, batch_id)
    total, errors = river.store.errors(batch_id, limit, offset, resource_id, stage)
    filters = {k: v for k, v in (("resource_id", resource_id), ("stage", stage)) if v is not None}
    return json_response(
        {
            "batch_id": batch_id,
            "total": total,
            "limit": limit,
            "offset": offset,
            "items": [
                {
                    "resource_id": error.resource_id,
                    "primary_key_value": error.primary_key_value,
                    "stage": error.stage,
                    "message": error.message,
                }
                for error in errors
            ],
            **_page_links(
                "batches.batch_errors",
                {"batch_id": batch_id, **filters},
                limit,
                offset,
                offset + limit < total,
            ),
        }
    )


@blueprint.post("/batches/<batch_id>/retry")
def retry_batch(batch_id: str) -> Response:
    no_other_parameters(set())
    river = services()
    state = _batch(river, batch_id)
    # A live batch never ends: its failed instances are retried while it goes on.
    if state.status == RUNNING and not state.live:
        raise ApiError(
            409,
            CONFLICT,
            f"batch {batch_id} is still running: retry it once it has ended (or cancel it)",
        )
    source = river.live_source(batch_id) if state.live else None
    if source is not None and source.kind == CSV:
        raise ApiError(
            409,
            CONFLICT,
            f"batch {batch_id} follows the CSV files of connector {source.name}: their rows"
            " are in no database to extract again; upload the corrected file to retry them",
        )
    keys: PrimaryKeys = {}
    # A resource that could not run at all (a missing table...) is run again whole.
    for resource_id in state.resource_ids:
        progress = state.resources.get(resource_id)
        if progress is not None and progress.error is not None:
            keys[resource_id] = None
    for resource_id, values in river.store.failed_instances(batch_id).items():
        if resource_id not in keys:
            keys[resource_id] = values
    if not keys:
        raise ApiError(409, CONFLICT, f"batch {batch_id} has no failed instance to retry")
    resource_ids = [r for r in state.resource_ids if r in keys] + [
        r for r in keys if r not in state.resource_ids
    ]
    new_id = _start(river, resource_ids, keys, retry_of=batch_id)
    return json_response(
        {
            "batch_id": new_id,
            "resource_ids": resource_ids,
            "retry_of": batch_id,
            "instances": {r: (None if v is None else len(v)) for r, v in keys.items()},
        }
    )


@blueprint.delete("/batches/<batch_id>")
def cancel_batch(batch_id: str) -> Response:
    no_other_parameters(set())
    river = services()
    state = _batch(river, batch_id)
    if state.live:
        raise ApiError(
            409,
            CONFLICT,
            f"batch {batch_id} follows a live source: remove its connector from LIVE_SOURCES"
            f" (or `river connectors remove` it) to stop it",
        )
    if state.canceled_at is None and state.status != RUNNING:
        # Canceling would rewrite an ended batch's history as "canceled".
        raise ApiError(
            409, CONFLICT, f"batch {batch_id} has already ended ({state.status}): nothing to cancel"
        )
    if not river.store.cancel_batch(batch_id):
        raise _no_batch(batch_id)
    log.info("batch %s canceled", batch_id)
    return json_response(_batch(river, batch_id).as_json())


# --- helpers ----------------------------------------------------------------------------


def _start(
    river: Services, resource_ids: list[str], keys: PrimaryKeys, retry_of: str | None = None
) -> str:
    """Record the batch, then produce its events and wait for Kafka's acknowledgement."""
    batch_id = uuid.uuid4().hex
    g.batch_id = batch_id  # for the audit trail (api/audit.py)
    river.store.create_batch(batch_id, resource_ids, retry_of=retry_of)
    try:
        producer = river.producer()
        for resource_id in resource_ids:
            producer.send(
                events.BATCH,
                events.instance_key(resource_id, ""),
                events.BatchEvent(batch_id, resource_id, keys.get(resource_id)),
            )
        producer.flush(river.produce_timeout + 2)
    except KafkaUnavailable:
        river.produced_badly()
        # The batch exists but nothing will run it: say so in its status, so that
        # it does not look "running" forever (and an event that still gets
        # through is skipped by the extractor).
        try:
            river.store.cancel_batch(batch_id)
        except Exception:
            log.exception("batch %s: could not mark it canceled after a Kafka failure", batch_id)
        raise
    log.info(
        "batch %s: %d resource(s)%s",
        batch_id,
        len(resource_ids),
        f", retry of {retry_of}" if retry_of else "",
    )
    return batch_id


def _check_keys(river: Services, resource_id: str, keys: list[Any] | None) -> None:
    """Primary key values must read as the key column's type, exactly: `1.5` or
    `1.0e999` for an integer key is the user's mistake (400), never another row."""
    if keys is None:
        return
    with _reading_source(resource_id):
        try:
            river.engine.read_keys(resource_id, keys)
        except InvalidValue as error:
            raise ApiError(
                400, VALUE, f"primary_key_values of resource {resource_id}: {error}"
            ) from None


@contextmanager
def _reading_source(resource_id: str) -> Iterator[None]:
    """What reading a resource's source can raise, as the API answers it."""
    try:
        yield
    except InvalidMapping as error:
        raise ApiError(
            400,
            INVALID,
            f"the mapping of resource {resource_id} is invalid ({len(error.faults)} problem(s))",
            details=[str(fault) for fault in error.faults],
        ) from None
    except SourceUnavailable as error:
        raise ApiError(503, TRANSIENT, str(error)) from None
    except SourceError as error:
        # The request is right; the source database does not match the mapping (a
        # missing table or column): an upstream fault, hence 502.
        raise ApiError(502, EXCEPTION, str(error)) from None
    except RiverError as error:  # e.g. the mapping's credential names an unknown database
        raise ApiError(400, INVALID, str(error)) from None


def _check_known(river: Services, resource_ids: list[str], field: str) -> None:
    """Every id names a resource of the mappings. An unknown one is named by its
    position, never echoed: whatever the caller sent, the answer is the same."""
    unknown = []
    for n, resource_id in enumerate(resource_ids):
        try:
            river.engine.mappings.resource(resource_id)
        except UnknownResource:
            unknown.append(n)
    if unknown:
        known = river.engine.mappings.resource_ids()
        hint = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "")
        if field == "resource_id":  # a single id (preview)
            where, expression = "resource_id is an unknown resource id", field
        else:
            positions = ", ".join(f"{field}[{n}]" for n in unknown[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            where = (
                f"unknown resource id(s) at {positions}{more}"
                f" ({len(unknown)} of {len(resource_ids)})"
            )
            expression = f"{field}[{unknown[0]}]"
        raise ApiError(
            400,
            NOT_FOUND,
            f"{where}; the mappings define: {hint or 'nothing'} (GET /resources lists them)",
            expression=expression,
        )


def _primary_keys(value: Any, resource_ids: list[str]) -> PrimaryKeys:
    """`primary_key_values`: absent or null (every row), one list for every
    resource, or an object resource id -> list (a resource not named: every row)."""
    field = "primary_key_values"
    if value is None:
        return {}
    if isinstance(value, list):
        keys = key_list(value, field)
        return {resource_id: keys for resource_id in resource_ids}
    if not isinstance(value, dict):
        raise ApiError(
            400,
            VALUE,
            f"{field} must be a list of primary key values or an object resource id -> list",
            expression=field,
        )
    strangers = [r for r in value if r not in resource_ids]
    if strangers:
        raise ApiError(
            400,
            INVALID,
            f"{field} names resource(s) not in resource_ids: {', '.join(strangers)}",
            expression=f"{field}.{strangers[0]}",
        )
    keys_by_resource: PrimaryKeys = {}
    total = 0
    for resource_id, keys in value.items():
        if keys is None:
            continue
        keys_by_resource[resource_id] = key_list(keys, f"{field}.{resource_id}")
        total += len(keys)
    if total > MAX_PRIMARY_KEYS:
        raise ApiError(
            400,
            VALUE,
            f"{field} holds {total} values in all; at most {MAX_PRIMARY_KEYS} are accepted",
            expression=field,
        )
    return keys_by_resource


def _shown(river: Services, state: BatchState) -> dict[str, Any]:
    """A batch as the API shows it: a resource whose counters have not moved for
    STALLED_AFTER_SECONDS is `stalled`, with its stage and the reason (the batch,
    not ended, stays `running`, flagged `stalled`); a live batch whose connector is
    not following its source (stopped, paused, a task failed) is `degraded`, with
    the reason."""
    shown = state.as_json(stalled_after=river.settings.stalled_after_seconds)
    source = river.live_source(state.batch_id) if state.live else None
    if source is not None and shown["status"] == RUNNING:
        problem = live_source_problem(river, source)
        if problem is not None:
            shown["status"], shown["reason"] = DEGRADED, problem
    return shown


def _batch(river: Services, batch_id: str) -> BatchState:
    if not _BATCH_ID.fullmatch(batch_id):
        raise _no_batch(batch_id)  # a NUL byte or the like would only upset the store
    state = river.store.batch(batch_id)
    if state is None:
        raise _no_batch(batch_id)
    return state


def _no_batch(batch_id: str) -> ApiError:
    return ApiError(404, NOT_FOUND, f"no batch {batch_id!r}")


def _page_links(
    endpoint: str, values: dict[str, Any], limit: int, offset: int, has_next: bool
) -> dict[str, str | None]:
    def link(at: int) -> str:
        return url_for(endpoint, **values, limit=limit, offset=at, _external=True)

    return {
        "self": link(offset),
        "next": link(offset + limit) if has_next else None,
        "prev": link(max(offset - limit, 0)) if offset > 0 else None,
    }
