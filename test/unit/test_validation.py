"""FHIR R4 validation (river.validation): what passes, and the exact message of what fails."""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class

from river.validation import (
    SCHEMA_FILE,
    SCHEMA_SHA256,
    SUPPLEMENT_FILE,
    Validator,
    _registry,
    resource_types,
)

ROOT = Path(__file__).resolve().parents[2]
PATIENT_ID = "0b8ea5c2-8e0f-5e52-9c8a-1b2f3e4d5c6a"
TERMINOLOGY = "http://terminology.arkhn.org"
GENDERS = "male, female, other, unknown"
ENCOUNTER_STATUSES = "planned, arrived, triaged, in-progress, onleave, finished, cancelled, entered-in-error, unknown"
EVENT_STATUSES = (
    "preparation, in-progress, not-done, on-hold, stopped, completed, entered-in-error, unknown"
)


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator()


def meta() -> dict:
    return {
        "lastUpdated": "2024-01-01T10:00:00.123+00:00",
        "tag": [
            {"system": f"{TERMINOLOGY}/CodeSystem/source", "code": "cktlnp0f300300mmznmyqln70"},
            {"system": f"{TERMINOLOGY}/CodeSystem/resource", "code": "cktlnp0ji006e0mmzat7dwb98"},
        ],
    }


def reference(resource_type: str, value: str) -> dict:
    return {
        "reference": f"{resource_type}/{PATIENT_ID}",
        "type": resource_type,
        "identifier": {"system": f"{TERMINOLOGY}/{PATIENT_ID}", "value": value},
    }


def coding(system: str, code: str, display: str | None = None) -> dict:
    concept = {"system": system, "code": code}
    if display:
        concept["display"] = display
    return {"coding": [concept]}


def patient() -> dict:
    return {
        "resourceType": "Patient",
        "id": PATIENT_ID,
        "meta": meta(),
        "identifier": [
            {"system": f"{TERMINOLOGY}/patients", "value": "31311 (1)"},
            {"value": "41976", "period": {"start": "2136-07-28"}},
        ],
        "name": [{"use": "official", "family": "Doe", "given": ["John", "Q"]}],
        "gender": "male",
        "birthDate": "2136-07-28",
        "deceasedDateTime": "2202-12-05T00:00:00+02:00",
        "maritalStatus": coding("http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "M"),
        "communication": [{"language": {"coding": [{"code": "SPAN"}]}, "preferred": True}],
    }


def condition() -> dict:
    return {
        "resourceType": "Condition",
        "id": "9a07bc7d-1e7b-46ff-afd5-f9356255b2f6",
        "meta": meta(),
        "code": coding("http://hl7.org/fhir/sid/icd-9", "5672", "Peritonitis"),
        "subject": reference("Patient", "10006"),
        "encounter": {**reference("Encounter", "142345"), "display": "142345"},
    }


def encounter() -> dict:
    return {
        "resourceType": "Encounter",
        "id": "e-142345",
        "meta": meta(),
        "status": "finished",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "IMP",
            "display": "inpatient encounter",
        },
        "period": {"start": "2094-03-05T00:00:00+02:00", "end": "2094-03-09T14:02:00Z"},
        "subject": reference("Patient", "10006"),
    }


def observation() -> dict:
    loinc = "http://loinc.org"
    ucum = "http://unitsofmeasure.org"
    return {
        "resourceType": "Observation",
        "id": "blood-pressure",
        "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/vitalsigns"]},
        "status": "final",
        "category": [
            coding("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs")
        ],
        "code": {**coding(loinc, "85354-9"), "text": "Blood pressure systolic & diastolic"},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": "2012-09-17",
        "component": [
            {
                "code": coding(loinc, "8480-6", "Systolic blood pressure"),
                "valueQuantity": {"value": 107, "unit": "mmHg", "system": ucum, "code": "mm[Hg]"},
            },
            {
                "code": coding(loinc, "8462-4", "Diastolic blood pressure"),
                "valueQuantity": {"value": 60.5, "unit": "mmHg", "system": ucum, "code": "mm[Hg]"},
                "interpretation": [
                    coding(
                        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "L"
                    )
                ],
            },
        ],
    }


