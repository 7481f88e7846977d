"""Each rule of docs/mapping.md, on records written by hand (no database)."""

from __future__ import annotations

import uuid

import pytest

from river.concept_maps import ConceptMaps
from river.errors import BadValue
from river.identity import RESOURCE_TAG_SYSTEM, SOURCE_TAG_SYSTEM
from river.scripts import ScriptRegistry
from river.transform import ResourceTransformer
from test.unit.mapping_builder import LOGICAL_REFERENCE, ExportBuilder, expected_id

ADMISSIONS = [(("patients", "subject_id"), ("admissions", "subject_id"))]
NOW = "2024-01-01T00:00:00.000+00:00"


def transformer(export: ExportBuilder, resource, concept_maps: ConceptMaps | None = None):
    plan = export.analyse().resources[resource.id]
    return ResourceTransformer(plan, ScriptRegistry.default(), concept_maps or ConceptMaps())


def transform(export, resource, columns, concept_maps=None):
    return transformer(export, resource, concept_maps).transform(columns, NOW)


def body(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if k not in ("resourceType", "id", "meta")}


# --- Identity ------------------------------------------------------------------


def test_id_meta_tags_and_last_updated():
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    patient.attribute("gender", "code", export.group(static=["female"]))
    outcome = transform(export, patient, {"patients.subject_id": [10006]})
    resource = outcome.resource
    assert resource["resourceType"] == "Patient"
    assert resource["id"] == str(uuid.uuid5(uuid.UUID(LOGICAL_REFERENCE), "10006"))
    assert resource["meta"] == {
        "tag": [
            {"system": SOURCE_TAG_SYSTEM, "code": "source-1"},
            {"system": RESOURCE_TAG_SYSTEM, "code": patient.id},
        ],
        "lastUpdated": NOW,
    }
    assert resource["gender"] == "female"


def test_float_primary_key_has_no_trailing_zero():
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    outcome = transform(export, patient, {"patients.subject_id": [10.0]})
    assert outcome.resource["id"] == expected_id("10")


def test_profile_goes_to_meta_profile():
    export = ExportBuilder()
    definition = {
        "type": "Observation",
        "kind": "resource",
        "derivation": "constraint",
        "url": "http://hl7.org/fhir/StructureDefinition/bp",
    }
    bp = export.resource("bp", "labevents", "row_id", definition=definition)
    bp.attribute("status", "code", export.group(static=["final"]))
    resource = transform(export, bp, {"labevents.row_id": [1]}).resource
    assert resource["resourceType"] == "Observation"
    assert resource["meta"]["profile"] == ["http://hl7.org/fhir/StructureDefinition/bp"]


# --- Input groups and conditions -----------------------------------------------


def conditional_export(*groups_spec):
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    groups = [
        export.group(static=[value], conditions=conds(export)) for value, conds in groups_spec
    ]
    patient.attribute("gender", "code", *groups)
    return export, patient


def gender_of(export, patient, **columns):
    record = {"patients.subject_id": [1], **{f"patients.{k}": [v] for k, v in columns.items()}}
    outcome = transform(export, patient, record)
    assert outcome.error is None, outcome.error
    return outcome.resource.get("gender")


def test_first_group_whose_conditions_hold_wins():
    export, patient = conditional_export(
        ("male", lambda e: [("INCLUDE", "EQ", "M", e.input("patients", "sex"))]),
        ("female", lambda e: [("INCLUDE", "GT", "-1", e.input("patients", "row_id"))]),
        ("other", lambda e: []),
    )
    assert gender_of(export, patient, sex="M", row_id=5) == "male"
    assert gender_of(export, patient, sex="F", row_id=5) == "female"
    assert gender_of(export, patient, sex="F", row_id=-7) == "other"


def test_no_group_holds_means_absent():
    export, patient = conditional_export(
        ("male", lambda e: [("INCLUDE", "EQ", "-1", e.input("patients", "row_id"))]),
    )
    assert gender_of(export, patient, row_id=3) is None


