"""The Grafana dashboard of the Compose stack (docker/grafana/dashboards/fhir-river.json)
shows what the services export: it parses, each panel has a title and a query, and each
metric a query names is one of the metrics the code defines, read from its
prometheus_client registries (adapters/metrics.py, api/metrics.py's collector), so a
metric renamed in the code fails here instead of leaving an empty panel."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from test.conftest import ROOT

DASHBOARDS = ROOT / "docker" / "grafana" / "dashboards"
DASHBOARD = DASHBOARDS / "fhir-river.json"
# Series Prometheus itself adds to each scrape target: not the services' to export.
PROMETHEUS_SERIES = {"up"}
# The sample names a metric family of each type gives (prometheus_client's naming).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
            "group_left", "group_right", "inf", "nan", "atan2"}  # fmt: skip


def sample_names(families: Any) -> set[str]:
    """Every series name the metric families may expose, from their names and types."""
    names = set()
    for family in families:
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


def live_sources_families(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What the API's LiveSourcesCollector yields, one CDC source standing in for the
    live sources, Kafka Connect and PostgreSQL (it reads them at each scrape)."""
    from api import metrics as api_metrics
    from river.live import CDC
    from river.settings import Settings

    source = SimpleNamespace(name="cdc", kind=CDC, slot="slot", resource_ids=["patient"])
    monkeypatch.setattr(api_metrics, "live_sources", lambda *_: [source])
    state = SimpleNamespace(retained_bytes=1, lag_bytes=1, active=True)
    monkeypatch.setattr(api_metrics, "slot_state", lambda *_: state)
    url = SimpleNamespace(render_as_string=lambda **_: "postgresql://source")
    engine = SimpleNamespace(mappings=None, source=lambda _: SimpleNamespace(url=url))
    collector = api_metrics.LiveSourcesCollector(Settings(), engine)  # type: ignore[arg-type]
    status = {"connector": {"state": "RUNNING"}, "tasks": [{"id": 0, "state": "RUNNING"}]}
    collector.connect = SimpleNamespace(status=lambda _: status)  # type: ignore[assignment]
    families = list(collector.collect())
    assert families, "LiveSourcesCollector yielded nothing: the stand-ins no longer fit it"
    return families


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """The series the services and the API serve: the families registered by
    adapters/metrics.py (and prometheus_client's process collectors, which the services
    serve too), and the API's LiveSourcesCollector's."""
    from prometheus_client import REGISTRY

    import adapters.metrics  # noqa: F401  (registers FHIR River's metrics)

    names = sample_names(REGISTRY.collect())
    with pytest.MonkeyPatch.context() as monkeypatch:
        names |= sample_names(live_sources_families(monkeypatch))
    assert "fhir_river_instances_loaded_total" in names
    assert "fhir_river_store_write_duration_seconds_bucket" in names
    assert "fhir_river_connector_task_state" in names
    return names


# --------------------------------------------------------------------------- #
# Reading the dashboard
# --------------------------------------------------------------------------- #
def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those of collapsed rows included; rows themselves are not panels."""
    found = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def queries(panel: dict[str, Any]) -> list[str]:
    return [target.get("expr", "") for target in panel.get("targets", [])]


_VARIABLE = re.compile(r"\$(?:\{[^}]*\}|\w+)")  # Grafana's $__rate_interval, ${var}
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:])[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: its identifiers once strings, label
    matchers, ranges, grouping labels, functions and keywords are set aside."""
    text = _VARIABLE.sub("1m", expr)
    text = _STRING.sub('""', text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group(0)
        if re.match(r"\s*\(", text[match.end() :]) or name.lower() in KEYWORDS:
            continue  # a function or an aggregation, or a keyword
        names.add(name)
    return names


def unknown_metrics(panel: dict[str, Any], exported: set[str]) -> set[str]:
    return {
        name
        for expr in queries(panel)
        for name in metric_names(expr)
        if name not in exported and name not in PROMETHEUS_SERIES
    }


DASHBOARD_FILES = sorted(DASHBOARDS.glob("*.json"))


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- #
# The dashboard
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=[p.name for p in DASHBOARD_FILES])
def test_each_dashboard_parses(path: Path):
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["uid"] and data["title"] and panels(data)


