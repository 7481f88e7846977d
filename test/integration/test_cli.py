"""The `river` command as a user runs it: output, errors, exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from test.conftest import CONCEPT_MAPS, FORMAT_EXAMPLES, MIMIC_DEMO_MAPPING, ROOT

FEAT_6 = "cktlnp0ji006e0mmzat7dwb98"
DIAGNOSIS = "cktlnp0oa00at0mmzp0b1u7zx"
BP = "cktlnp0lh00880mmzfhsoshbm"


def river(*args: str, db_url: str, **env: str) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        "SOURCE_DB_URL": db_url,
        "CONCEPT_MAPS": str(CONCEPT_MAPS),
        "FHIR_API_URL": "",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
        timeout=120,
    )


def test_preview_prints_instances_and_errors_as_json(mimic_demo_url):
    done = river(
        "preview",
        "--mapping",
        str(MIMIC_DEMO_MAPPING),
        FEAT_6,
        "41976",
        "10088",
        "1",
        db_url=mimic_demo_url,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert [r["gender"] for r in answer["instances"]] == ["male", "male"]
    assert answer["errors"] == [
        {
            "resource_id": FEAT_6,
            "primary_key_value": "1",
            "message": "no row has this primary key value (after filters)",
        }
    ]


def test_preview_of_invalid_instances_still_exits_zero(mimic_demo_url):
    done = river(
        "preview",
        "--mapping",
        str(MIMIC_DEMO_MAPPING),
        "ckur2ervw000107l437vy9vuq",
        "10006",
        db_url=mimic_demo_url,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["instances"] == []
    assert "Patient.gender" in answer["errors"][0]["message"]


def test_unknown_resource_is_one_sentence(mimic_demo_url):
    done = river(
        "preview", "--mapping", str(MIMIC_DEMO_MAPPING), "nope", "1", db_url=mimic_demo_url
    )
    assert done.returncode == 1
    assert done.stderr.startswith("river: unknown resource id 'nope'; the mappings define: ")
    assert "Traceback" not in done.stderr


def test_invalid_mapping_lists_its_faults(mimic_demo_url):
    invalid = FORMAT_EXAMPLES / "invalid-missing-owner.json"
    done = river(
        "preview", "--mapping", str(invalid), "simple-resource", "1", db_url=mimic_demo_url
    )
    assert done.returncode == 1
    assert "invalid mapping" in done.stderr and "unknown owner 'reference-to-owner'" in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_database_is_one_sentence_without_the_password():
    url = "postgresql://postgres:s3cret-pw@127.0.0.1:1/mimic"
    done = river("preview", "--mapping", str(MIMIC_DEMO_MAPPING), FEAT_6, "10006", db_url=url)
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"river: resource {FEAT_6}: cannot query the source database "
        "postgresql+psycopg://postgres:***@127.0.0.1:1/mimic: connection failed"
    )
    assert "s3cret-pw" not in done.stderr + done.stdout
    assert len(done.stderr.strip().splitlines()) == 1


def test_batch_writes_ndjson_and_a_summary(mimic_demo_url, tmp_path):
    output = tmp_path / "out.ndjson"
    done = river(
        "batch",
        "--mapping",
        str(MIMIC_DEMO_MAPPING),
        DIAGNOSIS,
        BP,
        "--output",
        str(output),
        db_url=mimic_demo_url,
    )
    assert done.returncode == 1  # bp could not run
    lines = output.read_text().splitlines()
    assert len(lines) == 1761
    assert {json.loads(line)["resourceType"] for line in lines} == {"Condition"}
    assert (
        f"river: resource {BP}: table public.labevents does not exist in the source database\n"
        in done.stderr
    )
    summary = [line for line in done.stderr.splitlines() if line.startswith(DIAGNOSIS)]
    assert summary and summary[0].split()[1:3] == ["1761", "0"]


@pytest.mark.parametrize("args", [["batch", "--mapping", str(MIMIC_DEMO_MAPPING)], []])
def test_wrong_command_lines_exit_2(args, mimic_demo_url):
    assert river(*args, db_url=mimic_demo_url).returncode == 2


def test_a_wrong_setting_is_one_sentence(mimic_demo_url):
    done = river(
        "check",
        "--mapping",
        str(MIMIC_DEMO_MAPPING),
        db_url=mimic_demo_url,
        SOURCE_TIMEZONE="Mars/Olympus",
    )
    assert done.returncode == 1
    assert done.stderr.startswith(
        "river: setting SOURCE_TIMEZONE: time zone 'Mars/Olympus' is neither"
    )
    assert "Traceback" not in done.stderr