def test_relation_on_null_is_false_so_exclude_holds():
    export, patient = conditional_export(
        ("male", lambda e: [("INCLUDE", "EQ", "x", e.input("patients", "code"))]),
        ("female", lambda e: [("EXCLUDE", "EQ", "x", e.input("patients", "code"))]),
    )
    assert gender_of(export, patient, code=None) == "female"


@pytest.mark.parametrize(
    ("relation", "value", "column_value", "holds"),
    [
        ("EQ", "10", 10, True),
        ("EQ", "10", 10.0, True),
        ("NEQ", "10", 11, True),
        ("LT", "9", 10, False),  # compared as numbers, not as text
        ("LE", "10", 10, True),
        ("GT", "-1", 0, True),
        ("GE", "2", 1.5, False),
        ("IN", "1,2,3", 2, True),
        ("IN", "a, b", "b", True),
        ("IN", "1,2,3", 4, False),
        ("EQ", "true", True, True),
        ("EQ", "0", False, True),
        ("EQ", "1", False, False),
        ("GT", "2100-01-01", "2150-08-29T00:00:00", True),
        ("LT", "2100-01-01", "2094-03-05", True),
        ("EQ", "2094-03-05", "2094-03-05T00:00:00", True),
        ("NULL", "", None, True),
        ("NULL", "", 0, False),
        ("NOTNULL", "", 0, True),
        ("NOTNULL", "", None, False),
        ("EQ", "M", None, False),
        ("NEQ", "M", None, False),
        ("EQ", "EMERGENCY", "EMERGENCY", True),
        ("LT", "10", "9", True),  # text that reads as numbers compares as numbers
    ],
)
def test_condition_relations_read_the_value_as_the_column_type(
    relation, value, column_value, holds
):
    export, patient = conditional_export(
        ("male", lambda e: [("INCLUDE", relation, value, e.input("patients", "x"))]),
    )
    assert (gender_of(export, patient, x=column_value) == "male") is holds


def test_condition_input_is_cleaned_by_its_script():
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    condition = ("INCLUDE", "EQ", "male", export.input("patients", "sex", script="map_gender"))
    patient.attribute("active", "boolean", export.group(static=["true"], conditions=[condition]))
    outcome = transform(export, patient, {"patients.subject_id": [1], "patients.sex": ["M"]})
    assert outcome.resource["active"] is True


# --- A group's value -------------------------------------------------------------


def test_merging_script_gets_sql_values_then_statics_in_order_duplicates_kept():
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    row_id = export.input("patients", "row_id")
    patient.attribute(
        "name[0].text",
        "string",
        export.group(
            sql=[export.input("patients", "subject_id"), row_id, row_id],
            static=["(1)", "x"],
            merging="merge_concat",
        ),
    )
    outcome = transform(
        export, patient, {"patients.subject_id": [10006], "patients.row_id": [9467]}
    )
    assert outcome.resource["name"] == [{"text": "10006 9467 9467 (1) x"}]


def test_cleaning_script_then_cast_then_concept_map():
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    patient.attribute(
        "gender", "code", export.group(sql=[export.input("patients", "gender", concept_map="cm1")])
    )
    patient.attribute(
        "birthDate",
        "date",
        export.group(sql=[export.input("patients", "dob", script="clean_date")]),
    )
    maps = ConceptMaps({"cm1": {"F": "female", "M": "male"}})
    outcome = transform(
        export,
        patient,
        {
            "patients.subject_id": [1],
            "patients.gender": ["F"],
            "patients.dob": ["2094-03-05T00:00:00"],
        },
        maps,
    )
    assert body(outcome.resource) == {"gender": "female", "birthDate": "2094-03-05"}
    assert outcome.warnings == []


