"""The mapping engine on real data: the MIMIC-III demo in PostgreSQL and the
mimic-demo.json mappings written by Pyrog's authors."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from river.errors import SourceError
from test.conftest import without_last_updated

SOURCE = "cktlnp0bb00020mmz5fks20ij"
PATIENT_REF = "62248c11-1d3f-4071-bfa8-f640764a9f63"  # feat_6's logical reference
ENCOUNTER_REF = "5a9ba1c2-dfab-420c-96ff-b6fc6d63421b"
FEAT_6 = "cktlnp0ji006e0mmzat7dwb98"
FEAT_2 = "cktlnp0hm004r0mmzyer0xe7i"
DIAGNOSIS = "cktlnp0oa00at0mmzp0b1u7zx"
MEDICATION_REQUEST = "cktlnp0st00f30mmzasgvrbu9"
BAD_GENDER = "ckur2ervw000107l437vy9vuq"
BP = "cktlnp0lh00880mmzfhsoshbm"

# For each resource, the SQL (written by hand from the mapping) that counts its instances.
EXPECTED_COUNT_SQL = {
    "cktlnp0f300300mmznmyqln70": "SELECT count(*) FROM patients",
    "cktlnp0fq003f0mmzcbyhan8i": "SELECT count(*) FROM patients",
    "cktlnp0g1003l0mmzo9kyys8k": "SELECT count(*) FROM patients",
    "cktlnp0gk003z0mmzqft1u1b9": "SELECT count(*) FROM patients WHERE row_id = 9467",
    "cktlnp0h2004d0mmz6s284p1o": "SELECT count(*) FROM patients",
    FEAT_2: "SELECT count(*) FROM patients WHERE subject_id = 10059",
    "cktlnp0hz00500mmzpor3i6hn": "SELECT count(*) FROM admissions WHERE subject_id = 10011",
    FEAT_6: "SELECT count(*) FROM patients",
    "cktlnp0kk007f0mmzixgvjmdt": "SELECT count(*) FROM patients WHERE gender = 'F' AND subject_id > 0",
    "cktlnp0nw00ai0mmzu53bsui8": (
        "SELECT count(DISTINCT p.subject_id) FROM patients p "
        "JOIN admissions a ON a.subject_id = p.subject_id WHERE a.admission_type = 'EMERGENCY'"
    ),
    DIAGNOSIS: "SELECT count(*) FROM diagnoses_icd",
    "cktlnp0pj00bx0mmz791gpi55": "SELECT count(*) FROM procedures_icd",
    "cktlnp0qp00d20mmzy742u6pl": "SELECT count(*) FROM microbiologyevents",
    "cktlnp0se00eq0mmzj88zi1r8": "SELECT count(*) FROM caregivers",
    MEDICATION_REQUEST: "SELECT count(*) FROM prescriptions",
    BAD_GENDER: "SELECT count(*) FROM patients",
}


@pytest.fixture(scope="module")
def runs(engine):
    """Every resource run once: resource id -> outcomes."""
    return {resource_id: list(engine.run(resource_id)) for resource_id in EXPECTED_COUNT_SQL}


def ref(logical_reference: str, value: str) -> str:
    return str(uuid.uuid5(uuid.UUID(logical_reference), value))


def tags(resource_id: str) -> dict:
    return {
        "tag": [
            {"system": "http://terminology.arkhn.org/CodeSystem/source", "code": SOURCE},
            {"system": "http://terminology.arkhn.org/CodeSystem/resource", "code": resource_id},
        ]
    }


@pytest.mark.parametrize("resource_id", sorted(EXPECTED_COUNT_SQL))
def test_one_instance_per_row_after_filters(runs, mimic_demo_url, resource_id):
    with psycopg.connect(mimic_demo_url) as connection:
        expected = connection.execute(EXPECTED_COUNT_SQL[resource_id]).fetchone()[0]
    outcomes = runs[resource_id]
    assert len(outcomes) == expected
    assert len({o.primary_key_value for o in outcomes}) == expected


@pytest.mark.parametrize("resource_id", sorted(set(EXPECTED_COUNT_SQL) - {BAD_GENDER}))
def test_every_instance_is_valid_fhir(runs, resource_id):
    errors = [o.error for o in runs[resource_id] if o.error]
    assert errors == []
    assert all(o.resource["meta"]["lastUpdated"] for o in runs[resource_id])


def test_bad_gender_instances_are_errors_naming_patient_gender(runs):
    outcomes = runs[BAD_GENDER]
    assert len(outcomes) == 100
    for outcome in outcomes:
        assert outcome.resource is None
        # The element and the kind of fault; the value by its shape, never quoted.
        assert "Patient.gender: a text of 18 characters is not one of male," in outcome.error
        assert "not-a-valid-gender" not in outcome.error


def test_bp_is_refused_naming_the_missing_table(engine):
    with pytest.raises(SourceError) as refused:
        list(engine.run(BP))
    assert str(refused.value) == (
        f"resource {BP}: table public.labevents does not exist in the source database"
    )


def test_ids_are_stable_across_runs(engine, runs):
    again = {o.primary_key_value: o.resource["id"] for o in engine.run(DIAGNOSIS)}
    first = {o.primary_key_value: o.resource["id"] for o in runs[DIAGNOSIS]}
    assert again == first
    assert first[112346] == ref("9a07bc7d-1e7b-46ff-afd5-f9356255b2f6", "112346")


def by_key(runs, resource_id, key):
    (outcome,) = [o for o in runs[resource_id] if o.primary_key_value == key]
    assert outcome.error is None, outcome.error
    return without_last_updated(outcome.resource)


def test_patient_with_many_admissions(runs):
    # patients.csv: 31311,41976,M,2136-07-28,2202-12-05; 15 admissions, all MARRIED / SPAN
    assert by_key(runs, FEAT_6, 41976) == {
        "resourceType": "Patient",
        "id": ref(PATIENT_REF, "41976"),
        "meta": tags(FEAT_6),
        "gender": "male",
        "birthDate": "2136-07-28",
        "deceasedDateTime": "2202-12-05",
        "maritalStatus": {"coding": [{"code": "MARRIED"}]},
        "communication": [{"language": {"coding": [{"code": "SPAN"}]}}],
        "identifier": [{"value": "31311 (1)"}],
    }


def test_patient_whose_admissions_have_null_language(runs):
    # 9544,10088,M,2029-07-09,2107-07-20; 3 admissions, language NULL, UNKNOWN (DEFAULT)
    assert by_key(runs, FEAT_6, 10088) == {
        "resourceType": "Patient",
        "id": ref(PATIENT_REF, "10088"),
        "meta": tags(FEAT_6),
        "gender": "male",
        "birthDate": "2029-07-09",
        "deceasedDateTime": "2107-07-20",
        "maritalStatus": {"coding": [{"code": "UNKNOWN (DEFAULT)"}]},
        "identifier": [{"value": "9544 (1)"}],
    }


def test_joined_rows_fill_a_list_of_identifiers(runs):
    # admissions of 10059: 142582 and 122098
    resource = by_key(runs, FEAT_2, 10059)
    system = "http://terminology.arkhn.org/33684f2e-bb84-4863-baea-7f1f199e0dd4"
    assert resource["identifier"] == [
        {"system": system, "value": "122098"},
        {"system": system, "value": "142582"},
    ] or resource["identifier"] == [
        {"system": system, "value": "142582"},
        {"system": system, "value": "122098"},
    ]


def test_diagnosis_whose_code_is_missing_from_the_dictionary(runs):
    # diagnoses_icd.csv: 112346,10006,142345,3,5672; 5672 is not in d_icd_diagnoses
    assert by_key(runs, DIAGNOSIS, 112346) == {
        "resourceType": "Condition",
        "id": ref("9a07bc7d-1e7b-46ff-afd5-f9356255b2f6", "112346"),
        "meta": tags(DIAGNOSIS),
        "subject": {
            "type": "Patient",
            "identifier": {
                "system": f"http://terminology.arkhn.org/{PATIENT_REF}",
                "value": "10006",
            },
            "reference": f"Patient/{ref(PATIENT_REF, '10006')}",
        },
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-9", "code": "5672"}]},
        "encounter": {
            "type": "Encounter",
            "identifier": {
                "system": f"http://terminology.arkhn.org/{ENCOUNTER_REF}",
                "value": "142345",
            },
            "display": "142345",
            "reference": f"Encounter/{ref(ENCOUNTER_REF, '142345')}",
        },
    }


def test_prescription_with_null_columns(runs):
    # prescriptions.csv: 2182947,10076,198503,,2107-03-22 00:00:00,2107-03-22 00:00:00,MAIN,
    # Tarceva,Tarceva,Tarceva,,058374,(ndc NULL),150 mg Oral Tab,150,mg,1,TAB,ORAL
    assert by_key(runs, MEDICATION_REQUEST, 2182947) == {
        "resourceType": "MedicationRequest",
        "id": ref("6233f5c4-f3e4-4cbb-ac15-4e692aa4f469", "2182947"),
        "meta": tags(MEDICATION_REQUEST),
        "status": "active",
        "intent": "proposal",
        "dispenseRequest": {
            "validityPeriod": {
                "start": "2107-03-22T00:00:00+02:00",
                "end": "2107-03-22T00:00:00+02:00",
            }
        },
        "subject": {
            "type": "Patient",
            "identifier": {
                "system": f"http://terminology.arkhn.org/{PATIENT_REF}",
                "value": "10076",
            },
            "display": "10076",
            "reference": f"Patient/{ref(PATIENT_REF, '10076')}",
        },
        "encounter": {
            "type": "Encounter",
            "identifier": {
                "system": f"http://terminology.arkhn.org/{ENCOUNTER_REF}",
                "value": "198503",
            },
            "display": "198503",
            "reference": f"Encounter/{ref(ENCOUNTER_REF, '198503')}",
        },
        "medicationCodeableConcept": {
            "coding": [{"system": "http://hl7.org/fhir/sid/ndc", "display": "Tarceva"}],
            "text": "Tarceva",
        },
        "dosageInstruction": [{"route": {"coding": [{"code": "ORAL"}]}}],
    }


def test_concept_map_gives_gender(runs):
    feat_5 = [o for o in runs["cktlnp0kk007f0mmzixgvjmdt"]]
    assert {o.resource["gender"] for o in feat_5} == {"female"}
    assert all(o.warnings == [] for o in feat_5)


def test_preview_of_a_few_rows(engine):
    answer = engine.preview(FEAT_6, ["41976", "10088", "99999999"])
    assert [r["id"] for r in answer["instances"]] == [
        ref(PATIENT_REF, "10088"),
        ref(PATIENT_REF, "41976"),
    ]
    assert answer["errors"] == [
        {
            "resource_id": FEAT_6,
            "primary_key_value": "99999999",
            "message": "no row has this primary key value (after filters)",
        }
    ]


# feat_2 has a single instance, of two rows: it never takes the fast path.
@pytest.mark.parametrize("resource_id", sorted(set(EXPECTED_COUNT_SQL) - {BAD_GENDER, FEAT_2}))
def test_fast_path_runs_and_equals_the_general_builder(engine, resource_id):
    """Single-row records take the compiled fast path; it must never need its
    fallback on valid data, and must give what the general builder gives."""
    transformer = engine.transformer(resource_id)
    single_row = 0
    for record in engine.records(resource_id):
        columns = record.columns
        if len(columns[engine.plan(resource_id).primary_key.label]) != 1:
            continue
        single_row += 1
        head = {"resourceType": "X", "id": "x", "meta": {}}
        fast = transformer._fast(columns, [], dict(head))  # raises if it would fall back
        general = {**head, **transformer._general(columns, 1, [])}
        assert fast == general
    assert single_row > 0
