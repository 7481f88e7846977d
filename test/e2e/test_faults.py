"""Every batch ends and every failure is named, on data as messy as a hospital's.

The pipeline runs the example mapping (Patient, Encounter, Condition) over a scratch
source of synthetic MIMIC rows that each test spoils in one way, then puts back. Each
test asserts that the batch ends, with `loaded + failed == expected` per resource,
and that each failed instance is named: its primary key value, the stage, and what
is wrong (the column, or the size and the limit)."""

from __future__ import annotations

import base64
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer

from river import events
from test.conftest import kafka_client, postgres_url, scratch_database, wait_for
from test.e2e.conftest import Pipeline, example_pipeline
from test.e2e.stack import start_stack, stop_part
from test.utils.create_records_db import create_in_database

RESOURCES = ["example-patient", "example-encounter", "example-condition"]
LIMIT = 1_000_000  # KAFKA_MESSAGE_MAX_BYTES of this pipeline: small, to be reached


@pytest.fixture(scope="module")
def messy(tmp_path_factory, topic_prefix) -> Iterator[tuple[Pipeline, str, str]]:
    tmp = tmp_path_factory.mktemp("faults")
    with (
        scratch_database("river_faults_source") as source_url,
        scratch_database("river_faults_store") as store_url,
    ):
        # Enough for a batch to be in the middle of its work for a few seconds.
        create_in_database(source_url, 500, seed=16, replace=True)
        pipeline = example_pipeline(tmp, topic_prefix, store_url, source_url)
        pipeline.env["KAFKA_MESSAGE_MAX_BYTES"] = str(LIMIT)
        with pipeline:
            yield pipeline, source_url, store_url


@contextmanager
def spoiled(source_url: str, *statements: str, restore: list[str]) -> Iterator[None]:
    """The source with `statements` applied, put back by `restore` afterwards."""
    with psycopg.connect(source_url, autocommit=True) as db:
        for statement in statements:
            db.execute(statement)
    try:
        yield
    finally:
        with psycopg.connect(source_url, autocommit=True) as db:
            for statement in restore:
                db.execute(statement)


def query(source_url: str, sql: str, *params: Any) -> list[tuple]:
    with psycopg.connect(source_url) as db:
        return db.execute(sql, params).fetchall()


def ended_exactly(pipeline: Pipeline, batch_id: str) -> dict[str, dict]:
    """The batch once ended: every resource completed, loaded + failed == expected."""
    state = pipeline.wait(batch_id, timeout=180)
    assert state["status"] == "completed", state
    progress = {r["resource_id"]: r for r in state["resources"]}
    for resource in progress.values():
        assert resource["loaded"] + resource["failed"] == resource["expected"], resource
    return progress


def errors_of(pipeline: Pipeline, batch_id: str) -> list[dict]:
    answer = pipeline.request("GET", f"/batches/{batch_id}/errors", params={"limit": 1000})
    return answer.json()["items"]


def test_values_python_cannot_hold_fail_their_instances_named(messy):
    pipeline, source, _ = messy
    (h1, t1), (h2, t2) = query(
        source, "SELECT hadm_id, dischtime::text FROM admissions ORDER BY hadm_id LIMIT 2"
    )
    (a2,) = query(source, "SELECT admittime::text FROM admissions WHERE hadm_id = %s", h2)[0]
    conditions_of_h1 = query(
        source, "SELECT row_id FROM diagnoses_icd WHERE hadm_id = %s ORDER BY row_id", h1
    )
    assert conditions_of_h1
    with spoiled(
        source,
        f"UPDATE admissions SET dischtime = 'infinity' WHERE hadm_id = {h1}",
        f"UPDATE admissions SET admittime = '10000-01-01' WHERE hadm_id = {h2}",
        restore=[
            f"UPDATE admissions SET dischtime = '{t1}' WHERE hadm_id = {h1}",
            f"UPDATE admissions SET admittime = '{a2}' WHERE hadm_id = {h2}",
        ],
    ):
        batch_id = pipeline.batch(RESOURCES)
        progress = ended_exactly(pipeline, batch_id)
    assert progress["example-patient"]["failed"] == 0
    assert progress["example-encounter"]["failed"] == 2
    assert progress["example-condition"]["failed"] == len(conditions_of_h1)
    errors = errors_of(pipeline, batch_id)
    by_resource: dict[str, dict[Any, str]] = {}
    for error in errors:
        assert error["stage"] == "extract", error
        by_resource.setdefault(error["resource_id"], {})[error["primary_key_value"]] = error[
            "message"
        ]
    encounters = by_resource["example-encounter"]
    assert set(encounters) == {h1, h2}
    assert "column admissions.dischtime: timestamp infinity" in encounters[h1]
    assert "column admissions.admittime: a timestamp outside the years 1 to 9999" in encounters[h2]
    assert "10000" not in encounters[h2]  # the value itself is not quoted
    assert set(by_resource["example-condition"]) == {row_id for (row_id,) in conditions_of_h1}


