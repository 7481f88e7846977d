"""The extractor: a `batch` event in, one `extract` event per instance out; and,
for the live sources LIVE_SOURCES names, connector messages in (extractor/live.py),
in a second loop of the same process (consumer group `fhir-river-extractor-live`),
so that a live change never waits behind a batch's extraction.

An instance whose row holds a value the driver cannot read, or whose event is over
KAFKA_MESSAGE_MAX_BYTES, is counted extracted and failed, named; the others go on.
A batch event that cannot be run at all fails its resource, with the reason.

It counts the resource's instances (the batch's `expected`) before the first
event, streams the rows with a server-side cursor and reports `extracted` as
it goes. A canceled batch stops; SIGTERM hands the event back (not committed)
so that the next extractor starts it again (downstream, ids and upserts make
the replay harmless, and the store does not count it twice).
"""

from __future__ import annotations

import logging
import time

from adapters import logs, metrics
from adapters.kafka import (
    EventTooLarge,
    Failure,
    Handler,
    Interrupted,
    Message,
    Output,
    ServiceConfig,
    decoded,
    ensure_topics,
    run_services,
    where,
)
from adapters.service import report_failures, start
from adapters.store import CanceledBatches, FhirStore, InstanceError, open_store
from extractor.live import LiveFollower
from river import events
from river.engine import Engine, unreadable_message
from river.errors import (
    InvalidMapping,
    RiverError,
    SourceError,
    SourceUnavailable,
    UnknownResource,
)
from river.live import live_sources

log = logging.getLogger("river")
PROGRESS_EVERY = 2000


def make_handler(engine: Engine, store: FhirStore) -> Handler:
    """The handler of `batch` events: each extracts one resource of a batch."""
    canceled = CanceledBatches(store)

    def handle(messages: list[Message], out: Output) -> None:
        for _, event in decoded(events.BATCH, "extract", messages, out):
            with logs.about(event.batch_id, event.resource_id):  # LOG_FORMAT=json's fields
                if not canceled(event.batch_id):
                    extract(engine, store, event, out, canceled)

    return handle


def extract(
    engine: Engine,
    store: FhirStore,
    event: events.BatchEvent,
    out: Output,
    canceled: CanceledBatches,
) -> None:
    batch_id, resource_id = event.batch_id, event.resource_id
    try:
        plan = engine.plan(resource_id)
        engine.transformer(resource_id)  # a mapping the transformer would refuse fails here, once
        expected = engine.count(resource_id, event.primary_key_values)
    except SourceUnavailable:
        raise  # the loop waits and retries
    except (UnknownResource, InvalidMapping, SourceError) as error:
        log.warning("batch %s, resource %s: %s", batch_id, resource_id, error)
        store.resource_failed(batch_id, resource_id, str(error))
        out.send(
            events.ERRORS,
            events.instance_key(resource_id, ""),
            _error(batch_id, resource_id, str(error)),
        )
        return
    store.set_expected(batch_id, resource_id, expected)
    log.info("batch %s, resource %s: extracting %d instance(s)", batch_id, resource_id, expected)
    extracted = 0
    counted = metrics.EXTRACTED.labels(resource_id)
    # Instances that fail here (a value the driver cannot read, an event over the size
    # limit) are counted extracted and failed: loaded + failed still reaches expected.
    failures: list[tuple[bytes | None, InstanceError]] = []
    read_at = time.time()  # before the query: its snapshot is no older (ExtractEvent.read_at)
    for record in engine.records(resource_id, event.primary_key_values):
        key = events.instance_key(resource_id, record.primary_key_value)
        extracted += 1
        problem = unreadable_message(record) if record.unreadable else None
        if problem is None:
            try:
                out.send(
                    events.EXTRACT,
                    key,
                    events.ExtractEvent(
                        batch_id,
                        resource_id,
                        plan.resource_type,
                        record.primary_key_value,
                        record.columns,
                        read_at=read_at,
                    ),
                )
            except EventTooLarge as error:
                problem = f"cannot send the instance: {error}"
        if problem is not None:
            failure = InstanceError(
                batch_id, resource_id, record.primary_key_value, "extract", problem
            )
            failures.append((key, failure))
        if extracted % PROGRESS_EVERY == 0:
            report_failures(store, out, failures)
            failures.clear()
            out.flush()  # counted once Kafka has them
            store.set_extracted(batch_id, resource_id, extracted)
            counted.inc(PROGRESS_EVERY)
            if out.stopping():
                raise Interrupted
            if canceled(batch_id):
                log.info(
                    "batch %s canceled: resource %s stops at %d", batch_id, resource_id, extracted
                )
                return
    report_failures(store, out, failures)
    out.flush()
    store.set_extracted(batch_id, resource_id, extracted)
    counted.inc(extracted % PROGRESS_EVERY)
    log.info("batch %s, resource %s: %d instance(s) extracted", batch_id, resource_id, extracted)


def _error(batch_id: str | None, resource_id: str | None, message: str) -> events.ErrorEvent:
    return events.ErrorEvent(batch_id, resource_id, None, "extract", message)


def failed_resource(store: FhirStore) -> Failure:
    """A batch event the extractor could not process fails its resource, with the
    reason, so that its batch ends (`failed`) instead of staying `running`; a
    connector message names where it was (its live batch goes on)."""

    def failure(message: Message, reason: str) -> events.ErrorEvent:
        if message.topic == events.BATCH:
            try:
                event = events.decode(events.BATCH, message.value)
            except events.BadEvent:
                pass
            else:
                store.resource_failed(event.batch_id, event.resource_id, reason)
                return _error(event.batch_id, event.resource_id, reason)
        return events.ErrorEvent(None, None, None, message.topic, f"{reason} ({where(message)})")

    return failure


def main() -> None:
    settings, engine, store = start("extractor")
    loops = [
        (
            ServiceConfig(
                "extractor",
                (events.BATCH,),
                max_batch=500,
                # A batch event may take minutes to extract: don't let the group evict us.
                max_poll_interval_ms=3_600_000,
                failure=failed_resource(store),
            ),
            make_handler(engine, store),
        )
    ]
    try:
        sources = live_sources(settings.live_sources, engine.mappings)
        if sources:
            # The live sources' changes run beside the batches, in a loop of their own
            # (consumer group fhir-river-extractor-live) with an engine and a store of
            # their own: a change never waits behind a batch's extraction.
            live_engine = Engine.from_settings(settings)
            live_store = open_store(settings.fhir_store_url, bulk_size=settings.mongo_bulk_size)
            live = LiveFollower(live_engine, live_store, sources)
            ensure_topics(settings, list(live.topics), settings.kafka_topic_partitions)
            live.start()
            config = ServiceConfig("extractor-live", (), external_topics=live.topics)
            loops.append((config, live.handle))
    except RiverError as error:  # a setting to fix: one sentence, no trace
        log.error("extractor cannot start: %s", error)
        raise SystemExit(1) from None
    run_services(settings, loops)
