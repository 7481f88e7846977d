"""With the local stack up: every process's metrics endpoint answers, a batch of the
example mapping grows the loader's loaded counter by exactly the batch's count,
Prometheus scrapes every target, and a service whose metrics stop makes
FhirRiverServiceDown fire (the shipped rule, with a short `for:`)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from cli.login import Login
from river.settings import Settings
from test.conftest import ROOT, postgres_url, scripts_settings
from test.utils.create_records_db import create_in_database

SETTINGS = Settings.load(ROOT / ".env")
PORTS = {
    "api": SETTINGS.metrics_port_api,
    "extractor": SETTINGS.metrics_port_extractor,
    "transformer": SETTINGS.metrics_port_transformer,
    "loader": SETTINGS.metrics_port_loader,
}
API = f"http://127.0.0.1:{SETTINGS.api_port}"
PROMETHEUS = "http://127.0.0.1:9090"
EXAMPLE = ["example-patient", "example-encounter"]


def scrape(service: str) -> dict[tuple[str, tuple], float]:
    text = requests.get(f"http://127.0.0.1:{PORTS[service]}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def loaded(resource_ids: list[str]) -> float:
    """Created and updated, as a batch counts them (a replay is not counted twice)."""
    return sum(
        value
        for (name, labels), value in scrape("loader").items()
        if name == "fhir_river_instances_loaded_total"
        and dict(labels)["resource"] in resource_ids
        and dict(labels)["action"] in ("created", "updated")
    )


@pytest.mark.parametrize("service", list(PORTS))
def test_every_metrics_endpoint_answers(service):
    answer = requests.get(f"http://127.0.0.1:{PORTS[service]}/metrics", timeout=5)
    assert answer.status_code == 200
    wanted = "fhir_river_api_requests" if service == "api" else "fhir_river_messages_consumed"
    assert f"# TYPE {wanted}" in answer.text


def test_a_batch_grows_the_loaded_counter_by_exactly_its_count():
    # The stack's source is empty after `make start` until `make run` loads the example
    # data: give it patients then (never replacing what a developer loaded).
    source_url = postgres_url("mimic")  # the stack's source (SOURCE_DB_NAME)
    with psycopg.connect(source_url) as source:
        empty = source.execute("SELECT NOT EXISTS (SELECT 1 FROM patients)").fetchone()[0]
    if empty:
        create_in_database(source_url, 20, seed=1, replace=True)
    token = Login(scripts_settings()).access_token()
    auth = {"Authorization": f"Bearer {token}"}
    before = loaded(EXAMPLE)
    answer = requests.post(f"{API}/batch", json={"resource_ids": EXAMPLE}, headers=auth, timeout=30)
    assert answer.status_code == 200, answer.text
    batch_id = answer.json()["batch_id"]
    deadline = time.monotonic() + 120
    while True:
        state = requests.get(f"{API}/batches/{batch_id}", headers=auth, timeout=10).json()
        if state["status"] in ("completed", "failed", "canceled"):
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    assert state["status"] == "completed", state
    count = sum(r["loaded"] for r in state["resources"])
    assert count > 0
    # The counter moves right after the store's write, which the batch's state reads.
    deadline = time.monotonic() + 10
    while loaded(EXAMPLE) - before < count and time.monotonic() < deadline:
        time.sleep(0.2)
    assert loaded(EXAMPLE) - before == count
    api = scrape("api")
    posted = ("fhir_river_api_requests_total", (("method", "POST"), ("route", "/batch"), ("status", "200")))  # fmt: skip
    assert api.get(posted, 0) >= 1
    assert not any(batch_id in str(labels) for _, labels in api)  # no batch id as a label


def test_prometheus_scrapes_every_target():
    deadline = time.monotonic() + 30
    while True:
        targets = requests.get(f"{PROMETHEUS}/api/v1/targets", timeout=5).json()["data"]
        active = {t["labels"]["component"]: t["health"] for t in targets["activeTargets"]}
        if set(active) == set(PORTS) and all(h == "up" for h in active.values()):
            break
        assert time.monotonic() < deadline, active
        time.sleep(1)
    rules = requests.get(f"{PROMETHEUS}/api/v1/rules", timeout=5).json()["data"]["groups"]
    names = {rule["name"] for group in rules for rule in group["rules"]}
    assert "FhirRiverServiceDown" in names and len(names) == 7


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is not installed")
def test_a_transformer_whose_metrics_stop_makes_service_down_fire(tmp_path: Path):
    """A transformer of its own (its own metrics port; it joins the stack's group for a
    moment, which at-least-once makes harmless), a Prometheus of its own with the shipped
    FhirRiverServiceDown rule at `for: 3s`: stopping the transformer fires the alert."""
    rules = (ROOT / "infra" / "prometheus" / "alerts.yml").read_text()
    down = rules.index("alert: FhirRiverServiceDown")
    end = rules.index("- alert:", down)
    short = rules[:down] + re.sub(r"for: \S+", "for: 3s", rules[down:end], count=1) + rules[end:]
    (tmp_path / "alerts.yml").write_text(short)
    metrics_port, prometheus_port = free_port(), free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{tmp_path / 'alerts.yml'}]\n"
        "scrape_configs:\n"
        "  - job_name: fhir-river\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{metrics_port}'],"
        " labels: {component: transformer}}]\n"
    )
    env = {
        **dict(__import__("os").environ),
        "METRICS_PORT_TRANSFORMER": str(metrics_port),
        "KAFKA_TOPIC_PREFIX": f"metrics-test-{metrics_port}-",  # topics of nobody's
    }
    log = open(tmp_path / "transformer.log", "wb")  # noqa: SIM115 (kept by the process)
    service = subprocess.Popen(
        [sys.executable, "-m", "transformer"], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    prometheus = subprocess.Popen(
        [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{prometheus_port}"
    try:

        def alerts() -> list[dict]:
            try:
                return requests.get(f"{url}/api/v1/alerts", timeout=2).json()["data"]["alerts"]
            except requests.RequestException:
                return []

        def target_up() -> bool:
            try:
                found = requests.get(f"{url}/api/v1/query", params={"query": "up"}, timeout=2)
                return any(r["value"][1] == "1" for r in found.json()["data"]["result"])
            except (requests.RequestException, KeyError):
                return False

        deadline = time.monotonic() + 60
        while not target_up():
            assert time.monotonic() < deadline, (tmp_path / "transformer.log").read_text()
            time.sleep(0.5)
        assert not [a for a in alerts() if a["labels"]["alertname"] == "FhirRiverServiceDown"]
        service.terminate()
        service.wait(30)
        stopped = time.monotonic()
        while True:
            firing = [
                a
                for a in alerts()
                if a["labels"]["alertname"] == "FhirRiverServiceDown" and a["state"] == "firing"
            ]
            if firing:
                break
            assert time.monotonic() - stopped < 20, alerts()
            time.sleep(0.5)
        assert firing[0]["labels"]["component"] == "transformer"
    finally:
        for process in (service, prometheus):
            if process.poll() is None:
                process.terminate()
                process.wait(30)
        log.close()
