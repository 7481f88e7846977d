"""The transformer: `extract` events in, valid FHIR resources out as `transform`
events; an instance that fails (script, cast, invalid FHIR) becomes an error of
its batch, and the others go on. An instance deleted from a live source passes
on as a deletion of its resource (its id, made by the same rule). Live changes
(`extract-live` to `transform-live`) run in a loop of their own."""

from __future__ import annotations

from adapters import metrics
from adapters.kafka import (
    EventTooLarge,
    Handler,
    Message,
    Output,
    ServiceConfig,
    decoded,
    run_services,
)
from adapters.service import failed_instance, report_failures, start
from adapters.store import CanceledBatches, FhirStore, InstanceError
from river import events
from river.engine import Engine
from river.errors import RiverError
from river.transform import timestamp


def make_handler(
    engine: Engine,
    store: FhirStore,
    source: str = events.EXTRACT,
    target: str = events.TRANSFORM,
) -> Handler:
    """The handler of `source`'s extract events, sending transform events to `target`
    (`extract` to `transform`, or the live path's `extract-live` to `transform-live`)."""
    canceled = CanceledBatches(store)

    def handle(messages: list[Message], out: Output) -> None:
        now = timestamp()
        failures: list[tuple[bytes | None, InstanceError]] = []
        transformed_per_resource: dict[str, int] = {}
        for message, event in decoded(source, "transform", messages, out):
            if canceled(event.batch_id):
                continue
            problem = None
            try:
                if event.deleted:  # nothing to transform: the loader deletes the resource
                    transformed = _deletion(engine, event)
                else:
                    outcome = engine.transform(event.resource_id, event.record, now)
                    problem = outcome.error
                    if problem is None:  # else there is no resource to send
                        transformed = events.TransformEvent(
                            event.batch_id,
                            event.resource_id,
                            outcome.resource,
                            primary_key_value=event.primary_key_value,
                            changed_at=event.changed_at,
                            read_at=event.read_at,
                        )
            except RiverError as error:  # unknown resource, invalid mapping
                problem = str(error)
            if problem is None:
                try:
                    out.send(target, message.key, transformed)
                except EventTooLarge as error:
                    problem = f"cannot send the resource: {error}"
                else:
                    resource_id = event.resource_id
                    transformed_per_resource[resource_id] = (
                        transformed_per_resource.get(resource_id, 0) + 1
                    )
            if problem is not None:
                failures.append(
                    (
                        message.key,
                        InstanceError(
                            event.batch_id,
                            event.resource_id,
                            event.primary_key_value,
                            "transform",
                            problem,
                        ),
                    )
                )
        report_failures(store, out, failures)
        for resource_id, count in transformed_per_resource.items():
            metrics.TRANSFORMED.labels(resource_id).inc(count)

    return handle


def _deletion(engine: Engine, event: events.ExtractEvent) -> events.TransformEvent:
    resource = {
        "resourceType": event.resource_type,
        "id": engine.fhir_id(event.resource_id, event.primary_key_value),
    }
    return events.TransformEvent(
        event.batch_id,
        event.resource_id,
        resource,
        deleted=True,
        primary_key_value=event.primary_key_value,
        changed_at=event.changed_at,
        read_at=event.read_at,
    )


def main() -> None:
    settings, engine, store = start("transformer")
    # 1,000 a poll, as the loader: each poll ends waiting for Kafka's acknowledgements
    # and a commit, time in which this, the slowest stage, does nothing. Live changes
    # have a loop of their own (group fhir-river-transformer-live): they never wait
    # behind a batch's instances.
    run_services(
        settings,
        [
            (
                ServiceConfig(
                    name,
                    (source,),
                    max_batch=1000,
                    failure=failed_instance(store, source, "transform"),
                ),
                make_handler(loop_engine, store, source, target),
            )
            for name, source, target, loop_engine in (
                ("transformer", events.EXTRACT, events.TRANSFORM, engine),
                # An engine of its own: the loops run in threads, and an engine's caches
                # are not made to be shared.
                (
                    "transformer-live",
                    events.EXTRACT_LIVE,
                    events.TRANSFORM_LIVE,
                    Engine.from_settings(settings),
                ),
            )
        ],
    )
