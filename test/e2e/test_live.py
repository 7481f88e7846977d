"""Live sources end to end: a row changed in PostgreSQL, or a CSV file dropped on
SFTP, becomes up-to-date FHIR in the store, through real Kafka Connect (Debezium,
Camel SFTP), Kafka, the four services and the PostgreSQL store.

The committed connector files are pushed under names of their own (connector,
slot, publication, topics, SFTP folder), capturing a scratch source database of
synthetic MIMIC rows; the example mappings feed them, as in the local stack
(.env.example's LIVE_SOURCES). Everything made here is removed at the end.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import time
import uuid

import psycopg
import pytest
import requests
from confluent_kafka import Consumer, Producer

from adapters.connect import push
from test.conftest import kafka_client, wait_for
from test.e2e.live import CONNECT, Live, StackMissing, live_pipeline
from test.e2e.stack import start_stack, stop_connect
from test.utils.create_file_stfp import list_folder, upload


@pytest.fixture(scope="module")
def live(tmp_path_factory, topic_prefix):
    try:
        with live_pipeline(tmp_path_factory.mktemp("live"), topic_prefix) as live:
            yield live
    except StackMissing as error:
        pytest.fail(str(error))


def insert_patient(live: Live, subject_id: int, gender: str = "F") -> None:
    live.sql(
        "INSERT INTO patients (row_id, subject_id, gender, dob, expire_flag)"
        " VALUES (%s, %s, %s, '2070-05-01', 0)",
        subject_id,
        subject_id,
        gender,
    )


def gender_of(live: Live, subject_id: int) -> str | None:
    patient = live.read("Patient", "example-patient", subject_id)
    return patient and patient.get("gender")


# --- database changes -------------------------------------------------------------------


def test_a_patient_row_is_followed_from_insert_to_delete(live):
    subject = 7_000_001
    insert_patient(live, subject, "F")
    wait_for("the inserted patient's Patient", lambda: gender_of(live, subject) == "female")

    live.sql("UPDATE patients SET gender = 'M' WHERE subject_id = %s", subject)
    wait_for("the Patient after its gender changed", lambda: gender_of(live, subject) == "male")

    # An admission joins the patient: the Patient (maritalStatus comes from admissions)
    # is extracted again, and the admission is an Encounter of its own.
    live.sql(
        "INSERT INTO admissions (row_id, subject_id, hadm_id, admittime, dischtime,"
        " admission_type, marital_status, language)"
        " VALUES (%s, %s, %s, '2101-01-01 10:00', '2101-01-05 12:00', 'EMERGENCY', 'MARRIED',"
        " 'ENGL')",
        7_000_001,
        subject,
        7_000_001,
    )

    def married() -> bool:
        patient = live.read("Patient", "example-patient", subject) or {}
        codings = patient.get("maritalStatus", {}).get("coding", [])
        return [c.get("code") for c in codings] == ["M"]

    wait_for("the Patient with the admission's marital status", married)
    encounter = wait_for(
        "the admission's Encounter", lambda: live.read("Encounter", "example-encounter", 7_000_001)
    )
    assert encounter["subject"]["reference"] == f"Patient/{live.ids['example-patient'](subject)}"

    live.sql("DELETE FROM patients WHERE subject_id = %s", subject)
    wait_for(
        "the Patient gone after its row was deleted",
        lambda: live.read("Patient", "example-patient", subject) is None,
    )

    def caught_up() -> dict | None:
        progress = live.progress(live.cdc_batch)["example-patient"]
        done = progress["loaded"] + progress["deleted"] + progress["failed"]
        return progress if done == progress["extracted"] else None

    # Every extraction is accounted for: loaded (an unchanged resource counts as
    # updated), deleted or failed.
    progress = wait_for("the live batch's counts to add up", caught_up)
    assert progress["deleted"] == 1 and progress["created"] >= 1 and progress["failed"] == 0
    assert progress["status"] == "running"  # a live batch follows its source, never ends
    assert _load_actions(live, live.ids["example-patient"](subject))[-1] == "deleted"


def _load_actions(live: Live, fhir_id: str) -> list[str]:
    """The `load` events of one resource, oldest first."""
    consumer = Consumer(
        {
            **kafka_client(),
            "group.id": f"river-e2e-read-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([f"{live.pipeline.env['KAFKA_TOPIC_PREFIX']}load"])
    actions = []
    try:
        idle_until = time.monotonic() + 5
        while time.monotonic() < idle_until:
            for message in consumer.consume(500, 0.5):
                if message.error() is None:
                    event = json.loads(message.value())
                    if event["id"] == fhir_id:
                        actions.append(event["action"])
                    idle_until = time.monotonic() + 2
    finally:
        consumer.close()
    return actions


def test_a_change_to_a_table_no_mapping_reads_gives_no_work(live):
    topic = f"{live.cdc['config']['topic.prefix']}.public.icustays"
    before = live.progress(live.cdc_batch)
    live.sql(
        "INSERT INTO icustays (row_id, subject_id, hadm_id, icustay_id, dbsource,"
        " first_careunit, last_careunit, first_wardid, last_wardid, intime)"
        " VALUES (7000002, 1000000, 7000002, 7000002, 'carevue', 'MICU', 'MICU', 1, 1,"
        " '2101-01-01 10:00')"
    )
    # Debezium captured it (the table is in its include list)...
    consumer = Consumer(
        {
            **kafka_client(),
            "group.id": f"river-e2e-read-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "topic.metadata.refresh.interval.ms": 500,
        }
    )
    consumer.subscribe([topic])
    try:
        wait_for(
            f"the change on {topic}",
            lambda: any(m.error() is None for m in consumer.consume(10, 0.5)),
        )
    finally:
        consumer.close()
    # ...and nobody works on it: the extractor does not even read that topic.
    time.sleep(2)
    assert live.progress(live.cdc_batch) == before
    assert topic not in live.pipeline.log("extractor")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_changes_made_while_connect_is_down_are_not_lost(live, sig):
    subjects = [7_000_100 + 10 * sig + n for n in range(3)]
    stop_connect(sig)
    try:
        for subject in subjects:
            insert_patient(live, subject, "M")
        live.sql("UPDATE patients SET gender = 'F' WHERE subject_id = %s", subjects[0])
    finally:
        start_stack()
    # After a SIGKILL the task resumes once the dead worker's session expires.
    for subject, gender in zip(subjects, ("female", "male", "male"), strict=True):
        wait_for(
            f"the Patient of {subject}, changed while Connect was down",
            lambda s=subject, g=gender: gender_of(live, s) == g,
            timeout=180,
        )


# --- CSV files over SFTP ----------------------------------------------------------------

HEADER = "ROW_ID,SUBJECT_ID,GENDER,DOB,DOD,DOD_HOSP,DOD_SSN,EXPIRE_FLAG"


def test_a_csv_file_becomes_resources_and_moves_to_finished(live, tmp_path):
    csv = tmp_path / "patients.csv"
    csv.write_text(
        f"{HEADER}\n"
        "1,8000001,F,2070-01-01 00:00:00,,,,0\n"
        "2,8000002,M,2071-02-02 00:00:00,2140-01-01 00:00:00,,,1\n"
        "3,8000003,M\n"  # does not fit the header: an error of that row
    )
    upload(csv, f"{live.sftp_root}/data")
    first = wait_for(
        "the CSV's first Patient", lambda: live.read("Patient", "example-csv-patient", 8000001)
    )
    assert first["gender"] == "female" and first["birthDate"] == "2070-01-01"
    second = wait_for(
        "the CSV's second Patient", lambda: live.read("Patient", "example-csv-patient", 8000002)
    )
    assert second["deceasedDateTime"].startswith("2140-01-01")
    wait_for(
        "the file in finished", lambda: "patients.csv" in list_folder(f"{live.sftp_root}/finished")
    )
    errors = wait_for("the ragged row's error", lambda: live.errors(live.csv_batch))
    assert [(e["primary_key_value"], e["message"]) for e in errors] == [
        ("patients.csv, row 4", "file patients.csv, row 4: 3 field(s) where the header names 8")
    ]
    progress = live.progress(live.csv_batch)["example-csv-patient"]
    assert (progress["extracted"], progress["created"], progress["failed"]) == (2, 2, 1)


def test_a_malformed_csv_goes_to_error_and_nothing_else_moves(live, tmp_path):
    before = live.progress(live.csv_batch)
    broken = tmp_path / "patients.csv"
    broken.write_text(f'{HEADER}\n4,8000004,"F,2070-01-01 00:00:00,,,,0\n')  # quote never closed
    upload(broken, f"{live.sftp_root}/data")
    wait_for(
        "the malformed file in error",
        lambda: "patients.csv" in list_folder(f"{live.sftp_root}/error"),
    )
    time.sleep(1)
    assert live.progress(live.csv_batch) == before
    assert live.read("Patient", "example-csv-patient", 8000004) is None
    assert live.read("Patient", "example-csv-patient", 8000001) is not None  # still there


def test_a_file_no_resource_reads_is_an_error_of_the_live_batch(live, tmp_path):
    other = tmp_path / "callout.csv"
    other.write_text("ROW_ID,SUBJECT_ID\n1,2\n")
    upload(other, f"{live.sftp_root}/data")

    def reported() -> list[dict]:
        return [e for e in live.errors(live.csv_batch) if e["primary_key_value"] == "callout.csv"]

    (error,) = wait_for("the error of callout.csv", reported)
    assert "no mapping resource of connector" in error["message"]
    assert "callout as its primary table" in error["message"]


def test_a_live_batch_cannot_be_canceled(live):
    answer = live.pipeline.request("DELETE", f"/batches/{live.cdc_batch}")
    assert answer.status_code == 409
    assert "follows a live source" in answer.text


def test_a_malformed_message_on_a_connector_topic_is_an_error_and_the_rest_flows(live):
    topic = f"{live.cdc['config']['topic.prefix']}.public.patients"
    producer = Producer(kafka_client())
    for _ in range(2):
        producer.produce(topic, b"not a change", b'{"row_id": 1}')
    producer.flush(10)
    insert_patient(live, 7_000_500, "F")
    wait_for("the patient inserted after it", lambda: gender_of(live, 7_000_500) == "female")

    def malformed() -> list[dict]:
        errors = [e for e in live.errors(live.cdc_batch) if "not JSON" in e["message"]]
        return errors if len(errors) >= 2 else []

    errors = wait_for("the malformed messages' errors", malformed)
    assert len(errors) == 2  # each its own error, named by its position
    for error in errors:
        assert error["message"].startswith(f"topic {topic}, partition ")
        assert error["stage"] == "extract" and error["primary_key_value"].startswith(topic)


# --- faults of a live source -------------------------------------------------------------


def query(live: Live, statement: str, *params: object) -> list[tuple]:
    with psycopg.connect(live.source_url) as db:
        return db.execute(statement, params).fetchall()


def test_a_source_row_larger_than_any_limit_is_followed_and_named_then_the_next_change(live):
    """A 20 MB title: Debezium cuts it in the change event (column.truncate), so its
    task keeps running; the Conditions it reaches are extracted again, their events
    over KAFKA_MESSAGE_MAX_BYTES are failed instances of the live batch naming size
    and limit; and a later insert is followed as any other."""
    (code, n), *_ = query(
        live,
        "SELECT icd9_code, count(*) FROM diagnoses_icd GROUP BY icd9_code"
        " ORDER BY count(*) DESC, icd9_code LIMIT 1",
    )
    rows = [
        r for (r,) in query(live, "SELECT row_id FROM diagnoses_icd WHERE icd9_code = %s", code)
    ]
    (title,) = query(live, "SELECT long_title FROM d_icd_diagnoses WHERE icd9_code = %s", code)[0]
    huge = base64.b64encode(os.urandom(15_000_000)).decode()  # 20 MB, incompressible
    live.sql("UPDATE d_icd_diagnoses SET long_title = %s WHERE icd9_code = %s", huge, code)
    try:

        def named() -> list[dict]:
            errors = [
                e
                for e in live.errors(live.cdc_batch)
                if e["resource_id"] == "example-condition" and e["primary_key_value"] in rows
            ]
            return errors if len(errors) == n else []

        for error in wait_for(f"the {n} Conditions of code {code} named", named, timeout=120):
            assert error["stage"] == "extract"
            assert (
                "over the limit of 16,777,216 bytes (KAFKA_MESSAGE_MAX_BYTES)" in error["message"]
            )
        subject = 7_000_900
        insert_patient(live, subject, "F")
        wait_for("the next insert followed", lambda: gender_of(live, subject) == "female")
        status = requests.get(f"{CONNECT}/connectors/{live.cdc['name']}/status", timeout=10).json()
        assert [t["state"] for t in status["tasks"]] == ["RUNNING"], status
    finally:
        live.sql("UPDATE d_icd_diagnoses SET long_title = %s WHERE icd9_code = %s", title, code)


def test_a_failed_connector_task_is_named_by_health_and_degrades_its_live_batch(live, tmp_path):
    """A task that fails (here: a record over its producer's limit, as a source row over
    every limit did before column.truncate) makes /health answer 503 naming the
    connector, the task and the cause, and the live batch `degraded` with the reason;
    pushed again as it should be, the change is followed and both are well again."""
    name = live.cdc["name"]
    broken = {**live.cdc["config"], "producer.override.max.request.size": "300"}
    requests.put(f"{CONNECT}/connectors/{name}/config", json=broken, timeout=30).raise_for_status()
    subject = 7_000_901
    try:
        time.sleep(3)  # the task restarts with the new config
        insert_patient(live, subject, "F")

        def failed() -> dict | None:
            answer = live.pipeline.request("GET", "/health")
            health = answer.json()
            part = health.get("connectors", {}).get(name, {})
            return health if answer.status_code == 503 and not part.get("ok", True) else None

        health = wait_for("/health naming the failed task", failed, timeout=90)
        (problem,) = [p for p in health["problems"] if p.startswith(f"connector {name}")]
        assert f"connector {name}: task 0 is FAILED" in problem
        assert "RecordTooLargeException" in problem, problem
        # Its slot is no longer read: the source server keeps WAL for it meanwhile.
        slot = live.cdc["config"]["slot.name"]
        assert health["replication_slots"][slot]["active"] is False
        assert any(p.startswith(f"replication slot {slot}") for p in health["problems"])
        batch = live.pipeline.request("GET", f"/batches/{live.cdc_batch}").json()
        assert batch["status"] == "degraded"
        assert "task 0 is FAILED" in batch["reason"] and name in batch["reason"]
    finally:
        file = tmp_path / "cdc.json"
        file.write_text(json.dumps(live.cdc))
        assert push(CONNECT, [file], out=io.StringIO()) == 0
    wait_for("the change made meanwhile followed", lambda: gender_of(live, subject) == "female")

    def well() -> bool:
        health = live.pipeline.request("GET", "/health").json()
        return health["connectors"][name]["ok"]

    wait_for("the connector well again in /health", well, timeout=60)
    assert live.pipeline.request("GET", f"/batches/{live.cdc_batch}").json()["status"] == "running"
