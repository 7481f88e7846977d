"""Live sources end to end: a row changed in PostgreSQL, or a CSV file dropped on
SFTP, becomes up-to-date FHIR in the store, through real Kafka Connect (Debezium,
Camel SFTP), Kafka, the four services and the PostgreSQL store.

The committed connector files are pushed under names of their own (connector,
slot, publication, topics, SFTP folder), capturing a scratch source database of
synthetic MIMIC rows; the example mappings feed them, as in the local stack
(.env.example's LIVE_SOURCES). Everything made here is removed at the end.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import paramiko
import psycopg
import pytest
import requests
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from adapters.connect import push, remove
from river.identity import fhir_id
from river.mapping import load_mappings
from river.scripts import ScriptRegistry
from test.conftest import KAFKA, ROOT, scratch_database
from test.e2e.conftest import Pipeline, make_pipeline
from test.e2e.stack import start_stack, stop_connect
from test.utils.create_file_stfp import sftp_settings, upload
from test.utils.create_records_db import create_in_database

CONNECT = "http://127.0.0.1:8083"
SOURCES = ROOT / "kafka_connect_connectors" / "sources"
EXAMPLES = ROOT / "examples" / "mappings"
WAIT = 60.0
PATIENTS = 20


@dataclass
class Live:
    pipeline: Pipeline
    source_url: str
    suffix: str
    cdc: dict[str, Any]
    csv: dict[str, Any]
    ids: dict[str, Callable[[Any], str]]  # resource id -> its FHIR id rule
    sftp_root: str

    @property
    def cdc_batch(self) -> str:
        return f"live-{self.cdc['name']}"

    @property
    def csv_batch(self) -> str:
        return f"live-{self.csv['name']}"

    def sql(self, statement: str, *params: Any) -> None:
        with psycopg.connect(self.source_url, autocommit=True) as db:
            db.execute(statement, params)

    def read(self, resource_type: str, resource_id: str, key: Any) -> dict | None:
        answer = self.pipeline.request("GET", f"/fhir/{resource_type}/{self.ids[resource_id](key)}")
        return answer.json() if answer.status_code == 200 else None

    def progress(self, batch_id: str) -> dict[str, dict]:
        state = self.pipeline.request("GET", f"/batches/{batch_id}").json()
        return {r["resource_id"]: r for r in state["resources"]}

    def errors(self, batch_id: str) -> list[dict]:
        return self.pipeline.request("GET", f"/batches/{batch_id}/errors").json()["items"]


def wait_for(what: str, probe: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)


def sftp() -> tuple[paramiko.Transport, paramiko.SFTPClient]:
    host, port, user, password = sftp_settings()
    transport = paramiko.Transport((host, port))
    transport.connect(username=user, password=password)
    return transport, paramiko.SFTPClient.from_transport(transport)


def sftp_list(folder: str) -> list[str]:
    transport, client = sftp()
    with contextlib.closing(transport):
        return sorted(client.listdir(folder))


@pytest.fixture(scope="module")
def live(tmp_path_factory, topic_prefix) -> Iterator[Live]:
    try:
        requests.get(CONNECT + "/connectors", timeout=5).raise_for_status()
    except requests.RequestException as error:
        pytest.fail(f"Kafka Connect does not answer at {CONNECT} ({error}): run make start")
    tmp = tmp_path_factory.mktemp("live")
    suffix = uuid.uuid4().hex[:8]
    with (
        scratch_database("river_live_source") as source_url,
        scratch_database("river_live_store") as store_url,
    ):
        create_in_database(source_url, PATIENTS, seed=5, replace=True)
        mappings = tmp / "mappings"
        mappings.mkdir()
        for name in ("mimic-example.json", "mimic-csv-example.json"):
            shutil.copy(EXAMPLES / name, mappings / name)
        cdc = json.loads((SOURCES / "mimic-postgres-cdc.json").read_text())
        cdc["name"] = f"river-e2e-cdc-{suffix}"
        cdc["config"].update(
            {
                "database.hostname": "127.0.0.1",
                "database.dbname": source_url.rsplit("/", 1)[1],
                "slot.name": f"river_e2e_{suffix}",
                "publication.name": f"river_e2e_{suffix}",
                "topic.prefix": f"river-e2e-{suffix}",
            }
        )
        sftp_root = f"upload/data/river-e2e-{suffix}"
        csv = json.loads((SOURCES / "mimic-sftp-csv.json").read_text())
        csv["name"] = f"river-e2e-csv-{suffix}"
        csv["config"].update(
            {
                "camel.source.path.host": "127.0.0.1",
                "topics": f"river-e2e-{suffix}-csv",
                "camel.source.path.directoryName": f"{sftp_root}/data",
            }
        )
        files = [tmp / "cdc.json", tmp / "csv.json"]
        files[0].write_text(json.dumps(cdc))
        files[1].write_text(json.dumps(csv))
        transport, client = sftp()
        with contextlib.closing(transport):
            for folder in ("", "/data", "/finished", "/error"):
                client.mkdir(sftp_root + folder)
        plans = load_mappings(mappings, ScriptRegistry.default())
        ids = {
            plan.resource_id: (lambda key, ref=plan.logical_reference: fhir_id(ref, key))
            for plan in plans
        }
        pipeline = make_pipeline(tmp, topic_prefix, store_url, source_url)
        pipeline.env.update(
            {
                "MAPPINGS": str(mappings),
                "CONCEPT_MAPS": str(ROOT / "examples" / "concept_maps"),
                "LIVE_SOURCES": f"{files[0]}={mappings / 'mimic-example.json'},"
                f"{files[1]}={mappings / 'mimic-csv-example.json'}",
            }
        )
        r = Live(pipeline, source_url, suffix, cdc, csv, ids, sftp_root)
        try:
            out = io.StringIO()
            assert push(CONNECT, files, out=out) == 0, out.getvalue()
            pipeline.start()
            yield r
        finally:
            pipeline.stop()
            pipeline.store.close()
            _clean_up(r)


def _clean_up(r: Live) -> None:
    for name in (r.cdc["name"], r.csv["name"]):
        with contextlib.suppress(Exception):
            remove(CONNECT, name, r.source_url, out=io.StringIO())
    with contextlib.suppress(Exception):
        admin = AdminClient({"bootstrap.servers": KAFKA})
        mine = [t for t in admin.list_topics(timeout=10).topics if f"river-e2e-{r.suffix}" in t]
        for future in admin.delete_topics(mine).values():
            future.result(10)
    with contextlib.suppress(Exception):
        transport, client = sftp()
        with contextlib.closing(transport):
            for folder in ("/data", "/finished", "/error"):
                for name in client.listdir(r.sftp_root + folder):
                    client.remove(f"{r.sftp_root}{folder}/{name}")
                client.rmdir(r.sftp_root + folder)
            client.rmdir(r.sftp_root)


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
    progress = live.progress(live.cdc_batch)["example-patient"]
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
        "the file in finished", lambda: "patients.csv" in sftp_list(f"{live.sftp_root}/finished")
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
        lambda: "patients.csv" in sftp_list(f"{live.sftp_root}/error"),
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
