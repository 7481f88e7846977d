"""What the services share: what they do at start (logging, settings, the engine,
the store), and what a message none of them can process becomes."""

from __future__ import annotations

import gc
import logging

from adapters import logs, metrics
from adapters.kafka import Failure, Message, Output, where
from adapters.store import FhirStore, InstanceError, open_store
from river import events
from river.engine import Engine
from river.errors import RiverError
from river.settings import Settings


def start(name: str, with_engine: bool = True) -> tuple[Settings, Engine | None, FhirStore]:
    """Settings, the mapping engine (unless the service needs none) and the store."""
    logs.configure_logging(name)  # LOG_LEVEL, LOG_FORMAT (adapters/logs.py)
    try:
        settings = Settings.load()
        engine = Engine.from_settings(settings) if with_engine else None
        store = open_store(
            settings.fhir_store_url,
            bulk_size=settings.mongo_bulk_size,
            fhir_server=settings.fhir_server,
        )
    except RiverError as error:  # a setting or a mapping to fix: one sentence, no trace
        logging.getLogger("river").error("%s cannot start: %s", name, error)
        raise SystemExit(1) from None
    metrics.serve(settings, name)  # GET /metrics on METRICS_HOST:METRICS_PORT_<NAME>
    # What start-up made lives as long as the process: keep the collector off it.
    gc.freeze()
    return settings, engine, store


def failed_instance(store: FhirStore, topic: str, stage: str) -> Failure:
    """A message of `topic` that its service could not process, as a failed instance
    of its batch at `stage`: the batch still completes, its errors list the instance,
    and a retry extracts it again. A message that is no event names where it was."""

    def failure(message: Message, reason: str) -> events.ErrorEvent:
        try:
            event = events.decode(topic, message.value)
        except events.BadEvent:
            return events.ErrorEvent(None, None, None, stage, f"{reason} ({where(message)})")
        error = InstanceError(
            event.batch_id, event.resource_id, event.primary_key_value, stage, reason
        )
        store.record_errors([error])
        metrics.FAILED.labels(event.resource_id, stage).inc()
        return error

    return failure


def report_failures(
    store: FhirStore, out: Output, failures: list[tuple[bytes | None, InstanceError]]
) -> None:
    """Instances that failed, each under its message key: counted as failed in their
    batches (which still complete, and whose retry runs them again), then said on
    `errors`."""
    if failures:
        store.record_errors([failure for _, failure in failures])
        for key, failure in failures:
            metrics.FAILED.labels(failure.resource_id, failure.stage).inc()
            out.send(events.ERRORS, key, failure)