def test_code_missing_from_concept_map_is_kept_with_a_warning():
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    patient.attribute(
        "gender", "code", export.group(sql=[export.input("patients", "gender", concept_map="cm1")])
    )
    outcome = transform(
        export,
        patient,
        {"patients.subject_id": [1], "patients.gender": ["X"]},
        ConceptMaps({"cm1": {"F": "female"}}),
    )
    assert outcome.resource["gender"] == "X"
    assert outcome.warnings == [
        "attribute gender: a code of column patients.gender (a text of 1 character) is not in"
        " ConceptMap cm1; kept as it is"
    ]


@pytest.mark.parametrize(
    ("fhir_type", "value", "expected"),
    [
        ("integer", "12", 12),
        ("integer", 12.0, 12),
        ("positiveInt", "3", 3),
        ("unsignedInt", 0, 0),
        ("decimal", "12.5", 12.5),
        ("decimal", 7, 7),
        ("boolean", "1", True),
        ("boolean", 0, False),
        ("boolean", "false", False),
        ("string", 10.0, "10"),
        ("string", 10.5, "10.5"),
        ("string", 42, "42"),
        ("string", True, "true"),
        ("dateTime", "2094-03-05T00:00:00", "2094-03-05T00:00:00"),
        ("code", "", None),
    ],
)
def test_cast_to_the_attribute_type(fhir_type, value, expected):
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    patient.attribute("x", fhir_type, export.group(sql=[export.input("patients", "x")]))
    outcome = transform(export, patient, {"patients.subject_id": [1], "patients.x": [value]})
    assert outcome.error is None
    assert outcome.resource.get("x") == expected
    assert type(outcome.resource.get("x")) is type(expected)


def test_static_values_are_cast_too():
    export = ExportBuilder()
    observation = export.resource("Observation", "labevents", "row_id")
    observation.attribute("valueQuantity.value", "decimal", export.group(static=["130"]))
    observation.attribute("valueBoolean", "boolean", export.group(static=["true"]))
    resource = transform(export, observation, {"labevents.row_id": [1]}).resource
    assert resource["valueQuantity"] == {"value": 130}
    assert resource["valueBoolean"] is True


def test_a_failed_cast_is_an_error_of_the_instance_naming_the_attribute():
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    patient.attribute(
        "multipleBirthInteger", "integer", export.group(sql=[export.input("patients", "n")])
    )
    t = transformer(export, patient)
    bad = t.transform({"patients.subject_id": [1], "patients.n": ["twins"]}, NOW)
    good = t.transform({"patients.subject_id": [2], "patients.n": ["2"]}, NOW)
    assert bad.resource is None
    assert bad.error == (
        "attribute multipleBirthInteger: cannot cast a text of 5 characters to integer:"
        " not a number"
    )
    assert "twins" not in bad.error  # the value itself is never quoted
    assert good.resource["multipleBirthInteger"] == 2


def test_a_failing_script_is_an_error_of_the_instance():
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    patient.attribute(
        "birthDate",
        "date",
        export.group(sql=[export.input("patients", "dob", script="clean_date")]),
    )
    outcome = transform(
        export, patient, {"patients.subject_id": [1], "patients.dob": ["not a date"]}
    )
    assert outcome.resource is None
    assert outcome.error == (
        "attribute birthDate: script clean_date failed on column patients.dob: cannot read a"
        " text of 10 characters as a date; expected YYYY, YYYY-MM,"
        " YYYY-MM-DD, YYYYMMDD or DD/MM/YYYY, optionally followed by a time HH:MM[:SS] and an"
        " offset"
    )


# --- Building the document ---------------------------------------------------------


def test_paths_indexes_and_empty_values_dropped_with_their_parents():
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    patient.attribute("name[0].given[0]", "string", export.group(static=["Jean"]))
    patient.attribute("name[0].given[1]", "string", export.group(static=["Georges"]))
    patient.attribute(
        "name[0].family", "string", export.group(sql=[export.input("patients", "family")])
    )
    patient.attribute(
        "telecom[0].value", "string", export.group(sql=[export.input("patients", "phone")])
    )
    patient.attribute(
        "contact[0].name.text", "string", export.group(sql=[export.input("patients", "phone")])
    )
    outcome = transform(
        export,
        patient,
        {"patients.subject_id": [1], "patients.family": [""], "patients.phone": [None]},
    )
    assert body(outcome.resource) == {"name": [{"given": ["Jean", "Georges"]}]}


