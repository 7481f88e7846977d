"""The loader: `transform` events in, resources upserted in bulk into the FHIR
store, `load` events out. The store counts each instance once per batch, in
the same unit of work as the write, so a replay changes no count."""

from __future__ import annotations

from collections import defaultdict

from adapters.kafka import Handler, Message, Output, ServiceConfig, decoded, run_service
from adapters.service import start
from adapters.store import CanceledBatches, FhirStore
from adapters.store.common import is_resource_type
from river import events

REPLAYED = "replayed"


def make_handler(store: FhirStore) -> Handler:
    canceled = CanceledBatches(store)

    def handle(messages: list[Message], out: Output) -> None:
        by_batch: dict[str, list[tuple[bytes | None, events.TransformEvent]]] = defaultdict(list)
        for message, event in decoded(events.TRANSFORM, "load", messages, out):
            if canceled(event.batch_id):
                continue
            if not is_resource_type(event.fhir_object["resourceType"]):
                reason = f"not a FHIR resource type: {event.fhir_object['resourceType']!r}"
                out.send(
                    events.ERRORS,
                    message.key,
                    events.ErrorEvent(event.batch_id, event.resource_id, None, "load", reason),
                )
                continue
            by_batch[event.batch_id].append((message.key, event))
        for batch_id, items in by_batch.items():
            loaded = store.load(
                batch_id, [(event.resource_id, event.fhir_object) for _, event in items]
            )
            for (key, event), result in zip(items, loaded, strict=True):
                action = events.UPDATED if result.action == REPLAYED else result.action
                out.send(
                    events.LOAD,
                    key,
                    events.LoadEvent(
                        batch_id, event.resource_id, result.resource_type, result.id, action
                    ),
                )

    return handle


def main() -> None:
    settings, _, store = start("loader", with_engine=False)
    run_service(
        settings, ServiceConfig("loader", (events.TRANSFORM,), max_batch=1000), make_handler(store)
    )