def medication_request() -> dict:
    return {
        "resourceType": "MedicationRequest",
        "id": "6233f5c4-f3e4-4cbb-ac15-4e692aa4f469",
        "meta": meta(),
        "contained": [
            {
                "resourceType": "Medication",
                "id": "med0310",
                "code": coding("http://snomed.info/sct", "430127000"),
            }
        ],
        "status": "active",
        "intent": "proposal",
        "medicationReference": {"reference": "#med0310"},
        "subject": reference("Patient", "10076"),
        "authoredOn": "2107-03-22T00:00:00+02:00",
        "dispenseRequest": {
            "validityPeriod": {"start": "2107-03-22T00:00:00+02:00"},
            "numberOfRepeatsAllowed": 0,
        },
        "dosageInstruction": [
            {
                "sequence": 1,
                "route": {"coding": [{"code": "ORAL"}]},
                "timing": {"repeat": {"frequency": 1, "period": 4, "periodUnit": "h"}},
                "doseAndRate": [{"doseQuantity": {"value": 150, "unit": "mg"}}],
            }
        ],
    }


def procedure() -> dict:
    return {
        "resourceType": "Procedure",
        "id": "p-1",
        "status": "completed",
        "code": coding("http://www.cms.gov/Medicare/Coding/ICD9", "9604"),
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "performedDateTime": "2107-03-22",
    }


def practitioner() -> dict:
    return {
        "resourceType": "Practitioner",
        "id": "caregiver-15007",
        "active": True,
        "identifier": [{"system": f"{TERMINOLOGY}/caregivers", "value": "15007"}],
        "name": [{"text": "RN 15007"}],
        "qualification": [{"code": {"text": "RN"}}],
    }