def test_one_to_many_join_repeats_the_array_element_per_row():
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    patient.attribute("identifier[0].system", "uri", export.group(static=["http://x/hadm"]))
    patient.attribute(
        "identifier[0].value",
        "string",
        export.group(sql=[export.input("admissions", "hadm_id", joins=ADMISSIONS)]),
    )
    patient.attribute("gender", "code", export.group(static=["male"]))
    record = {"patients.subject_id": [10059] * 3, "admissions.hadm_id": [142582, 122098, None]}
    outcome = transform(export, patient, record)
    assert body(outcome.resource) == {
        "identifier": [
            {"system": "http://x/hadm", "value": "142582"},
            {"system": "http://x/hadm", "value": "122098"},
            {"system": "http://x/hadm"},  # the NULL row still gives its element
        ],
        "gender": "male",
    }


def test_join_inside_a_deeper_array_builds_the_outer_element_once():
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    patient.attribute(
        "communication[0].language.coding[0].code",
        "code",
        export.group(sql=[export.input("admissions", "language", joins=ADMISSIONS)]),
    )
    patient.attribute("communication[0].preferred", "boolean", export.group(static=["true"]))
    record = {"patients.subject_id": [1] * 3, "admissions.language": ["ENGL", "SPAN", "ENGL"]}
    outcome = transform(export, patient, record)
    assert body(outcome.resource) == {
        "communication": [
            {"language": {"coding": [{"code": "ENGL"}, {"code": "SPAN"}]}, "preferred": True}
        ]
    }


def test_several_joined_attributes_share_the_kth_row():
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    patient.attribute(
        "identifier[0].value",
        "string",
        export.group(sql=[export.input("admissions", "hadm_id", joins=ADMISSIONS)]),
    )
    patient.attribute(
        "identifier[0].period.start",
        "dateTime",
        export.group(sql=[export.input("admissions", "admittime", joins=ADMISSIONS)]),
    )
    record = {
        "patients.subject_id": [1, 1],
        "admissions.hadm_id": [11, 12],
        "admissions.admittime": ["2100-01-01T10:00:00", "2101-01-01T10:00:00"],
    }
    assert body(transform(export, patient, record).resource) == {
        "identifier": [
            {"value": "11", "period": {"start": "2100-01-01T10:00:00"}},
            {"value": "12", "period": {"start": "2101-01-01T10:00:00"}},
        ]
    }


def test_non_array_element_with_different_values_is_an_error_equal_values_are_one():
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    patient.attribute(
        "maritalStatus.text",
        "string",
        export.group(sql=[export.input("admissions", "marital_status", joins=ADMISSIONS)]),
    )
    t = transformer(export, patient)
    same = t.transform(
        {"patients.subject_id": [1, 1], "admissions.marital_status": ["MARRIED", "MARRIED"]}
    )
    assert body(same.resource) == {"maritalStatus": {"text": "MARRIED"}}
    different = t.transform(
        {"patients.subject_id": [2, 2], "admissions.marital_status": ["MARRIED", "SINGLE"]}
    )
    assert different.resource is None
    assert different.error.startswith("attribute maritalStatus.text: receives 2 different values")


def test_identical_objects_in_an_array_are_kept_once():
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    patient.attribute(
        "maritalStatus.coding[0].code",
        "code",
        export.group(sql=[export.input("admissions", "marital_status", joins=ADMISSIONS)]),
    )
    patient.attribute("maritalStatus.coding[0].system", "uri", export.group(static=["http://v3"]))
    record = {"patients.subject_id": [1] * 3, "admissions.marital_status": ["M", "M", "S"]}
    assert body(transform(export, patient, record).resource) == {
        "maritalStatus": {
            "coding": [{"code": "M", "system": "http://v3"}, {"code": "S", "system": "http://v3"}]
        }
    }


