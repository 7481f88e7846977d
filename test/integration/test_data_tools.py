"""The data tools of test/utils against the real stack: PostgreSQL and SFTP.

The database server is the one of $SOURCE_DB_URL (else the local stack's); the
tests work in a scratch database of their own, `mimic_test_tools`, created and
dropped here, never in `mimic`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import paramiko
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from test.utils import create_file_stfp, dbutil, synthetic
from test.utils.create_records_db import create_in_database
from test.utils.load_csv_folder import load_folder

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
DEMO = dbutil.DEFAULT_DEMO_DIR  # test/data/mimic-iii-demo: <table>.csv.gz
UTILS = ROOT / "test" / "utils"
SCRATCH = "mimic_test_tools"
DEMO_COUNTS = {
    "admissions": 129,
    "callout": 77,
    "caregivers": 7567,
    "cptevents": 1579,
    "d_icd_diagnoses": 14567,
    "d_icd_procedures": 3882,
    "d_labitems": 753,
    "diagnoses_icd": 1761,
    "drgcodes": 297,
    "icustays": 136,
    "microbiologyevents": 2003,
    "patients": 100,
    "prescriptions": 10398,
    "procedures_icd": 506,
    "services": 163,
    "transfers": 524,
}


def with_database(url: str, dbname: str) -> str:
    params = conninfo_to_dict(dbutil.libpq_url(url))
    params["dbname"] = dbname
    return make_conninfo(**params)


@pytest.fixture(scope="module")
def scratch_url():
    """A URL of the empty database mimic_test_tools on the server of SOURCE_DB_URL."""
    server = dbutil.source_db_url()
    try:
        admin = psycopg.connect(with_database(server, "postgres"), autocommit=True,
                                connect_timeout=5)  # fmt: skip
    except psycopg.OperationalError as error:
        pytest.fail(
            f"PostgreSQL of {dbutil.redact(server)} is not reachable ({error});"
            " start the stack with `make start`"
        )
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{SCRATCH}"')
    url = urlsplit(dbutil.libpq_url(server))._replace(path=f"/{SCRATCH}").geturl()
    try:
        yield url
    finally:
        with psycopg.connect(with_database(server, "postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)')


def counts_in(url: str, tables=DEMO_COUNTS) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


def run_tool(script: str, *args: str, url: str, timeout: int = 300):
    env = {**os.environ, "SOURCE_DB_URL": url}
    return subprocess.run(
        [sys.executable, str(UTILS / script), *args],
        capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT,
    )  # fmt: skip


# --- load_csv_folder ---------------------------------------------------------------


def test_the_demo_loads_with_its_exact_counts(scratch_url):
    counts = load_folder(scratch_url, DEMO, replace=True)
    assert counts == DEMO_COUNTS
    assert counts_in(scratch_url) == DEMO_COUNTS
    # Loading again with replace gives the same rows.
    assert load_folder(scratch_url, DEMO, replace=True) == DEMO_COUNTS
    assert counts_in(scratch_url) == DEMO_COUNTS


def test_plain_and_gzipped_csv_files_load_alike(scratch_url, tmp_path):
    """A folder may hold <table>.csv (as the demo is published) or <table>.csv.gz (as
    it ships here), or both kinds: never both files of one table."""
    plain = tmp_path / "patients.csv"
    with dbutil.open_bytes(DEMO / "patients.csv.gz") as packed:
        plain.write_bytes(packed.read())
    (tmp_path / "admissions.csv.gz").write_bytes((DEMO / "admissions.csv.gz").read_bytes())
    assert load_folder(scratch_url, tmp_path, replace=True) == {"admissions": 129, "patients": 100}
    (tmp_path / "patients.csv.gz").write_bytes((DEMO / "patients.csv.gz").read_bytes())
    with pytest.raises(ValueError, match="both patients.csv and patients.csv.gz"):
        load_folder(scratch_url, tmp_path, replace=True)
    assert load_folder(scratch_url, DEMO, replace=True) == DEMO_COUNTS


def test_the_demo_keeps_its_types_and_nulls(scratch_url):
    with psycopg.connect(scratch_url) as conn:
        dob, dod_hosp = conn.execute(
            "SELECT dob, dod_hosp FROM patients WHERE subject_id = 10006"
        ).fetchone()
        assert dob.isoformat() == "2094-03-05T00:00:00" and dod_hosp is not None
        assert conn.execute(
            "SELECT count(*) FROM admissions WHERE language IS NULL"
        ).fetchone() == (48,)
        assert conn.execute(
            "SELECT short_title FROM d_icd_diagnoses WHERE icd9_code = '01716'"
        ).fetchone() == ("Erythem nod tb-oth test",)
        assert (
            conn.execute("SELECT count(*) FROM prescriptions WHERE ndc LIKE '0%'").fetchone()[0]
            > 1000
        )
        kinds = conn.execute(
            "SELECT DISTINCT data_type::text FROM information_schema.columns"
            " WHERE table_schema = 'public' AND column_name IN ('row_id', 'subject_id', 'hadm_id')"
        ).fetchall()
        assert kinds == [("integer",)]


def test_loading_twice_without_replace_fails_and_changes_nothing(scratch_url):
    done = run_tool("load_csv_folder.py", str(DEMO), url=scratch_url)
    assert done.returncode == 1
    assert "--replace" in done.stderr and "Traceback" not in done.stderr
    assert counts_in(scratch_url) == DEMO_COUNTS
    again = run_tool("load_csv_folder.py", str(DEMO), "--replace", url=scratch_url)
    assert again.returncode == 0, again.stderr
    assert "prescriptions" in again.stdout and "10,398" in again.stdout


def test_the_schema_is_idempotent(scratch_url):
    with psycopg.connect(scratch_url) as conn:
        for _ in range(2):
            dbutil.apply_schema(conn)
        indexes = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'prescriptions' ORDER BY 1"
        ).fetchall()
    assert [i for (i,) in indexes] == [
        "prescriptions_hadm_id_idx",
        "prescriptions_icustay_id_idx",
        "prescriptions_pkey",
        "prescriptions_subject_id_idx",
    ]


# --- create_records_db -----------------------------------------------------------------

GENERATED = synthetic.PATIENT_TABLES + ("caregivers",)


def test_synthetic_patients_join_the_demo(scratch_url):
    load_folder(scratch_url, DEMO, replace=True)
    counts = create_in_database(scratch_url, 200, seed=11)
    expected = synthetic.count_rows(200, 11)
    assert {t: counts[t] for t in GENERATED} == {t: expected[t] for t in GENERATED}
    assert counts["d_icd_diagnoses (added)"] == 0  # the demo's dictionary is there
    in_db = counts_in(scratch_url, GENERATED)
    for table in GENERATED:
        assert in_db[table] == DEMO_COUNTS[table] + expected[table], table


def test_replace_gives_the_expected_counts_and_keeps_keys(scratch_url):
    done = run_tool(
        "create_records_db.py", "--patients", "200", "--seed", "11", "--replace", "--quiet",
        url=scratch_url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "peak memory" in done.stdout and "time" in done.stdout
    expected = synthetic.count_rows(200, 11)
    assert counts_in(scratch_url, GENERATED) == {t: expected[t] for t in GENERATED}
    assert expected["patients"] == 200 and expected["admissions"] > 200
    with psycopg.connect(scratch_url) as conn:
        # The keys and indexes dropped for the load are back.
        for table in GENERATED:
            (pk,) = conn.execute(
                "SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass"
                " AND contype = 'p'",
                (table,),
            ).fetchone()
            assert pk == 1, table
        (n,) = conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'prescriptions'"
        ).fetchone()
        assert n == 4
        # Referential integrity, and the dictionary joins of the example mapping.
        assert conn.execute(
            "SELECT count(*) FROM admissions a LEFT JOIN patients p USING (subject_id)"
            " WHERE p.subject_id IS NULL"
        ).fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*) FROM diagnoses_icd d LEFT JOIN admissions a USING (hadm_id)"
            " WHERE a.hadm_id IS NULL"
        ).fetchone() == (0,)
        total, unknown = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE t.icd9_code IS NULL)"
            " FROM diagnoses_icd d LEFT JOIN d_icd_diagnoses t USING (icd9_code)"
        ).fetchone()
        assert 0 < unknown < 0.05 * total
        assert conn.execute("SELECT min(subject_id) FROM patients").fetchone() == (1_000_000,)


def test_a_second_run_without_replace_adds_patients_with_fresh_ids(scratch_url):
    # The seed's use against a running stack: the script adds, it never collides.
    done = run_tool("create_records_db.py", "--patients", "5", "--seed", "11", url=scratch_url)
    assert done.returncode == 0, done.stderr
    assert "already holds synthetic rows: inserting 5 new patients" in done.stdout
    assert counts_in(scratch_url, ("patients",)) == {"patients": 205}


def test_insert_new_adds_patients_with_fresh_ids(scratch_url):
    before = counts_in(scratch_url, ("patients", "admissions"))
    with psycopg.connect(scratch_url) as conn:
        (largest,) = conn.execute("SELECT max(subject_id) FROM patients").fetchone()
    done = run_tool("create_records_db.py", "--insert-new", "3", url=scratch_url)
    assert done.returncode == 0, done.stderr
    after = counts_in(scratch_url, ("patients", "admissions"))
    assert after == {"patients": before["patients"] + 3, "admissions": before["admissions"] + 3}
    with psycopg.connect(scratch_url) as conn:
        new = conn.execute(
            "SELECT p.subject_id, count(a.hadm_id) FROM patients p"
            " LEFT JOIN admissions a USING (subject_id) WHERE p.subject_id > %s"
            " GROUP BY 1 ORDER BY 1",
            (largest,),
        ).fetchall()
    assert new == [(largest + 1, 1), (largest + 2, 1), (largest + 3, 1)]
    assert f"inserted subject_id {largest + 1}, {largest + 2}, {largest + 3}" in done.stdout
    # And again: new ids again.
    again = run_tool("create_records_db.py", "--insert-new", "3", url=scratch_url)
    assert again.returncode == 0, again.stderr
    assert counts_in(scratch_url, ("patients",)) == {"patients": before["patients"] + 6}


def test_tables_limits_what_is_generated(scratch_url):
    (before,) = counts_in(scratch_url, ("diagnoses_icd",)).values()
    done = run_tool(
        "create_records_db.py", "--patients", "50", "--replace", "--tables",
        "patients,admissions", url=scratch_url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    counts = counts_in(scratch_url, ("patients", "admissions", "diagnoses_icd"))
    assert counts["patients"] == 50 and counts["admissions"] >= 50
    assert counts["diagnoses_icd"] == before  # neither emptied nor generated
    refused = run_tool(
        "create_records_db.py", "--replace", "--tables", "admissions,bogus", url=scratch_url
    )
    assert refused.returncode == 1 and "--tables: bogus" in refused.stderr


def test_an_empty_database_gets_schema_and_dictionaries(scratch_url):
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        conn.execute("DROP TABLE " + ", ".join(DEMO_COUNTS))
    counts = create_in_database(scratch_url, 100, seed=2, replace=True)
    reference = synthetic.load_reference()
    for table in synthetic.DICTIONARY_TABLES:
        assert counts[f"{table} (added)"] == len(reference.dictionary[table]) > 100
    assert counts_in(scratch_url, ("patients", "callout")) == {"patients": 100, "callout": 0}
    with psycopg.connect(scratch_url) as conn:
        # Synthetic titles (the demo's dictionaries are not copied), and about 2% of
        # the codes drawn missing from them, as in MIMIC.
        assert conn.execute(
            "SELECT short_title, long_title FROM d_icd_diagnoses WHERE icd9_code = '4019'"
        ).fetchone() == ("Diagnosis 4019", "Synthetic ICD-9 diagnosis 4019")
        total, unknown = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE t.icd9_code IS NULL)"
            " FROM diagnoses_icd d LEFT JOIN d_icd_diagnoses t USING (icd9_code)"
        ).fetchone()
        assert 0 < unknown < 0.05 * total
    # Made again: the dictionaries are complete, nothing is added.
    again = create_in_database(scratch_url, 100, seed=2, replace=True)
    assert again["d_icd_diagnoses (added)"] == again["d_icd_procedures (added)"] == 0


# --- create_file_stfp ------------------------------------------------------------------


def sftp_port_closed() -> str | None:
    host, port, _user, _password = create_file_stfp.sftp_settings()
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as error:
        return f"the stack's SFTP server is not listening on {host}:{port} ({error})"
    return None


def sftp_listing(folders: list[str]) -> dict[str, list[str]]:
    host, port, user, password = create_file_stfp.sftp_settings()
    transport = paramiko.Transport(socket.create_connection((host, port), timeout=10))
    try:
        transport.connect(username=user, password=password)
        sftp = paramiko.SFTPClient.from_transport(transport)
        return {f: sftp.listdir(f) for f in folders}
    finally:
        transport.close()


def sftp_remove(name: str, folders: list[str]) -> None:
    host, port, user, password = create_file_stfp.sftp_settings()
    transport = paramiko.Transport(socket.create_connection((host, port), timeout=10))
    try:
        transport.connect(username=user, password=password)
        sftp = paramiko.SFTPClient.from_transport(transport)
        for folder in folders:
            for entry in sftp.listdir(folder):
                if entry.startswith(name):
                    sftp.remove(f"{folder}/{entry}")
    finally:
        transport.close()


FOLDERS = ["upload/data", "upload/finished", "upload/error"]


def test_upload_puts_the_file_under_its_final_name(tmp_path):
    closed = sftp_port_closed()
    if closed:
        pytest.skip(closed)
    name = f"river-test-{uuid.uuid4().hex}.csv"
    local = create_file_stfp.write_patients_csv(tmp_path / name, n=3, seed=1)
    try:
        remote = create_file_stfp.upload(local)
        assert remote == f"upload/data/{name}"
        listing = sftp_listing(FOLDERS)
        # There under its final name (or already taken by a reader of upload/data).
        assert any(name in entries for entries in listing.values()), listing
        assert not any(e.endswith(".part") for entries in listing.values() for e in entries)
    finally:
        sftp_remove(name, FOLDERS)


def test_the_cli_uploads_a_synthetic_patients_file():
    closed = sftp_port_closed()
    if closed:
        pytest.skip(closed)
    done = subprocess.run(
        [sys.executable, str(UTILS / "create_file_stfp.py"), "--patients", "2",
         "--remote-dir", "upload/error"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    try:
        assert done.returncode == 0, done.stderr
        assert "uploaded sftp://" in done.stdout and "upload/error/patients.csv" in done.stdout
        assert "patients.csv" in sftp_listing(["upload/error"])["upload/error"]
    finally:
        sftp_remove("patients.csv", ["upload/error"])


def test_a_closed_port_is_one_clear_sentence():
    env = {**os.environ, "SFTP_PORT": "1"}
    done = subprocess.run(
        [sys.executable, str(UTILS / "create_file_stfp.py")],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("create_file_stfp: no SFTP server on 127.0.0.1:1")
    assert "Traceback" not in done.stderr