@pytest.mark.parametrize(
    ("path", "key"),
    [("/batch", "1.0e999"), ("/batch", "1.5"), ("/preview", "1000000.5"), ("/preview", "abc")],
)
def test_a_key_that_is_not_of_the_key_type_is_a_400_naming_it(messy, path, key):
    pipeline, _, _ = messy
    body: dict[str, Any] = {"primary_key_values": [key]}
    if path == "/batch":
        body["resource_ids"] = ["example-patient"]
    else:
        body["resource_id"] = "example-patient"
    answer = pipeline.request("POST", path, json=body)
    assert answer.status_code == 400, answer.text
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    text = outcome["issue"][0]["diagnostics"]
    assert f"'{key}' cannot be read as the type of column subject_id" in text, text


def test_a_batch_event_with_a_bad_key_ends_its_batch_naming_the_value(messy):
    """What no API checked (an event from another producer, a live change): the
    resource fails with the reason, and the batch ends."""
    pipeline, _, _ = messy
    batch_id = f"bad-key-{os.getpid()}"
    pipeline.store.create_batch(batch_id, ["example-patient"])
    producer = Producer(kafka_client())
    event = events.BatchEvent(batch_id, "example-patient", ["10006", "1.0e999"])
    producer.produce(pipeline.env["KAFKA_TOPIC_PREFIX"] + "batch", events.encode(event))
    producer.flush(10)
    state = pipeline.wait(batch_id, timeout=60)
    assert state["status"] == "failed", state
    assert (
        "'1.0e999' cannot be read as the type of column subject_id"
        in (state["resources"][0]["error"])
    )


