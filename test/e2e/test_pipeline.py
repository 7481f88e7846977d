"""End to end: batches through real Kafka into the PostgreSQL FHIR store, with the
MIMIC-III demo and the mimic-demo.json mappings, as a user drives it over HTTP."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
from confluent_kafka import Consumer, Producer

from river.concept_maps import ConceptMaps
from river.engine import Engine
from river.mapping import load_mappings
from river.scripts import ScriptRegistry
from river.validation import Validator
from test.conftest import CONCEPT_MAPS, MIMIC_DEMO_MAPPING, ROOT
from test.e2e.conftest import KAFKA
from test.integration.test_engine_mimic import (
    BAD_GENDER,
    BP,
    DIAGNOSIS,
    EXPECTED_COUNT_SQL,
    FEAT_6,
    MEDICATION_REQUEST,
)

RESOURCE_TAG = "http://terminology.arkhn.org/CodeSystem/resource"
EVERY_RESOURCE = sorted(EXPECTED_COUNT_SQL)  # every resource but bp, whose table is missing


@pytest.fixture(scope="module")
def expected(mimic_demo_url) -> dict[str, int]:
    with psycopg.connect(mimic_demo_url) as connection:
        return {r: connection.execute(sql).fetchone()[0] for r, sql in EXPECTED_COUNT_SQL.items()}


@pytest.fixture(scope="module")
def engine(mimic_demo_url):
    scripts = ScriptRegistry.default()
    engine = Engine(
        load_mappings(MIMIC_DEMO_MAPPING, scripts),
        scripts,
        ConceptMaps.from_files(CONCEPT_MAPS),
        Validator(),
        mimic_demo_url,
    )
    yield engine
    engine.close()


def resource_counts(state: dict) -> dict[str, dict]:
    return {r["resource_id"]: r for r in state["resources"]}


def stored(pipeline, resource_id: str) -> list[dict]:
    """Every resource the store holds for one mapping resource, read over HTTP."""
    resource_type = pipeline.store_type[resource_id]
    found, offset = [], 0
    while True:
        page = pipeline.request(
            "GET",
            f"/fhir/{resource_type}",
            params={"_tag": f"{RESOURCE_TAG}|{resource_id}", "_count": 1000, "_offset": offset},
        ).json()
        found += [entry["resource"] for entry in page.get("entry", [])]
        offset += 1000
        if offset >= page["total"]:
            return found


def without_last_updated(resource: dict) -> dict:
    return {**resource, "meta": {k: v for k, v in resource["meta"].items() if k != "lastUpdated"}}


@pytest.fixture(scope="module", autouse=True)
def types_of(pipeline, engine):
    pipeline.store_type = {r: engine.plan(r).resource_type for r in engine.mappings.resource_ids()}


def test_a_batch_over_every_resource(pipeline, expected, engine):
    batch_id = pipeline.batch(EVERY_RESOURCE)
    state = pipeline.wait(batch_id)
    assert state["status"] == "completed", [
        r for r in state["resources"] if r["status"] != "completed"
    ]
    counts = resource_counts(state)
    for resource_id, n in expected.items():
        c = counts[resource_id]
        assert (c["expected"], c["extracted"]) == (n, n), c
        if resource_id == BAD_GENDER:
            assert (c["failed"], c["loaded"]) == (n, 0), c
        else:
            assert (c["created"], c["updated"], c["failed"], c["transformed"]) == (n, 0, 0, n), c
    # The store holds exactly these, each as `river preview` makes it.
    for resource_id, n in expected.items():
        if resource_id == BAD_GENDER:
            assert stored(pipeline, resource_id) == []
            continue
        in_store = {r["id"]: without_last_updated(r) for r in stored(pipeline, resource_id)}
        assert len(in_store) == n
        previews = {
            o.resource["id"]: without_last_updated(o.resource) for o in engine.run(resource_id)
        }
        assert in_store == previews
    one = next(iter(stored(pipeline, DIAGNOSIS)))
    read = pipeline.request("GET", f"/fhir/Condition/{one['id']}")
    assert read.status_code == 200 and read.json() == one


def test_the_same_batch_again_updates_and_duplicates_nothing(pipeline, expected):
    batch_id = pipeline.batch(EVERY_RESOURCE)
    state = pipeline.wait(batch_id)
    assert state["status"] == "completed"
    for resource_id, c in resource_counts(state).items():
        n = expected[resource_id]
        if resource_id != BAD_GENDER:
            assert (c["created"], c["updated"], c["failed"]) == (0, n, 0), c
            total = pipeline.request(
                "GET",
                f"/fhir/{pipeline.store_type[resource_id]}",
                params={"_tag": f"{RESOURCE_TAG}|{resource_id}", "_summary": "count"},
            ).json()["total"]
            assert total == n


def test_a_batch_with_primary_key_values_and_preview_over_http(pipeline):
    batch_id = pipeline.batch([FEAT_6], primary_key_values={FEAT_6: [10006, 41976]})
    state = pipeline.wait(batch_id)
    assert resource_counts(state)[FEAT_6]["expected"] == 2
    assert resource_counts(state)[FEAT_6]["loaded"] == 2
    over_http = pipeline.request(
        "POST", "/preview", json={"resource_id": FEAT_6, "primary_key_values": ["10006", "41976"]}
    )
    assert over_http.status_code == 200
    cli = subprocess.run(
        [sys.executable, "-m", "river.cli", "preview", FEAT_6, "10006", "41976"],
        capture_output=True,
        text=True,
        env=pipeline.env,
        cwd=ROOT,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    strip = lambda answer: [without_last_updated(r) for r in answer["instances"]]  # noqa: E731
    assert (
        strip(over_http.json()) == strip(json.loads(cli.stdout))
        and len(strip(over_http.json())) == 2
    )


def test_bp_fails_with_its_reason(pipeline):
    state = pipeline.wait(pipeline.batch([BP]))
    assert state["status"] == "failed"
    assert "table public.labevents does not exist" in resource_counts(state)[BP]["error"]


def test_cancel_stops_the_work(pipeline):
    batch_id = pipeline.batch([MEDICATION_REQUEST])
    pipeline.wait_for_extraction(batch_id)
    canceled = pipeline.request("DELETE", f"/batches/{batch_id}")
    assert canceled.status_code == 200
    time.sleep(3)  # what was in flight settles
    before = pipeline.request("GET", f"/batches/{batch_id}").json()
    time.sleep(4)
    after = pipeline.request("GET", f"/batches/{batch_id}").json()
    assert after["status"] == "canceled"
    assert after["resources"] == before["resources"]  # counts stopped moving
    c = resource_counts(after)[MEDICATION_REQUEST]
    assert c["loaded"] < c["expected"] == 10398


def test_invalid_instances_are_listed_and_retry_loads_exactly_them(pipeline, tmp_path):
    batch_id = pipeline.batch([BAD_GENDER])
    state = pipeline.wait(batch_id)
    assert state["status"] == "completed"
    errors = pipeline.request("GET", f"/batches/{batch_id}/errors", params={"limit": 1000}).json()
    assert errors["total"] == 100
    assert all(
        "Patient.gender" in e["message"] and e["stage"] == "transform" for e in errors["items"]
    )
    assert len({e["primary_key_value"] for e in errors["items"]}) == 100
    # Fix the cause in the mapping, restart the transformer, retry.
    mapping = pipeline.workdir / "mimic-demo.json"
    mapping.write_text(mapping.read_text().replace('"not-a-valid-gender"', '"unknown"'))
    pipeline.restart("transformer")
    retried = pipeline.request("POST", f"/batches/{batch_id}/retry")
    assert retried.status_code == 200, retried.text
    state = pipeline.wait(retried.json()["batch_id"])
    c = resource_counts(state)[BAD_GENDER]
    assert (c["expected"], c["created"], c["failed"]) == (100, 100, 0)


@pytest.mark.parametrize("service", ["extractor", "transformer", "loader", "api"])
def test_sigkill_of_a_service_mid_batch_then_restart(pipeline, service):
    resources = [MEDICATION_REQUEST, DIAGNOSIS]
    batch_id = pipeline.batch(resources)
    pipeline.wait_for_extraction(batch_id, at_least=2000)
    pipeline.stop(service, sig=signal.SIGKILL)
    time.sleep(1)
    pipeline.start(service)
    state = pipeline.wait(batch_id)
    assert state["status"] == "completed"
    for c in state["resources"]:
        assert c["extracted"] == c["expected"]
        assert (c["created"] + c["updated"], c["failed"]) == (c["expected"], 0), c


def test_postgresql_stopped_for_20_seconds(pipeline):
    from test.e2e.stack import start_postgres, stop_postgres

    batch_id = pipeline.batch([MEDICATION_REQUEST])
    pipeline.wait_for_extraction(batch_id)
    stop_postgres()
    try:
        time.sleep(20)
    finally:
        start_postgres()
    state = pipeline.wait(batch_id, timeout=300)
    c = resource_counts(state)[MEDICATION_REQUEST]
    assert state["status"] == "completed"
    assert (c["created"] + c["updated"], c["failed"]) == (10398, 0)


def test_a_malformed_message_on_each_topic_goes_to_errors_and_the_rest_flows(pipeline):
    prefix = pipeline.env["KAFKA_TOPIC_PREFIX"]
    consumer = Consumer(
        {
            "bootstrap.servers": KAFKA,
            "group.id": f"e2e-errors-{uuid.uuid4().hex}",
            "auto.offset.reset": "latest",
        }
    )
    consumer.subscribe([prefix + "errors"])
    deadline = time.monotonic() + 30
    while not consumer.assignment():  # join before anything is produced
        consumer.poll(0.2)
        assert time.monotonic() < deadline
    producer = Producer({"bootstrap.servers": KAFKA})
    for topic in ("batch", "extract", "transform"):
        producer.produce(prefix + topic, b"{this is not json", b"malformed")
    producer.flush(10)
    stages = set()
    deadline = time.monotonic() + 60
    while stages != {"extract", "transform", "load"} and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None and message.key() == b"malformed":
            event = json.loads(message.value())
            assert "not JSON" in event["message"]
            stages.add(event["stage"])
    consumer.close()
    assert stages == {"extract", "transform", "load"}
    state = pipeline.wait(pipeline.batch([FEAT_6]))
    assert state["status"] == "completed"


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/batch", b"not json", 400),
        ("POST", "/batch", json.dumps({"resource_ids": "x"}).encode(), 400),
        ("POST", "/batch", json.dumps({"resource_ids": ["nope"]}).encode(), 400),
        ("POST", "/preview", json.dumps({"resource_id": FEAT_6}).encode(), 400),
        ("GET", "/batches/does-not-exist", None, 404),
    ],
)
def test_bad_requests_get_an_operation_outcome(pipeline, method, path, body, status):
    answer = pipeline.request(method, path, data=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == status
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["diagnostics"]
