"""The extractor: a `batch` event in, one `extract` event per instance out; and,
for the live sources LIVE_SOURCES names, connector messages in (extractor/live.py).

It counts the resource's instances (the batch's `expected`) before the first
event, streams the rows with a server-side cursor and reports `extracted` as
it goes. A canceled batch stops; SIGTERM hands the event back (not committed)
so that the next extractor starts it again (downstream, ids and upserts make
the replay harmless, and the store does not count it twice).
"""

from __future__ import annotations

import logging

from adapters.kafka import (
    Handler,
    Interrupted,
    Message,
    Output,
    ServiceConfig,
    decoded,
    ensure_topics,
    run_service,
)
from adapters.service import start
from adapters.store import CanceledBatches, FhirStore
from extractor.live import LiveFollower
from river import events
from river.engine import Engine
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


def make_handler(engine: Engine, store: FhirStore, live: LiveFollower | None = None) -> Handler:
    canceled = CanceledBatches(store)

    def handle(messages: list[Message], out: Output) -> None:
        batches = [m for m in messages if m.topic == events.BATCH]
        for _, event in decoded(events.BATCH, "extract", batches, out):
            if not canceled(event.batch_id):
                extract(engine, store, event, out, canceled)
        if live is not None and len(batches) < len(messages):
            live.handle([m for m in messages if m.topic != events.BATCH], out)

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
    for record in engine.records(resource_id, event.primary_key_values):
        key = events.instance_key(resource_id, record.primary_key_value)
        out.send(
            events.EXTRACT,
            key,
            events.ExtractEvent(
                batch_id, resource_id, plan.resource_type, record.primary_key_value, record.columns
            ),
        )
        extracted += 1
        if extracted % PROGRESS_EVERY == 0:
            out.flush()  # counted once Kafka has them
            store.set_extracted(batch_id, resource_id, extracted)
            if out.stopping():
                raise Interrupted
            if canceled(batch_id):
                log.info(
                    "batch %s canceled: resource %s stops at %d", batch_id, resource_id, extracted
                )
                return
    out.flush()
    store.set_extracted(batch_id, resource_id, extracted)
    log.info("batch %s, resource %s: %d instance(s) extracted", batch_id, resource_id, extracted)


def _error(batch_id: str | None, resource_id: str | None, message: str) -> events.ErrorEvent:
    return events.ErrorEvent(batch_id, resource_id, None, "extract", message)


def main() -> None:
    settings, engine, store = start("extractor")
    try:
        live = LiveFollower(engine, store, live_sources(settings.live_sources, engine.mappings))
        ensure_topics(settings, list(live.topics), settings.kafka_topic_partitions)
        live.start()
    except RiverError as error:  # a setting to fix: one sentence, no trace
        log.error("extractor cannot start: %s", error)
        raise SystemExit(1) from None
    config = ServiceConfig(
        "extractor",
        (events.BATCH,),
        external_topics=live.topics,
        # A batch event may take minutes; live changes come many at a time.
        max_batch=500,
        max_poll_interval_ms=3_600_000,
    )
    run_service(settings, config, make_handler(engine, store, live))
