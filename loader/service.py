"""The loader: `transform` events in, resources upserted in bulk into the FHIR
store, `load` events out; a deletion (an instance gone from a live source)
deletes its resource. The store counts each instance once per batch, in the
same unit of work as the write, so a replay changes no count."""

from __future__ import annotations

import time
from collections import defaultdict

from adapters import metrics
from adapters.kafka import Handler, Message, Output, ServiceConfig, decoded, run_services
from adapters.service import failed_instance, report_failures, start
from adapters.store import CanceledBatches, FhirStore, InstanceError
from adapters.store.common import REPLAYED, SUPERSEDED, is_resource_type
from river import events

UNCHANGED = (REPLAYED, SUPERSEDED)


def make_handler(store: FhirStore, source: str = events.TRANSFORM) -> Handler:
    """The handler of `source`'s transform events (`transform`, or `transform-live`)."""
    canceled = CanceledBatches(store)

    def handle(messages: list[Message], out: Output) -> None:
        # Upserts go in bulk per batch; a deletion first writes what came before it,
        # so that an instance created then deleted in one poll ends deleted.
        upserts: dict[str, list[tuple[bytes | None, events.TransformEvent]]] = defaultdict(list)
        failures: list[tuple[bytes | None, InstanceError]] = []
        for message, event in decoded(source, "load", messages, out):
            if canceled(event.batch_id):
                continue
            if not is_resource_type(event.fhir_object["resourceType"]):
                reason = f"not a FHIR resource type: {event.fhir_object['resourceType']!r}"
                failure = InstanceError(
                    event.batch_id, event.resource_id, event.primary_key_value, "load", reason
                )
                failures.append((message.key, failure))
            elif event.deleted:
                _upsert(store, upserts, out)
                _delete(store, message.key, event, out)
            else:
                upserts[event.batch_id].append((message.key, event))
        _upsert(store, upserts, out)
        report_failures(store, out, failures)

    return handle


def _upsert(
    store: FhirStore,
    pending: dict[str, list[tuple[bytes | None, events.TransformEvent]]],
    out: Output,
) -> None:
    for batch_id, items in pending.items():
        with metrics.STORE_WRITE_SECONDS.labels("upsert").time():
            loaded = store.load(
                batch_id,
                [(event.resource_id, event.fhir_object) for _, event in items],
                [event.read_at for _, event in items],
            )
        counts: dict[tuple[str, str], int] = defaultdict(int)
        now = time.time()
        for (key, event), result in zip(items, loaded, strict=True):
            counts[(event.resource_id, result.action)] += 1
            _live_latency(event, now)
            # A replay is, downstream, the update it was the first time; a superseded
            # version, an update that found the resource already newer.
            action = events.UPDATED if result.action in UNCHANGED else result.action
            out.send(
                events.LOAD,
                key,
                events.LoadEvent(
                    batch_id, event.resource_id, result.resource_type, result.id, action
                ),
            )
        for (resource_id, action), count in counts.items():
            metrics.LOADED.labels(resource_id, action).inc(count)
    pending.clear()


def _live_latency(event: events.TransformEvent, now: float) -> None:
    if event.changed_at is not None:
        metrics.LIVE_LATENCY_SECONDS.labels(event.resource_id).observe(
            max(0.0, now - event.changed_at)
        )


def _delete(store: FhirStore, key: bytes | None, event: events.TransformEvent, out: Output) -> None:
    resource_type, id = event.fhir_object["resourceType"], event.fhir_object["id"]
    with metrics.STORE_WRITE_SECONDS.labels("delete").time():
        store.delete(event.batch_id, event.resource_id, resource_type, [id], event.read_at)
    metrics.LOADED.labels(event.resource_id, events.DELETED).inc()
    _live_latency(event, time.time())
    # Said even when nothing was there (a replay, a row that never passed the filters):
    # the resource is gone either way, as a FHIR server answers a DELETE.
    out.send(
        events.LOAD,
        key,
        events.LoadEvent(event.batch_id, event.resource_id, resource_type, id, events.DELETED),
    )


def main() -> None:
    settings, _, store = start("loader", with_engine=False)
    # Live changes have a loop of their own (group fhir-river-loader-live).
    run_services(
        settings,
        [
            (
                ServiceConfig(
                    name,
                    (source,),
                    max_batch=1000,
                    # A resource the store refuses (PostgreSQL's jsonb takes no \u0000)
                    # fails alone.
                    failure=failed_instance(store, source, "load"),
                ),
                make_handler(store, source),
            )
            for name, source in (
                ("loader", events.TRANSFORM),
                ("loader-live", events.TRANSFORM_LIVE),
            )
        ],
    )
