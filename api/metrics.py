"""The API's Prometheus metrics, on their own port (METRICS_HOST:METRICS_PORT_API,
127.0.0.1:9100), never on the public API port: every route of port 3000 keeps its
token check, and Prometheus needs none. Nothing here carries patient data: routes are
templates (`/batches/<batch_id>`), never paths.

- requests, per method, route template and status, and their durations
  (adapters/metrics.py: fhir_river_api_*), counted in each gunicorn worker and added up
  by the master through prometheus_client's multiprocess mode (`serve_gunicorn`);
- the live sources, read at each scrape by `LiveSourcesCollector`: each connector's and
  task's state in Kafka Connect, each CDC replication slot's WAL.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from adapters import metrics
from adapters.connect import Connect, ConnectorError, slot_state
from river.engine import Engine
from river.errors import RiverError
from river.live import CDC, live_sources
from river.settings import Settings

log = logging.getLogger("river.api")
TASK_STATES = ("RUNNING", "FAILED", "PAUSED", "UNASSIGNED", "RESTARTING", "STOPPED")


def instrument(app: Flask) -> None:
    """Count and time every request of `app` (register before the token check, so that
    401s are counted and timed too)."""

    @app.before_request
    def _started() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _answered(response: Response) -> Response:
        rule = request.url_rule
        route = rule.rule if rule is not None else "unmatched"  # never the path: it has ids
        metrics.API_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        started = g.get("metrics_started")
        if started is not None:
            metrics.API_REQUEST_SECONDS.labels(request.method, route).observe(
                time.perf_counter() - started
            )
        return response


def remove_multiprocess(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def serve_gunicorn(settings: Settings, engine: Engine) -> None:
    """In gunicorn's master (its `when_ready` hook): serve the workers' metrics added
    up, and the live sources', on METRICS_HOST:METRICS_PORT_API."""
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(LiveSourcesCollector(settings, engine))
    metrics.serve(settings, "api", registry)


def serve_single(settings: Settings, engine: Engine) -> None:
    """One process (Flask's development server): its own metrics and the live sources'."""
    from prometheus_client import REGISTRY

    REGISTRY.register(LiveSourcesCollector(settings, engine))
    metrics.serve(settings, "api")


def worker_exited(pid: int) -> None:
    """gunicorn's `child_exit` hook: a dead worker's gauges go (its counters stay)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


class LiveSourcesCollector(Collector):
    """At each scrape: the live sources' connectors and tasks as Kafka Connect reports
    them, and their replication slots as PostgreSQL does. A part that cannot be reached
    says so in a metric (fhir_river_connect_up, no slot series) instead of failing the
    scrape."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.connect = Connect(settings.kafka_connect_url, timeout=2.0)

    def describe(self) -> list[Any]:
        return []  # collected on demand: no describe-time requests

    def collect(self) -> Iterator[Any]:
        try:
            sources = live_sources(self.settings.live_sources, self.engine.mappings)
        except RiverError:
            sources = []
        if not sources:
            return
        connect_up = GaugeMetricFamily(
            "fhir_river_connect_up", "1 when Kafka Connect answers FHIR River's requests"
        )
        connector_state = GaugeMetricFamily(
            "fhir_river_connector_state",
            "A live source's connector: 1 for its current state (MISSING: not in Connect)",
            labels=["connector", "state"],
        )
        task_state = GaugeMetricFamily(
            "fhir_river_connector_task_state",
            "A live source connector's task: 1 for its current state",
            labels=["connector", "task", "state"],
        )
        reachable = 1
        for source in sources:
            try:
                status = self.connect.status(source.name)
            except ConnectorError:
                reachable = 0
                break
            if status is None:
                connector_state.add_metric([source.name, "MISSING"], 1)
                continue
            connector_state.add_metric(
                [source.name, status.get("connector", {}).get("state", "UNASSIGNED")], 1
            )
            for task in status.get("tasks", []):
                state = task.get("state", "UNASSIGNED")
                for known in TASK_STATES:
                    task_state.add_metric(
                        [source.name, str(task.get("id")), known], 1 if state == known else 0
                    )
        connect_up.add_metric([], reachable)
        yield connect_up
        yield connector_state
        yield task_state
        yield from self._slots([s for s in sources if s.kind == CDC and s.slot])

    def _slots(self, sources: list[Any]) -> Iterator[Any]:
        if not sources:
            return
        limit = GaugeMetricFamily(
            "fhir_river_replication_slot_max_bytes",
            "REPLICATION_SLOT_MAX_BYTES: the WAL a slot may keep before it is a problem",
        )
        limit.add_metric([], self.settings.replication_slot_max_bytes)
        retained = GaugeMetricFamily(
            "fhir_river_replication_slot_retained_bytes",
            "WAL the source server keeps for a live source's replication slot",
            labels=["slot", "connector"],
        )
        lag = GaugeMetricFamily(
            "fhir_river_replication_slot_lag_bytes",
            "WAL written since the connector last confirmed (its lag)",
            labels=["slot", "connector"],
        )
        active = GaugeMetricFamily(
            "fhir_river_replication_slot_active",
            "1 when a connector task reads the replication slot",
            labels=["slot", "connector"],
        )
        for source in sources:
            try:
                url = self.engine.source(source.resource_ids[0]).url
                state = slot_state(url.render_as_string(hide_password=False), source.slot)
            except (ConnectorError, RiverError) as error:
                log.warning("replication slot %s: %s", source.slot, error)
                continue
            if state is None:  # made by the connector's first start
                continue
            retained.add_metric([source.slot, source.name], state.retained_bytes)
            lag.add_metric([source.slot, source.name], state.lag_bytes)
            active.add_metric([source.slot, source.name], 1 if state.active else 0)
        yield from (limit, retained, lag, active)
