"""Live changes while a batch runs: they pass the batch (topics and loops of their
own), and the store keeps the newest reading of each instance whichever path
brings it last (adapters/store/common.py, superseded).

The source holds 3,000 synthetic patients (about 60,000 resources of the example
mapping); a batch of the three example resources runs while the CDC connector
follows the same source. How fast a change passes the batch is measured by
`benchmarks/live.py --during-batch`; here, only that it does, and what stays.
"""

from __future__ import annotations

import psycopg
import pytest

from test.conftest import wait_for
from test.e2e.live import Live, StackMissing, live_pipeline

RESOURCES = ["example-patient", "example-encounter", "example-condition"]
PATIENTS = 3000
NEW_SUBJECT = 7_300_001
WARM_SUBJECT = 7_200_001


@pytest.fixture(scope="module")
def live(tmp_path_factory, topic_prefix):
    try:
        with live_pipeline(
            tmp_path_factory.mktemp("during"), f"{topic_prefix}during-", patients=PATIENTS
        ) as live:
            yield live
    except StackMissing as error:
        pytest.fail(str(error))


def _status(live: Live, batch_id: str) -> dict:
    return live.pipeline.request("GET", f"/batches/{batch_id}").json()


def _extracted(live: Live, batch_id: str, resource_id: str) -> int:
    resources = _status(live, batch_id)["resources"]
    return next(r["extracted"] for r in resources if r["resource_id"] == resource_id)


def _gender(live: Live, subject_id: int) -> str | None:
    patient = live.read("Patient", "example-patient", subject_id)
    return patient and patient.get("gender")


def test_live_changes_pass_a_running_batch_and_the_newest_reading_stays(live):
    pipeline = live.pipeline
    # The live path streams before the batch starts: a connector's first change can take
    # longer than the whole batch (seen in CI), which would prove nothing either way.
    _insert_patient(live, WARM_SUBJECT)
    wait_for(
        "the live path to stream", lambda: _gender(live, WARM_SUBJECT) == "female", timeout=120
    )
    last_subject = _last_subject(live)
    before = "male" if _source_gender(live, last_subject) == "M" else "female"
    after, after_code = ("female", "F") if before == "male" else ("male", "M")

    batch_id = pipeline.batch(RESOURCES)
    # The Patient query has started: its snapshot holds the last patient's old gender,
    # and the batch's version of it is among the last of its Patients to be loaded.
    wait_for(
        "the batch's Patients being extracted", lambda: _extracted(live, batch_id, RESOURCES[0])
    )
    live.sql("UPDATE patients SET gender = %s WHERE subject_id = %s", after_code, last_subject)
    _insert_patient(live, NEW_SUBJECT)

    # The inserted patient is in the store while the batch still runs: it did not
    # wait behind the batch's instances.
    wait_for("the inserted Patient", lambda: _gender(live, NEW_SUBJECT) == "female", timeout=120)
    assert _status(live, batch_id)["status"] == "running", (
        "the batch ended before the live change was loaded: make the source larger"
    )

    state = pipeline.wait(batch_id, timeout=600)
    assert state["status"] == "completed", state
    for resource in state["resources"]:
        assert resource["failed"] == 0, resource
        assert resource["loaded"] == resource["expected"] == resource["extracted"], resource
    # The batch's reading of the last patient (older than the live one) never
    # overwrote the live change, whichever came last.
    assert _gender(live, last_subject) == after
    progress = wait_for(
        "the live batch's counts to add up",
        lambda: (
            p
            if (p := live.progress(live.cdc_batch)["example-patient"])["loaded"] + p["failed"]
            == p["extracted"]
            and p["extracted"] >= 2
            else None
        ),
    )
    assert progress["failed"] == 0, live.errors(live.cdc_batch)


def _insert_patient(live: Live, subject_id: int) -> None:
    live.sql(
        "INSERT INTO patients (row_id, subject_id, gender, dob, expire_flag)"
        " VALUES (%s, %s, 'F', '2070-05-01', 0)",
        subject_id,
        subject_id,
    )


def _last_subject(live: Live) -> int:
    return int(_one(live, "SELECT max(subject_id) FROM patients"))


def _source_gender(live: Live, subject_id: int) -> str:
    return str(_one(live, "SELECT gender FROM patients WHERE subject_id = %s", subject_id))


def _one(live: Live, query: str, *params: object) -> object:
    with psycopg.connect(live.source_url) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None, query
    return row[0]
