"""What the API's requests share within one process: settings, the mapping
engine, the FHIR store, the Kafka producer, made once (a preview must answer
well under a second: nothing is built per request).

The producer and the Kafka admin client are made on first use rather than at
start: librdkafka's threads do not survive a fork, and an API whose Kafka is
down still answers previews, reads and /health.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata
from flask import current_app

from adapters.connect import Connect
from adapters.kafka import EventProducer, KafkaUnavailable, Refusals, kafka_config
from adapters.store import FhirStore
from river.engine import Engine
from river.errors import RiverError
from river.live import LiveSource, live_sources
from river.secrets import Secrets, url_password
from river.settings import Settings

log = logging.getLogger("river.api")


class Services:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        store: FhirStore,
        producer: EventProducer | None = None,
        produce_timeout: float = 10.0,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.produce_timeout = produce_timeout
        self._producer = producer
        self._own_producer = producer is None
        self._admin: AdminClient | None = None
        self._refusals = Refusals(settings)  # the admin client's: /health names a refusal
        self._live: dict[str, LiveSource] | None = None
        self._connect: Connect | None = None
        self._lock = threading.Lock()
        # Masked in the API's log lines (river/secrets.py); answers are never rewritten.
        self.secrets = Secrets(_secrets_of(settings, engine))

    def live_source(self, batch_id: str) -> LiveSource | None:
        """The live source (LIVE_SOURCES) whose work runs under `batch_id`, if any."""
        return self._live_sources().get(batch_id)

    def live_sources(self) -> list[LiveSource]:
        """The live sources LIVE_SOURCES names whose mappings are loaded."""
        return list(self._live_sources().values())

    def _live_sources(self) -> dict[str, LiveSource]:
        with self._lock:
            if self._live is None:
                try:
                    found = live_sources(self.settings.live_sources, self.engine.mappings)
                # A source whose mapping is not loaded is skipped (the extractor warns);
                # a setting that cannot be meant stops the extractor, which says why.
                except RiverError as error:
                    log.warning("%s", error)
                    found = []
                self._live = {source.batch_id: source for source in found}
            return self._live

    def connect(self) -> Connect:
        """One Kafka Connect client (its HTTP session) for every request of the API."""
        with self._lock:
            if self._connect is None:
                self._connect = Connect(self.settings.kafka_connect_url, timeout=2.0)
            return self._connect

    def kafka_admin(self) -> AdminClient:
        with self._lock:
            if self._admin is None:
                self._admin = AdminClient(
                    kafka_config(self.settings, logger=log, error_cb=self._refusals)
                )
            return self._admin

    def producer(self) -> EventProducer:
        with self._lock:
            if self._producer is None:
                timeout_ms = int(self.produce_timeout * 1000)
                # A message Kafka does not take within the timeout fails (and the batch
                # is canceled) rather than sitting in librdkafka's queue and reaching
                # the extractor minutes after we told the user the batch failed.
                self._producer = EventProducer(
                    self.settings,
                    **{"message.timeout.ms": timeout_ms, "logger": log},
                )
            return self._producer

    def produced_badly(self) -> None:
        """Forget a producer of ours that failed: the next batch starts a fresh one."""
        with self._lock:
            if self._own_producer:
                self._producer = None

    def kafka_metadata(self, timeout: float) -> ClusterMetadata:
        """A metadata request to the brokers; KafkaUnavailable if none answers in time."""
        admin = self.kafka_admin()
        try:
            return admin.list_topics(timeout=timeout)
        except KafkaException as error:
            admin.poll(0)  # serves the error callbacks librdkafka queued meanwhile
            self._refusals.check()  # KafkaRefused: our credentials, said as such
            raise KafkaUnavailable(
                f"Kafka at {self.settings.kafka_bootstrap_servers} did not answer within "
                f"{timeout:g} s: {error.args[0] if error.args else error}"
            ) from None


def services() -> Services:
    return current_app.extensions["river"]


def warm_up(engine: Engine) -> None:
    """Bind every resource's transformer, build the validator's checks and read the
    source tables' metadata now, so that the first preview is as fast as the next.

    Runs in a background thread: a source database that is down must not keep the
    API from starting (its previews then say so)."""
    resource_ids = engine.mappings.resource_ids()
    types = set()
    for resource_id in resource_ids:
        try:
            engine.transformer(resource_id)
            types.add(engine.plan(resource_id).resource_type)
        except Exception as error:  # an invalid mapping: its previews report it
            log.debug("warm-up of %s: %s", resource_id, error)
    warm = getattr(engine.validator, "warm", None)
    if warm is not None:
        try:
            warm(types)
        except Exception as error:
            log.debug("warm-up of the validator: %s", error)
    for resource_id in resource_ids:
        try:
            engine.source(resource_id).query(engine.plan(resource_id))
        except Exception as error:  # unreachable database, missing table: previews say so
            log.debug("warm-up of %s's source: %s", resource_id, error)


def _secrets_of(settings: Settings, engine: Engine) -> list[str | None]:
    found: list[str | None] = [
        url_password(settings.source_db_url),
        url_password(settings.fhir_store_url),
        settings.pyrog_password,
        settings.kafka_sasl_password,
        settings.kafka_ssl_key_password,
    ]
    if not settings.source_db_url:
        # The mappings' credentials are in use only when SOURCE_DB_URL does not
        # override them (masking an unused "test" would garble every answer).
        for mapping in getattr(engine.mappings, "mappings", []):
            credential: Any = getattr(mapping, "credential", None)
            found.append(getattr(credential, "password", None))
    return found