def test_every_panel_has_a_title_and_a_query(dashboard: dict[str, Any]):
    ids = [panel["id"] for panel in dashboard["panels"]] + [
        p["id"] for row in dashboard["panels"] for p in row.get("panels", [])
    ]
    assert len(ids) == len(set(ids)), "two panels have the same id"
    for panel in panels(dashboard):
        assert panel.get("title"), f"panel {panel.get('id')} has no title"
        assert queries(panel) and all(queries(panel)), f"{panel['title']!r} has no query"


def test_every_metric_of_a_panel_is_exported(dashboard: dict[str, Any], exported: set[str]):
    unknown = {}
    for panel in panels(dashboard):
        for expr in queries(panel):
            assert metric_names(expr), f"{panel['title']!r}: {expr!r} names no metric"
        if missing := unknown_metrics(panel, exported):
            unknown[panel["title"]] = sorted(missing)
    assert not unknown, f"panels name metrics no service exports: {unknown}"


def test_the_dashboard_shows_each_part_the_operations_need(dashboard: dict[str, Any]):
    used = {name for panel in panels(dashboard) for e in queries(panel) for name in metric_names(e)}
    for needed in (
        "up",  # services up
        "fhir_river_instances_extracted_total",  # throughput per stage
        "fhir_river_instances_transformed_total",
        "fhir_river_instances_loaded_total",
        "fhir_river_consumer_lag_messages",
        "fhir_river_instances_failed_total",  # errors
        "fhir_river_poll_duration_seconds_bucket",  # stage latency
        "fhir_river_store_write_duration_seconds_bucket",
        "fhir_river_live_latency_seconds_bucket",  # change to store
        "fhir_river_connector_task_state",
        "fhir_river_replication_slot_lag_bytes",
    ):
        assert needed in used, f"no panel shows {needed}"


def test_the_panels_query_the_provisioned_datasource(dashboard: dict[str, Any]):
    provisioned = (ROOT / "docker/grafana/provisioning/datasources/prometheus.yml").read_text()
    uid = re.search(r"^\s*uid:\s*(\S+)", provisioned, re.M)
    assert uid
    expected = {"type": "prometheus", "uid": uid.group(1)}
    for panel in panels(dashboard):
        for target in [panel, *panel["targets"]]:
            assert target["datasource"] == expected, panel["title"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_parses_every_query(dashboard: dict[str, Any], tmp_path: Path):
    """Each query, as a recording rule (Grafana's $__rate_interval as 1m), parses."""
    rules = [
        {"record": f"dashboard:query:{n}", "expr": _VARIABLE.sub("1m", expr)}
        for n, expr in enumerate(e for panel in panels(dashboard) for e in queries(panel))
    ]
    path = tmp_path / "queries.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    run = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr


# --------------------------------------------------------------------------- #
# The check itself
# --------------------------------------------------------------------------- #
def test_metric_names_reads_promql():
    expr = (
        "histogram_quantile(0.95, sum by (le, service) (rate(fhir_river_poll_duration_seconds_bucket"
        '{service=~"loader|transformer", phase!="x"}[$__rate_interval])))'
        " / ignoring (slot) group_left sum without (le) (fhir_river_a offset 5m) > bool 1e3"
        ' or on (resource) vector(0) and up{job="fhir-river"} unless label_replace(b, "d", "$1", "e", "(.*)")'
    )
    assert metric_names(expr) == {
        "fhir_river_poll_duration_seconds_bucket", "fhir_river_a", "up", "b"
    }  # fmt: skip


def test_an_unknown_metric_is_found(exported: set[str]):
    panel = {
        "title": "renamed",
        "targets": [
            {"expr": "sum(rate(fhir_river_instances_loaded_total[5m]))"},
            {"expr": "sum by (service) (rate(fhir_river_instances_lodaed_total[5m]))"},
            {"expr": 'up{job="fhir-river"}'},
        ],
    }
    assert unknown_metrics(panel, exported) == {"fhir_river_instances_lodaed_total"}