def test_conditions_on_joined_rows_are_evaluated_per_row():
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    kind = export.input("admissions", "admission_type", joins=ADMISSIONS)
    patient.attribute(
        "identifier[0].value",
        "string",
        export.group(
            sql=[export.input("admissions", "hadm_id", joins=ADMISSIONS)],
            conditions=[("INCLUDE", "EQ", "EMERGENCY", kind)],
        ),
    )
    record = {
        "patients.subject_id": [1, 1],
        "admissions.hadm_id": [11, 12],
        "admissions.admission_type": ["ELECTIVE", "EMERGENCY"],
    }
    assert body(transform(export, patient, record).resource) == {"identifier": [{"value": "12"}]}


def test_slice_elements_go_to_the_indexed_element():
    export = ExportBuilder()
    bp = export.resource("Observation", "labevents", "row_id")
    bp.attribute(
        "component[0].code.coding[0].code",
        "code",
        export.group(static=["8480-6"]),
        slice_name="SystolicBP",
    )
    bp.attribute(
        "component[1].code.coding[0].code",
        "code",
        export.group(static=["8462-4"]),
        slice_name="DiastolicBP",
    )
    bp.attribute("component[1].valueQuantity.value", "decimal", export.group(static=["90"]))
    assert body(transform(export, bp, {"labevents.row_id": [1]}).resource) == {
        "component": [
            {"code": {"coding": [{"code": "8480-6"}]}},
            {"code": {"coding": [{"code": "8462-4"}]}, "valueQuantity": {"value": 90}},
        ]
    }


# --- References ------------------------------------------------------------------


def test_logical_reference_gets_the_id_the_referenced_mapping_gives():
    export = ExportBuilder()
    condition = export.resource("Condition", "diagnoses_icd", "row_id")
    patient_ref = "62248c11-1d3f-4071-bfa8-f640764a9f63"
    condition.attribute("subject", "Reference")
    condition.attribute("subject.type", "uri", export.group(static=["Patient"]))
    condition.attribute(
        "subject.identifier.system",
        "uri",
        export.group(static=[f"http://terminology.arkhn.org/{patient_ref}"]),
    )
    condition.attribute(
        "subject.identifier.value",
        "string",
        export.group(sql=[export.input("diagnoses_icd", "subject_id")]),
    )
    resource = transform(
        export, condition, {"diagnoses_icd.row_id": [1], "diagnoses_icd.subject_id": [10006.0]}
    ).resource
    assert resource["subject"]["reference"] == f"Patient/{expected_id('10006', patient_ref)}"


def test_a_reference_without_a_logical_system_is_left_alone():
    export = ExportBuilder()
    condition = export.resource("Condition", "diagnoses_icd", "row_id")
    condition.attribute("subject", "Reference")
    condition.attribute("subject.type", "uri", export.group(static=["Patient"]))
    condition.attribute(
        "subject.identifier.system", "uri", export.group(static=["http://hospital/ipp"])
    )
    condition.attribute("subject.identifier.value", "string", export.group(static=["42"]))
    resource = transform(export, condition, {"diagnoses_icd.row_id": [1]}).resource
    assert "reference" not in resource["subject"]


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
@pytest.mark.parametrize("fhir_type", ["string", "integer"])
def test_a_number_that_is_not_finite_is_an_error_of_the_instance(fhir_type, value):
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    patient.attribute("x", fhir_type, export.group(sql=[export.input("patients", "x")]))
    outcome = transform(export, patient, {"patients.subject_id": [1], "patients.x": [value]})
    assert outcome.resource is None
    assert outcome.error.startswith("attribute x: cannot cast")


# --- No patient data in errors (river/errors.py) ---------------------------------------

