"""The metrics (adapters/metrics.py, api/metrics.py): names by Prometheus' conventions,
labels with bounded values, lag from librdkafka's statistics, the produced count, the
API's requests by route template (never a path with ids), on no route of the API."""

from __future__ import annotations

import json

import pytest
from flask import Flask
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

from adapters import metrics
from adapters.kafka import Output
from api.metrics import instrument
from river import events
from river.errors import ConfigurationError
from river.settings import Settings

DEFINED = [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]
# What a label must never be: an id of a batch, an instance, a patient.
UNBOUNDED = {"batch", "batch_id", "id", "key", "primary_key", "patient", "path", "fhir_id"}


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("metric", DEFINED, ids=lambda m: m._name)
def test_names_follow_the_conventions(metric):
    assert metric._name.startswith("fhir_river_")
    if isinstance(metric, Counter):
        assert not metric._name.endswith("_total")  # the client adds it
    if isinstance(metric, Histogram):
        assert metric._name.endswith("_seconds")
    assert not UNBOUNDED & set(metric._labelnames), metric._labelnames
    assert len(metric._labelnames) <= 3


def test_settings_read_the_metrics_ports(monkeypatch):
    monkeypatch.setenv("METRICS_PORT_LOADER", "9200")
    settings = Settings.load(env_file=None)
    assert metrics.port_of(settings, "loader") == 9200
    assert metrics.port_of(settings, "api") == 9100
    monkeypatch.setenv("METRICS_PORT_API", "many")
    with pytest.raises(ConfigurationError, match="METRICS_PORT_API"):
        Settings.load(env_file=None)


def test_lag_comes_from_the_consumer_statistics_and_goes_with_the_partition():
    report = metrics.lag_reporter("unit-lag", {"pre-extract": "extract"})
    stats = {
        "topics": {
            "pre-extract": {
                "partitions": {
                    "0": {"consumer_lag": 7},
                    "1": {"consumer_lag": -1},  # not known yet
                    "-1": {"consumer_lag": 3},  # librdkafka's internal partition
                }
            }
        }
    }
    report(json.dumps(stats))
    lag = "fhir_river_consumer_lag_messages"
    assert value(lag, service="unit-lag", topic="extract", partition="0") == 7
    assert (
        REGISTRY.get_sample_value(
            lag, {"service": "unit-lag", "topic": "extract", "partition": "1"}
        )
        is None
    )
    report(json.dumps({"topics": {}}))  # the partition went to another copy
    assert REGISTRY.get_sample_value(lag, {"service": "unit-lag", "topic": "extract", "partition": "0"}) is None  # fmt: skip


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, topic, key, event) -> None:
        self.sent.append(topic)

    def flush(self) -> None:
        pass


def test_produced_messages_are_counted_once_kafka_has_them():
    out = Output(FakeProducer(), lambda: False, "unit-out")  # type: ignore[arg-type]
    error = events.ErrorEvent(None, None, None, "load", "x")
    for _ in range(3):
        out.send(events.ERRORS, None, error)
    name = "fhir_river_messages_produced_total"
    assert value(name, service="unit-out", topic=events.ERRORS) == 0
    out.flush()
    assert value(name, service="unit-out", topic=events.ERRORS) == 3
    out.flush()
    assert value(name, service="unit-out", topic=events.ERRORS) == 3


def test_api_requests_are_counted_by_route_template_never_by_path():
    app = Flask(__name__)
    instrument(app)
    app.add_url_rule("/unit/<item_id>", "item", lambda item_id: "ok")
    client = app.test_client()
    for _ in range(2):
        assert client.get("/unit/patient-123").status_code == 200
    assert client.get("/nowhere/patient-456").status_code == 404
    requests_total = "fhir_river_api_requests_total"
    assert value(requests_total, method="GET", route="/unit/<item_id>", status="200") == 2
    assert value(requests_total, method="GET", route="unmatched", status="404") >= 1
    count = "fhir_river_api_request_duration_seconds_count"
    assert value(count, method="GET", route="/unit/<item_id>") == 2
    exported = "\n".join(f"{s.name} {s.labels}" for m in REGISTRY.collect() for s in m.samples)
    assert "patient-123" not in exported and "patient-456" not in exported


def test_the_api_serves_no_metrics_route():
    """Metrics are on METRICS_PORT_API, not on the API's port (every route there needs
    a token: api/auth.py)."""
    from api.auth import ROUTE_ROLES

    assert not any("metrics" in str(route) for route in ROUTE_ROLES)
