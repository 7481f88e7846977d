"""No patient data where it does not belong (river/errors.py), and no oracle for secrets.

The pipeline runs a mapping of its own over a scratch source whose rows hold planted,
distinctive values (names, phone numbers) that fail in every way an instance can: a
built-in script that cannot read a date, a user script whose exception quotes its value,
a cast, invalid FHIR, a timestamp Python cannot hold. None of these values may appear in
the batch's errors, in any answer of the API but the FHIR resources themselves, or in the
services' logs; each error still names the resource, the primary key value and the
attribute (or column).

The FHIR store's database belongs to a role with a password of its own: the API, which
no longer rewrites its answers, answers a request naming that password exactly as it
answers one naming any other string.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from river.identity import fhir_id
from test.conftest import postgres_url, scratch_database
from test.e2e.conftest import Pipeline, make_pipeline

RUN = uuid.uuid4().hex[:8]
ROLE = f"river_nopd_{RUN}"
SECRET = f"Sekr3t-{uuid.uuid4().hex[:16]}"
OTHER = f"Xother-{uuid.uuid4().hex[:16]}"  # as long as SECRET, as unknown
LOGICAL_REFERENCE = "5f0d6a1e-3c1b-4e55-9a39-6f6c9b1d2e77"
RESOURCE = "planted-patient"

# id -> the row; every text is distinctive, so that finding it anywhere means it leaked.
ROWS: dict[int, dict[str, Any]] = {
    1: {  # goes through: its values are in the FHIR store, and nowhere else
        "family": "Zyxwvutska",
        "given": "Quintessa",
        "phone": "+33 7 91 82 73 64",
        "birth": "1961-04-12",
        "gender": "female",
    },
    2: {  # clean_date cannot read it (transform)
        "family": "Brumblethorpe",
        "given": "Ottoline",
        "phone": "+33 6 55 44 33 21",
        "birth": "Blorptember-31-1961",
        "gender": "male",
    },
    3: {  # not a FHIR gender code (validation)
        "family": "Quagmirelli",
        "given": "Perpetua",
        "phone": "+33 6 12 98 76 54",
        "birth": "1970-01-02",
        "gender": "Xenogender-5512",
    },
    4: {  # a timestamp Python cannot hold (extract)
        "family": "Wexfordshire",
        "given": "Anselmo",
        "phone": "+33 6 01 23 45 67",
        "birth": "1980-05-06",
        "gender": "other",
        "died": "98765-04-03 01:02:03",
    },
    5: {  # not an integer (cast)
        "family": "Plinkington",
        "given": "Seraphine",
        "phone": "+33 6 76 54 32 10",
        "birth": "1990-07-08",
        "gender": "female",
        "twins": "Seventeen-Twins-3307",
    },
    6: {  # a user script raises, its message quoting the value (user code)
        "family": "Fnordsworth",
        "given": "Marmaduke",
        "phone": "Call Marmaduke at the Grindlewick farm",
        "birth": "1999-09-09",
        "gender": "male",
    },
}
FAILED = {  # id -> stage, and the attribute or column the message names
    2: ("transform", "attribute birthDate: script clean_date failed on column people.birth"),
    3: ("transform", "invalid FHIR: Patient.gender: a text of 15 characters is not one of"),
    4: ("extract", "column people.died: a timestamp outside the years 1 to 9999"),
    5: ("transform", "attribute multipleBirthInteger: cannot cast a text of 20 characters"),
    6: ("transform", "attribute telecom[0].value: script leaky_phone failed on column"),
}
# What must not leak: every text above that no log could hold by chance.
PLANTED = [
    *(row[key] for row in ROWS.values() for key in ("family", "given", "phone")),
    "Blorptember",
    "Xenogender",
    "98765-04-03",
    "Seventeen-Twins",
    "Grindlewick",
]

USER_SCRIPTS = textwrap.dedent(
    '''
    from river.scripts import cleaning_script


    @cleaning_script
    def leaky_phone(value):
        """A script whose exception quotes its value, as Python's own do."""
        if value and any(c.isalpha() for c in value):
            raise ValueError(f"no phone number in {value!r}")
        return value
    '''
)


def column(name: str) -> dict[str, str]:
    return {"id": f"people.{name}", "table": "people", "column": name}


def attribute(path: str, fhir_type: str, source: str = "", script: str = "", static: str = ""):
    groups = []
    if source or static:
        groups.append(
            {
                "id": f"group-{path}",
                "merging_script": "",
                "static_inputs": [{"value": static}] if static else [],
                "sql_inputs": [
                    {
                        "column": f"people.{source}",
                        "script": script,
                        "concept_map_id": "",
                        "joins": [],
                    }
                ]
                if source
                else [],
                "conditions": [],
            }
        )
    return {"path": path, "slice_name": "", "definition_id": fhir_type, "input_groups": groups}


def mapping() -> dict[str, Any]:
    columns = ["id", "family", "given", "phone", "birth", "gender", "died", "twins"]
    return {
        "id": "planted",
        "name": "Planted values",
        "version": "1",
        "created_at": "2026-12-01T00:00:00+00:00",
        "updated_at": "2026-12-01T00:00:00+00:00",
        "credential": {
            "host": "127.0.0.1",
            "port": 5432,
            "database": "unused",  # SOURCE_DB_URL says where
            "login": "postgres",
            "password": "postgres",
            "model": "POSTGRES",
            "owners": [{"id": "owner", "name": "public", "columns": [column(c) for c in columns]}],
        },
        "resources": [
            {
                "id": RESOURCE,
                "label": "planted patient",
                "definition_id": "Patient",
                "definition": {
                    "id": "Patient",
                    "type": "Patient",
                    "kind": "resource",
                    "derivation": "specialization",
                    "url": "http://hl7.org/fhir/StructureDefinition/Patient",
                },
                "logical_reference": LOGICAL_REFERENCE,
                "primary_key_owner": "owner",
                "primary_key_table": "people",
                "primary_key_column": "id",
                "filters": [],
                "attributes": [
                    attribute("identifier[0]", "Identifier"),
                    attribute("identifier[0].value", "string", "id"),
                    attribute("name[0]", "HumanName"),
                    attribute("name[0].family", "string", "family"),
                    attribute("name[0].given[0]", "string", "given"),
                    attribute("telecom[0]", "ContactPoint"),
                    attribute("telecom[0].system", "code", static="phone"),
                    attribute("telecom[0].value", "string", "phone", script="leaky_phone"),
                    attribute("gender", "code", "gender"),
                    attribute("birthDate", "date", "birth", script="clean_date"),
                    attribute("deceasedDateTime", "dateTime", "died", script="clean_dateTime"),
                    attribute("multipleBirthInteger", "integer", "twins"),
                ],
            }
        ],
    }


def with_role(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"{ROLE}:{SECRET}@{parts.hostname}:{parts.port}").geturl()


@pytest.fixture(scope="module")
def planted(tmp_path_factory, topic_prefix) -> Iterator[Pipeline]:
    tmp: Path = tmp_path_factory.mktemp("no-patient-data")
    with (
        scratch_database("river_nopd_source") as source_url,
        scratch_database("river_nopd_store") as store_url,
    ):
        with psycopg.connect(source_url, autocommit=True) as db:
            db.execute(
                "CREATE TABLE people (id integer PRIMARY KEY, family text, given text,"
                " phone text, birth text, gender text, died timestamp, twins text)"
            )
            for key, row in ROWS.items():
                db.execute(
                    "INSERT INTO people VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    [key, *(row.get(c) for c in ("family", "given", "phone", "birth"))]
                    + [row.get("gender"), row.get("died"), row.get("twins")],
                )
        store = urlsplit(store_url).path.lstrip("/")
        with psycopg.connect(postgres_url(), autocommit=True) as admin:
            admin.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{SECRET}'")
            admin.execute(f'ALTER DATABASE "{store}" OWNER TO {ROLE}')
        try:
            mappings = tmp / "mappings"
            mappings.mkdir()
            (mappings / "planted.json").write_text(json.dumps(mapping()))
            (tmp / "scripts.py").write_text(USER_SCRIPTS)
            pipeline = make_pipeline(tmp, topic_prefix, with_role(store_url), source_url)
            pipeline.env.update(
                {"MAPPINGS": str(mappings), "CUSTOM_SCRIPTS": str(tmp / "scripts.py")}
            )
            with pipeline:
                yield pipeline
        finally:
            with psycopg.connect(postgres_url(), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{store}" WITH (FORCE)')
                admin.execute(f"DROP ROLE IF EXISTS {ROLE}")


def leaks(text: str) -> list[str]:
    return [value for value in PLANTED if value in text]


def test_errors_answers_and_logs_carry_no_planted_value(planted):
    pipeline = planted
    answers: list[str] = []

    def ask(method: str, path: str, **kwargs: Any) -> Any:
        answer = pipeline.request(method, path, **kwargs)
        answers.append(answer.text)
        return answer

    batch_id = ask("POST", "/batch", json={"resource_ids": [RESOURCE]}).json()["batch_id"]
    state = pipeline.wait(batch_id, timeout=120)
    assert state["status"] == "completed", state
    (progress,) = state["resources"]
    assert (progress["expected"], progress["loaded"], progress["failed"]) == (6, 1, 5), progress

    errors = ask("GET", f"/batches/{batch_id}/errors", params={"limit": 100}).json()["items"]
    by_key = {error["primary_key_value"]: error for error in errors}
    assert set(by_key) == set(FAILED), errors
    for key, (stage, named) in FAILED.items():
        error = by_key[key]
        assert error["resource_id"] == RESOURCE, error
        assert error["stage"] == stage, error
        assert named in error["message"], error
    assert "ValueError (its message is not shown" in by_key[6]["message"]

    ask("GET", f"/batches/{batch_id}")
    ask("GET", "/batches")
    ask("GET", "/resources")
    ask("GET", "/health")
    retry = ask("POST", f"/batches/{batch_id}/retry").json()["batch_id"]
    assert pipeline.wait(retry, timeout=120)["status"] == "completed"
    ask("GET", f"/batches/{retry}/errors")
    preview = ask("POST", "/preview", json={"resource_id": RESOURCE, "primary_key_values": [*ROWS]})
    said = preview.json()
    assert len(said["instances"]) == 1 and len(said["errors"]) == 5, said["errors"]
    # The instances are the user's data; what the preview says about the others is not.
    answers[-1] = json.dumps({"errors": said["errors"], "warnings": said["warnings"]})

    for answer in answers:
        assert not leaks(answer), (leaks(answer), answer)
    for name in ("api", "extractor", "transformer", "loader"):
        log = pipeline.log(name)
        assert not leaks(log), (name, leaks(log), log[-3000:])

    # The values were there to leak: the one instance that went through holds them.
    stored = pipeline.request(
        "GET", f"/fhir/Patient/{fhir_id(uuid.UUID(LOGICAL_REFERENCE), 1)}"
    ).json()
    assert stored["name"][0]["family"] == ROWS[1]["family"]
    assert stored["telecom"][0]["value"] == ROWS[1]["phone"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/batch", lambda word: {"resource_ids": [word]}),
        ("POST", "/batch", lambda word: {"resource_ids": [RESOURCE, f"x-{word}-y"]}),
        ("POST", "/preview", lambda word: {"resource_id": word, "primary_key_values": [1]}),
        ("POST", "/preview", lambda word: {"resource_id": RESOURCE, "primary_key_values": [word]}),
        ("POST", "/batch", lambda word: {"resource_ids": [RESOURCE], "primary_key_values": [word]}),
        ("GET", "/batches/{}", None),
        ("GET", "/batches/{}/errors", None),
        ("GET", "/fhir/Patient/{}", None),
    ],
)
def test_the_store_password_is_answered_as_any_other_string(planted, method, path, body):
    """No oracle: the answer naming the real password is the answer naming another
    string of its length, that string put in its place; nothing says `***`."""

    def answer(word: str) -> tuple[int, str]:
        got = planted.request(
            method, path.format(word), json=body(word) if body is not None else None
        )
        return got.status_code, got.text.replace(word, "<word>")

    status, text = answer(SECRET)
    assert (status, text) == answer(OTHER)
    assert status in (400, 404), text
    assert "***" not in text
