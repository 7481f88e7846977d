"""Live sources end to end: a row changed in PostgreSQL, or a CSV file dropped on
SFTP, becomes up-to-date FHIR in the store, through real Kafka Connect (Debezium,
Camel SFTP), Kafka, the four services and the PostgreSQL store.

The committed connector files are pushed under names of their own (connector,
slot, publication, topics, SFTP folder), capturing a scratch source database of
synthetic MIMIC rows; the example mappings feed them, as in the local stack
(.env.example's LIVE_SOURCES). Everything made here is removed at the end.
"""

from __future__ import annotations

import json
import signal
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer

from test.conftest import KAFKA, wait_for
from test.e2e.live import Live, StackMissing, live_pipeline
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
            "bootstrap.servers": KAFKA,
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
            "bootstrap.servers": KAFKA,
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
    producer = Producer({"bootstrap.servers": KAFKA})
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