PLANTED = "+33 7 91 82 73 64 Zyxwvutska"


def leaky_export(script: str = "", merging: str = "", fhir_type: str = "string"):
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    inputs = [export.input("patients", "phone", script=script)]
    if merging:
        inputs.append(export.input("patients", "family"))
    patient.attribute("telecom[0].value", fhir_type, export.group(sql=inputs, merging=merging))
    return export, patient


def with_user_scripts(export, resource, cleaning=None, merging=None):
    scripts = ScriptRegistry(cleaning=cleaning or {}, merging=merging or {})
    plan = export.analyse(scripts).resources[resource.id]
    return ResourceTransformer(plan, scripts, ConceptMaps())


def test_a_user_script_failing_is_named_without_its_message_which_may_quote_the_value():
    def leaky(value):
        raise ValueError(f"cannot clean {value!r}")

    export, patient = leaky_export(script="leaky")
    t = with_user_scripts(export, patient, cleaning={"leaky": leaky})
    outcome = t.transform({"patients.subject_id": [7], "patients.phone": [PLANTED]}, NOW)
    assert outcome.resource is None
    assert outcome.error == (
        "attribute telecom[0].value: script leaky failed on column patients.phone, a text of"
        f" {len(PLANTED)} characters: ValueError (its message is not shown: it may quote the"
        " value)"
    )


def test_a_user_script_raising_bad_value_is_shown_its_words():
    def strict(value):
        raise BadValue("a phone number starts with + or 0")

    export, patient = leaky_export(script="strict")
    t = with_user_scripts(export, patient, cleaning={"strict": strict})
    outcome = t.transform({"patients.subject_id": [7], "patients.phone": [PLANTED]}, NOW)
    assert outcome.error == (
        "attribute telecom[0].value: script strict failed on column patients.phone:"
        " a phone number starts with + or 0"
    )


def test_a_merging_script_failing_gives_the_shapes_of_its_values():
    def leaky_merge(*values):
        raise KeyError(values)

    export, patient = leaky_export(merging="leaky_merge")
    t = with_user_scripts(export, patient, merging={"leaky_merge": leaky_merge})
    columns = {"patients.subject_id": [7], "patients.phone": [PLANTED], "patients.family": [None]}
    outcome = t.transform(columns, NOW)
    assert outcome.error == (
        "attribute telecom[0].value: merging script leaky_merge failed on (a text of"
        f" {len(PLANTED)} characters, null): KeyError (its message is not shown: it may quote"
        " the value)"
    )


@pytest.mark.parametrize("fhir_type", ["integer", "decimal", "boolean"])
def test_a_failed_cast_gives_the_shape_of_the_value(fhir_type):
    export, patient = leaky_export(fhir_type=fhir_type)
    outcome = transform(export, patient, {"patients.subject_id": [7], "patients.phone": [PLANTED]})
    assert outcome.error.startswith(
        f"attribute telecom[0].value: cannot cast a text of {len(PLANTED)} characters to"
        f" {fhir_type}: not a "
    )


def test_no_error_or_warning_quotes_a_source_value():
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    patient.attribute(
        "maritalStatus.text",
        "string",
        export.group(sql=[export.input("admissions", "marital_status", joins=ADMISSIONS)]),
    )
    patient.attribute(
        "gender", "code", export.group(sql=[export.input("patients", "gender", concept_map="cm")])
    )
    t = transformer(export, patient, ConceptMaps({"cm": {"F": "female"}}))
    columns = {
        "patients.subject_id": [7, 7],
        "admissions.marital_status": ["Zyxwvutska", "Qwertyska"],
        "patients.gender": ["Xenogender", "Xenogender"],
    }
    outcome = t.transform(columns, NOW)
    said = " ".join([outcome.error or "", *outcome.warnings])
    assert "maritalStatus.text: receives 2 different values" in said
    for planted in ("Zyxwvutska", "Qwertyska", "Xenogender"):
        assert planted not in said
