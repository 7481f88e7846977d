"""The seed's scripts against the running stack, as its README uses them: with the
connectors pushed (as `make run` does), `create_records_db.py` inserts records
and `create_file_stfp.py` uploads a CSV, and both show up as FHIR through the
stack's own services and API (LIVE_SOURCES of .env.example)."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import psycopg
import pytest
import requests

from adapters.connect import push
from cli.login import Login
from river.identity import fhir_id
from river.mapping import load_mappings
from river.scripts import ScriptRegistry
from test.conftest import scripts_settings, wait_for
from test.integration.test_stack import ROOT, S

API = f"http://127.0.0.1:{S['API_PORT']}"
CONNECT = f"http://127.0.0.1:{S['KAFKA_CONNECT_PORT']}"
SOURCE_DB = (
    f"postgresql://{S['POSTGRES_USER']}:{S['POSTGRES_PASSWORD']}@127.0.0.1:{S['POSTGRES_PORT']}"
    f"/{S['SOURCE_DB_NAME']}"
)


@pytest.fixture(scope="module")
def stack():
    try:
        requests.get(f"{API}/health", timeout=5)
    except requests.RequestException as error:
        pytest.fail(f"the stack's api does not answer at {API} ({error}): run make start")
    out = io.StringIO()
    assert push(CONNECT, out=out) == 0, out.getvalue()
    plans = load_mappings(ROOT / "examples" / "mappings", ScriptRegistry.default())
    return {plan.resource_id: plan.logical_reference for plan in plans}


def run_script(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


LOGIN = Login(scripts_settings())  # the stack's API checks tokens


def readable(resource_type: str, id: str) -> bool:
    headers = {"Authorization": f"Bearer {LOGIN.access_token()}"}
    answer = requests.get(f"{API}/fhir/{resource_type}/{id}", timeout=10, headers=headers)
    return answer.status_code == 200


def test_create_records_db_inserts_records_that_show_up_as_fhir(stack):
    with psycopg.connect(SOURCE_DB) as db:
        (largest,) = db.execute("SELECT coalesce(max(subject_id), 0) FROM patients").fetchone()
    run_script("test/utils/create_records_db.py", "--patients", "2")
    with psycopg.connect(SOURCE_DB) as db:
        subjects = [
            s
            for (s,) in db.execute(
                "SELECT subject_id FROM patients WHERE subject_id > %s", [largest]
            )
        ]
    assert len(subjects) == 2
    for subject in subjects:
        wait_for(
            f"the Patient of the inserted subject {subject}",
            lambda s=subject: readable("Patient", fhir_id(stack["example-patient"], s)),
        )


def test_create_file_stfp_uploads_a_csv_that_shows_up_as_fhir(stack):
    printed = run_script("test/utils/create_file_stfp.py", "--patients", "2")
    first, last = map(int, re.search(r"subject_id (\d+) to (\d+)", printed).groups())
    for subject in range(first, last + 1):
        wait_for(
            f"the Patient of CSV row {subject}",
            lambda s=subject: readable("Patient", fhir_id(stack["example-csv-patient"], s)),
        )
