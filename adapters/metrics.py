"""The Prometheus metrics of FHIR River (prometheus_client), defined once here so that
the services, the adapters and the API count the same way.

    from adapters import metrics
    metrics.serve(settings, "loader")           # GET http://127.0.0.1:9103/metrics
    metrics.LOADED.labels(resource="example-patient", action="created").inc()

Names follow Prometheus' conventions: `fhir_river_` first, counters end in `_total`,
durations in `_seconds`, sizes in `_bytes`. Labels take few, bounded values: a service
name, a topic, a partition, a mapping resource id, an action, a route template, a
status code. Never a batch id, a primary key, a FHIR id or anything of a patient.

Each service serves its metrics on its own port (METRICS_PORT_EXTRACTOR, _TRANSFORMER,
_LOADER; 0: none) on METRICS_HOST; the API on METRICS_PORT_API, from gunicorn's master,
adding up its workers' (prometheus_client's multiprocess mode: api/metrics.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from river.settings import Settings

log = logging.getLogger("river")

# Seconds: from a millisecond (a small poll) to two minutes (a large extraction).
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

# --- the Kafka loop (adapters/kafka.py), every service ---------------------------------
CONSUMED = Counter(
    "fhir_river_messages_consumed_total",
    "Kafka messages a service consumed, per topic",
    ["service", "topic"],
)
PRODUCED = Counter(
    "fhir_river_messages_produced_total",
    "Kafka messages a service produced, per topic",
    ["service", "topic"],
)
POLL_SECONDS = Histogram(
    "fhir_river_poll_duration_seconds",
    "Time to process one poll of messages: handler, produce, commit, retries included",
    ["service"],
    buckets=DURATION_BUCKETS,
)
PHASE_SECONDS = Histogram(
    "fhir_river_poll_phase_duration_seconds",
    "Time of each phase of a poll: handle (the stage's own work), flush (waiting for"
    " Kafka's acknowledgements), commit",
    ["service", "phase"],
    buckets=DURATION_BUCKETS,
)
RETRIES = Counter(
    "fhir_river_retries_total",
    "Polls retried after a transient failure (Kafka, the store or the source unavailable)",
    ["service"],
)
GIVE_UPS = Counter(
    "fhir_river_give_ups_total",
    "Messages a service could not process, sent to the errors topic",
    ["service"],
)
CONSUMER_LAG = Gauge(
    "fhir_river_consumer_lag_messages",
    "Messages of a partition not yet committed by the service's consumer group",
    ["service", "topic", "partition"],
)

# --- instances, per mapping resource -----------------------------------------------------
EXTRACTED = Counter(
    "fhir_river_instances_extracted_total",
    "Instances the extractor read from a source and sent on (batches and live changes)",
    ["resource"],
)
TRANSFORMED = Counter(
    "fhir_river_instances_transformed_total",
    "Instances the transformer turned into valid FHIR resources (deletions included)",
    ["resource"],
)
LOADED = Counter(
    "fhir_river_instances_loaded_total",
    "Resources the loader wrote: created, updated, deleted, or replayed (a message"
    " written before, seen again: not counted again in its batch)",
    ["resource", "action"],
)
FAILED = Counter(
    "fhir_river_instances_failed_total",
    "Instances that failed, per stage (extract, transform, load)",
    ["resource", "stage"],
)

# --- the store and the live path -------------------------------------------------------
STORE_WRITE_SECONDS = Histogram(
    "fhir_river_store_write_duration_seconds",
    "Time of one write to the FHIR store (a bulk upsert, a deletion)",
    ["operation"],
    buckets=DURATION_BUCKETS,
)
LIVE_LATENCY_SECONDS = Histogram(
    "fhir_river_live_latency_seconds",
    "Live sources: from the change's record in Kafka Connect to its resource in the store",
    ["resource"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)

# --- the API (counted in each gunicorn worker, added up by the master) -----------------
API_REQUESTS = Counter(
    "fhir_river_api_requests_total",
    "API requests answered, per route template (not the path: no ids) and status",
    ["method", "route", "status"],
)
API_REQUEST_SECONDS = Histogram(
    "fhir_river_api_request_duration_seconds",
    "Time to answer an API request, per route template",
    ["method", "route"],
    buckets=DURATION_BUCKETS,
)


def port_of(settings: Settings, service: str) -> int:
    """The metrics port of `service` (api, extractor, transformer, loader); 0: none."""
    return {
        "api": settings.metrics_port_api,
        "extractor": settings.metrics_port_extractor,
        "transformer": settings.metrics_port_transformer,
        "loader": settings.metrics_port_loader,
    }.get(service, 0)


def serve(settings: Settings, service: str, registry: Any = None) -> None:
    """Serve GET /metrics of `service` on METRICS_HOST and its port, in a daemon thread
    (nothing when its port is 0). A port taken (a second copy of the service on one
    machine) is a warning, not a stop: the copy works, without metrics, and Prometheus
    goes on scraping the first."""
    port = port_of(settings, service)
    if not port:
        return
    kwargs = {"registry": registry} if registry is not None else {}
    try:
        start_http_server(port, addr=settings.metrics_host, **kwargs)
    except OSError as error:
        log.warning(
            "%s serves no metrics: %s:%d is taken (%s); set METRICS_PORT_%s to a free port",
            *(service, settings.metrics_host, port, error.strerror, service.upper()),
        )
        return
    log.info("%s metrics on http://%s:%d/metrics", service, settings.metrics_host, port)


def lag_reporter(service: str, names: dict[str, str]) -> Any:
    """A librdkafka `stats_cb` setting fhir_river_consumer_lag_messages from the
    consumer's statistics (every `statistics.interval.ms`): no request of its own.
    `names` maps Kafka's topic names to FHIR River's (without the prefix)."""
    seen: set[tuple[str, str]] = set()

    def report(stats_json: str) -> None:
        try:
            stats = json.loads(stats_json)
        except ValueError:
            return
        now: set[tuple[str, str]] = set()
        for kafka_topic, topic in stats.get("topics", {}).items():
            name = names.get(kafka_topic, kafka_topic)
            for partition, values in topic.get("partitions", {}).items():
                lag = values.get("consumer_lag", -1)
                if partition == "-1" or lag is None or lag < 0:
                    continue
                CONSUMER_LAG.labels(service, name, partition).set(lag)
                now.add((name, partition))
        for topic, partition in seen - now:  # not ours any more (a rebalance)
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(service, topic, partition)
        seen.clear()
        seen.update(now)

    return report