VALID = {
    "Patient": patient,
    "Condition": condition,
    "Encounter": encounter,
    "Observation": observation,
    "MedicationRequest": medication_request,
    "Procedure": procedure,
    "Practitioner": practitioner,
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_resources_pass(validator, name):
    resource = VALID[name]()
    assert validator.validate(resource) == []
    assert validator.is_valid(resource)


@pytest.mark.parametrize("name", sorted(VALID))
def test_the_valid_resources_are_valid_for_fhir_resources_too(name):
    """An independent implementation agrees they are valid (R4B is R4 for these)."""
    get_fhir_model_class(name).model_validate(VALID[name]())


def with_(make, **changes) -> dict:
    resource = make()
    for key, value in changes.items():
        if value is None:
            del resource[key]
        else:
            resource[key] = value
    return resource


INVALID = [
    pytest.param(
        with_(patient, gender="not-a-valid-gender"),
        [f"Patient.gender: a text of 18 characters is not one of {GENDERS}"],
        id="bad-gender-code",
    ),
    pytest.param(with_(patient, foo="bar"), ["Patient.foo: unknown element"], id="unknown-element"),
    pytest.param(
        with_(patient, active="true"),
        ["Patient.active: must be a boolean, not a text of 4 characters"],
        id="string-for-boolean",
    ),
    pytest.param(
        with_(encounter, **{"class": [encounter()["class"]]}),
        ["Encounter.class: must be a single Coding, not an array"],
        id="array-for-single-coding",
    ),
    pytest.param(
        with_(patient, gender=["male"]),
        ["Patient.gender: must be a single code, not an array"],
        id="array-for-single-code",
    ),
    pytest.param(
        with_(patient, name={"family": "Doe"}),
        ["Patient.name: must be an array"],
        id="single-for-array",
    ),
    pytest.param(
        with_(condition, code={"coding": {"code": "5672"}}),
        ["Condition.code.coding: must be an array"],
        id="single-for-nested-array",
    ),
    pytest.param(
        with_(patient, birthDate="2080-13-01"),
        ["Patient.birthDate: a text of 10 characters does not match the date format"],
        id="bad-date",
    ),
    pytest.param(
        with_(patient, birthDate="2023-02-29"),
        ["Patient.birthDate: a text of 10 characters is not a valid date (no such day)"],
        id="no-such-day",
    ),
    pytest.param(
        with_(patient, birthDate="2136-07-28T00:00:00+02:00"),
        ["Patient.birthDate: a text of 25 characters does not match the date format"],
        id="time-in-a-date",
    ),
    pytest.param(
        with_(patient, deceasedDateTime="2094-03-05T00:00:00"),
        ["Patient.deceasedDateTime: a text of 19 characters does not match the dateTime format"],
        id="dateTime-without-offset",
    ),
    pytest.param(
        with_(patient, deceasedDateTime="2094-03-05 00:00:00"),
        ["Patient.deceasedDateTime: a text of 19 characters does not match the dateTime format"],
        id="dateTime-with-a-space",
    ),
    pytest.param(
        with_(patient, meta={"lastUpdated": "2024-01-01"}),
        ["Patient.meta.lastUpdated: a text of 10 characters does not match the instant format"],
        id="instant-without-time",
    ),
    pytest.param(
        with_(patient, id="not a valid id!"),
        ["Patient.id: a text of 15 characters does not match the id format"],
        id="bad-id",
    ),
    pytest.param(
        with_(patient, id="x" * 65),
        ["Patient.id: a text of 65 characters does not match the id format"],
        id="id-too-long",
    ),
    pytest.param(
        with_(encounter, status=None),
        ["Encounter.status: required element missing"],
        id="encounter-without-status",
    ),
    pytest.param(
        with_(observation, status=None),
        ["Observation.status: required element missing"],
        id="observation-without-status",
    ),
    pytest.param(
        with_(encounter, status="done"),
        [f"Encounter.status: a text of 4 characters is not one of {ENCOUNTER_STATUSES}"],
        id="encounter-status-not-in-value-set",
    ),
    pytest.param(
        with_(condition, subject=None),
        ["Condition.subject: required element missing"],
        id="condition-without-subject",
    ),
    pytest.param(
        with_(procedure, status="done"),
        [f"Procedure.status: a text of 4 characters is not one of {EVENT_STATUSES}"],
        id="binding-the-schema-leaves-open",
    ),
    pytest.param(
        with_(medication_request, intent="wish"),
        [
            "MedicationRequest.intent: a text of 4 characters is not one of proposal, plan, order, "
            "original-order, reflex-order, filler-order, instance-order, option"
        ],
        id="medication-request-intent",
    ),
    pytest.param(
        with_(medication_request, medicationReference=None),
        [
            "MedicationRequest.medication[x]: required element missing "
            "(one of medicationCodeableConcept, medicationReference)"
        ],
        id="required-choice-missing",
    ),
    pytest.param(
        with_(patient, deceasedBoolean=True),
        ["Patient.deceased[x]: only one of deceasedBoolean, deceasedDateTime may be present"],
        id="two-choices",
    ),
    pytest.param(
        with_(patient, name=[{"family": "Doe"}, {"given": ["Jo", ""]}]),
        ["Patient.name[1].given[1]: must not be an empty string"],
        id="nested-path",
    ),
    pytest.param(with_(patient, name=[]), ["Patient.name: must not be an empty array"], id="[]"),
    pytest.param(
        with_(patient, name=[{}]), ["Patient.name[0]: must not be an empty object"], id="{}"
    ),
    pytest.param(
        with_(patient, gender=None) | {"gender": None},
        ["Patient.gender: must not be null"],
        id="null",
    ),
    pytest.param(
        with_(procedure, extension=[{"valueString": "x"}]),
        ["Procedure.extension[0].url: required element missing"],
        id="extension-without-url",
    ),
    pytest.param(
        with_(
            observation,
            component=[{"code": {"text": "count"}, "valueInteger": 1.5}],
        ),
        ["Observation.component[0].valueInteger: must be an integer, not a decimal number"],
        id="decimal-for-integer",
    ),
    pytest.param(
        with_(
            medication_request,
            contained=[{"resourceType": "Medication", "status": "gone"}, {"id": "x"}],
        ),
        [
            "MedicationRequest.contained[0].status: a text of 4 characters is not one of active,"
            " inactive, "
            "entered-in-error",
            "MedicationRequest.contained[1].resourceType: required element missing",
        ],
        id="contained-resources",
    ),
    pytest.param(
        with_(encounter, status="done", subject="Patient/1", period={"start": "yesterday"}),
        [
            f"Encounter.status: a text of 4 characters is not one of {ENCOUNTER_STATUSES}",
            "Encounter.period.start: a text of 9 characters does not match the dateTime format",
            "Encounter.subject: must be an object (Reference), not a text of 9 characters",
        ],
        id="every-fault-listed",
    ),
    pytest.param(
        with_(patient, multipleBirthInteger=2**31),
        [
            "Patient.multipleBirthInteger: a whole number of 10 digits is out of range for"
            " integer (-2,147,483,648 to 2,147,483,647)"
        ],
        id="integer-out-of-range",
    ),
    pytest.param({"gender": "male"}, ["resourceType: required element missing"], id="no-type"),
    pytest.param(
        {"resourceType": "Patiant"},
        ["resourceType: 'Patiant' is not a FHIR R4 resource type"],
        id="unknown-type",
    ),
    pytest.param(
        ["Patient"], ["resource: must be a JSON object, not an array"], id="not-an-object"
    ),
]


@pytest.mark.parametrize(("resource", "messages"), INVALID)
def test_invalid_resources_name_the_element(validator, resource, messages):
    assert validator.validate(resource) == messages
    assert not validator.is_valid(resource)


def test_messages_describe_values_by_their_shape_never_quote_them(validator):
    """Values come from the source: a message names the element and the kind of fault."""
    planted = {
        "gender": "Zorglub-7731",
        "birthDate": "Quux-2291-13-45",
        "active": "Blorp-5512",
        "multipleBirthInteger": 98765432109,
        "name": [{"family": "Fnordsson", "given": [7731]}],
    }
    messages = validator.validate({"resourceType": "Patient", **planted})
    assert len(messages) == len(planted)
    text = " ".join(messages)
    for value in ("Zorglub", "7731", "Quux", "2291", "Blorp", "98765432109", "Fnordsson"):
        assert value not in text, (value, messages)


def test_a_primitive_given_by_its_extension_alone_is_present(validator):
    resource = with_(encounter, status=None)
    resource["_status"] = {"extension": [{"url": "http://example.org/why", "valueCode": "asked"}]}
    assert validator.validate(resource) == []


def test_dates_times_and_instants(validator):
    for value in (
        "2094",
        "2094-03",
        "2094-03-05",
        "2094-03-05T00:00:00+02:00",
        "2094-03-05T23:59:59.999-05:00",
        "2024-02-29T10:00:00Z",
    ):
        assert validator.validate(with_(patient, deceasedDateTime=value)) == [], value
    for value in ("2024-01-01T10:00:00Z", "2024-01-01T10:00:00.123+00:00"):
        resource = with_(patient, meta={"lastUpdated": value})
        assert validator.validate(resource) == [], value


def test_messages_are_capped(validator):
    resource = patient()
    resource.update({f"x{n}": n for n in range(30)})
    assert len(validator.validate(resource)) == 20
    assert len(Validator(max_messages=3).validate(resource)) == 3


def test_resource_types():
    types = resource_types()
    assert len(types) == 146
    assert {"Patient", "Condition", "Encounter", "Observation", "Bundle"} <= set(types)
    assert types == sorted(types)


def test_warm(validator):
    validator.warm(["Patient", "Condition"])
    with pytest.raises(ValueError, match="'Patiant' is not a FHIR R4 resource type"):
        validator.warm(["Patiant"])


def test_the_shipped_schema_is_the_published_one():
    assert hashlib.sha256(gzip.decompress(SCHEMA_FILE.read_bytes())).hexdigest() == SCHEMA_SHA256
    supplement = json.loads(gzip.decompress(SUPPLEMENT_FILE.read_bytes()))
    assert supplement["definitions"]["Encounter"]["required"] == ["status"]


def test_every_resource_type_builds():
    fresh = Validator()
    fresh.warm()
    for name in resource_types():
        for message in fresh.validate({"resourceType": name, "id": "x"}):
            assert "required element missing" in message, message


def test_fresh_process_needs_no_cache_or_writable_directory(tmp_path):
    """The checks are built from the packaged files in milliseconds: nothing is written."""
    script = (
        "from river.validation import Validator\n"
        "print(Validator().validate({'resourceType': 'Patient', 'gender': 'x'}))\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert (
        done.stdout.strip() == f"['Patient.gender: a text of 1 character is not one of {GENDERS}']"
    )
    assert list(home.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_validation_does_not_modify_the_resource(validator):
    resource = with_(encounter, status="done", foo=1)
    before = copy.deepcopy(resource)
    validator.validate(resource)
    assert resource == before


@pytest.mark.parametrize("name", ["string", "markdown", "uri", "url", "canonical", "code", "id"])
def test_string_shortcuts_agree_with_the_schema_patterns(name):
    """Printable strings skip the regex; the answer must be the schema's all the same."""
    registry = _registry()
    pattern = re.compile(registry.definitions[name]["pattern"][:-1] + r"\Z")
    check = registry._primitive(name).ok
    samples = [
        "a",
        "a b",
        "a  b",
        " a",
        "a ",
        "a\tb",
        "a\nb",
        "a\x00b",
        "a\u00a0b",
        "é",
        "a\u2003b",
        "\u3000",
        "a\x0bb",
        "a\x85",
        "line\r\n",
        "x" * 65,
        "-.",
        "日本",
    ]
    for sample in samples:
        assert check(sample) == bool(pattern.match(sample)), (name, sample)
    assert not check("")