def incompressible(n_bytes: int) -> str:
    return base64.b64encode(os.urandom(n_bytes * 3 // 4)).decode()


def test_oversize_instances_fail_named_and_smaller_large_ones_flow(messy):
    pipeline, source, _ = messy
    # The two most used codes of the source: one gets a title over the limit, one under.
    (big, n_big), (large, n_large) = query(
        source,
        "SELECT icd9_code, count(*) FROM diagnoses_icd GROUP BY icd9_code"
        " ORDER BY count(*) DESC, icd9_code LIMIT 2",
    )
    titles = dict(query(source, "SELECT icd9_code, long_title FROM d_icd_diagnoses"))
    large_title = incompressible(600_000)
    with spoiled(
        source,
        f"UPDATE d_icd_diagnoses SET long_title = '{incompressible(1_500_000)}'"
        f" WHERE icd9_code = '{big}'",
        f"UPDATE d_icd_diagnoses SET long_title = '{large_title}' WHERE icd9_code = '{large}'",
        restore=[
            f"UPDATE d_icd_diagnoses SET long_title = '{titles[code]}' WHERE icd9_code = '{code}'"
            for code in (big, large)
        ],
    ):
        batch_id = pipeline.batch(["example-condition"])
        progress = ended_exactly(pipeline, batch_id)
    assert progress["example-condition"]["failed"] == n_big
    errors = errors_of(pipeline, batch_id)
    assert len(errors) == n_big
    for error in errors:
        assert error["stage"] == "extract"
        assert "over the limit of 1,000,000 bytes (KAFKA_MESSAGE_MAX_BYTES)" in error["message"]
        assert "its extract event is 1,500," in error["message"]  # the size, in bytes
    displays = [
        r["code"]["coding"][0].get("display")
        for r in pipeline.stored("Condition", "example-condition")
        if r["code"]["coding"][0]["code"] == large
    ]
    assert len(displays) == n_large and all(d == large_title for d in displays)


def test_a_killed_service_is_named_by_health_then_found_again(messy):
    """Kafka drops a member whose heartbeats stop (10 s): /health then names it."""
    pipeline, _, _ = messy
    assert pipeline.request("GET", "/health").status_code == 200
    pipeline.stop("transformer", sig=signal.SIGKILL)
    try:

        def named() -> dict | None:
            answer = pipeline.request("GET", "/health")
            return answer.json() if answer.status_code == 503 else None

        health = wait_for("/health naming the killed transformer", named, timeout=40)
        assert health["services"]["transformer"] == {"ok": False, "processes": 0}
        assert health["services"]["loader"]["ok"]
        assert len(health["problems"]) == 1
        assert health["problems"][0].startswith("not running: transformer")
    finally:
        pipeline.start("transformer")
    wait_for(
        "/health ok once the transformer is back",
        lambda: pipeline.request("GET", "/health").status_code == 200,
        timeout=40,
    )


def test_a_retry_of_70000_failed_instances_runs_exactly_them(messy):
    """More keys than a statement can bind (65,535): the retry's extraction reads them
    in chunks, and its batch ends with each of them counted once."""
    pipeline, source, _ = messy
    first = 20_000_000
    with spoiled(
        source,
        "INSERT INTO patients (row_id, subject_id, gender, dob, expire_flag)"
        f" SELECT i, i, 'F', 'infinity', 0 FROM generate_series({first}, {first + 69_999}) i",
        restore=[f"DELETE FROM patients WHERE subject_id >= {first}"],
    ):
        (good,) = query(source, f"SELECT count(*) FROM patients WHERE subject_id < {first}")[0]
        batch_id = pipeline.batch(["example-patient"])
        progress = ended_exactly(pipeline, batch_id)["example-patient"]
        assert (progress["loaded"], progress["failed"]) == (good, 70_000)
        answer = pipeline.request("POST", f"/batches/{batch_id}/retry")
        assert answer.status_code == 200, answer.text
        assert answer.json()["instances"] == {"example-patient": 70_000}
        retry = answer.json()["batch_id"]
        progress = ended_exactly(pipeline, retry)["example-patient"]
    assert (progress["expected"], progress["loaded"], progress["failed"]) == (70_000, 0, 70_000)
    total = pipeline.request("GET", f"/batches/{retry}/errors", params={"limit": 1}).json()
    assert total["total"] == 70_000
    assert "column patients.dob: timestamp infinity" in total["items"][0]["message"]


def store_read_only(store_url: str, read_only: bool) -> None:
    """The FHIR store's database read-only (or writable again) for every session, as
    after a failover to a replica: its sessions are ended, and come back as it is."""
    database = store_url.rsplit("/", 1)[1]
    with psycopg.connect(postgres_url(), autocommit=True) as admin:
        setting = "SET default_transaction_read_only = on" if read_only else "RESET ALL"
        admin.execute(f'ALTER DATABASE "{database}" {setting}')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            [database],
        )


def test_the_store_read_only_for_20_seconds_mid_batch(messy):
    """Every write is refused (25006) for 20 s: the loader and the extractor wait and
    retry, and the batch completes with each instance counted once."""
    pipeline, source, store = messy
    expected = {
        "example-patient": query(source, "SELECT count(*) FROM patients")[0][0],
        "example-encounter": query(source, "SELECT count(*) FROM admissions")[0][0],
        "example-condition": query(source, "SELECT count(*) FROM diagnoses_icd")[0][0],
    }
    batch_id = pipeline.batch(RESOURCES)
    pipeline.wait_for_extraction(batch_id, at_least=1000)
    store_read_only(store, True)
    try:
        time.sleep(20)
        waited = [n for n in ("loader", "extractor") if "read-only" in pipeline.log(n)]
        assert "loader" in waited, pipeline.log("loader")[-2000:]
        middle = pipeline.request("GET", f"/batches/{batch_id}").json()
        assert middle["status"] == "running", middle
    finally:
        store_read_only(store, False)
    progress = ended_exactly(pipeline, batch_id)
    for resource_id, n in expected.items():
        counts = progress[resource_id]
        assert (counts["expected"], counts["failed"]) == (n, 0), counts
        assert counts["created"] + counts["updated"] == n, counts


def test_kafka_killed_for_30_seconds_mid_batch(messy):
    """SIGKILL of the broker: every service waits for it (paused, nothing committed),
    and once it is back the batch completes, each instance counted once."""
    pipeline, source, _ = messy
    expected = query(source, "SELECT count(*) FROM diagnoses_icd")[0][0]
    batch_id = pipeline.batch(["example-condition"])
    pipeline.wait_for_extraction(batch_id, at_least=1000)
    stop_part("kafka", signal.SIGKILL)
    try:
        time.sleep(30)
    finally:
        start_stack()
    counts = ended_exactly(pipeline, batch_id)["example-condition"]
    assert (counts["expected"], counts["failed"]) == (expected, 0), counts
    assert counts["created"] + counts["updated"] == expected, counts
    assert pipeline.total("Condition", "example-condition") == expected
