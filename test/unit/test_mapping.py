"""Reading Pyrog exports: what loads, what is refused and how it is said."""

from __future__ import annotations

import json

import pytest

from river.errors import InvalidMapping, RiverError, UnknownResource
from river.mapping import load_mappings
from river.plan import Step, parse_path
from river.scripts import ScriptRegistry
from test.conftest import FORMAT_EXAMPLES as EXAMPLES
from test.conftest import MIMIC_DEMO_MAPPING
from test.unit.mapping_builder import ExportBuilder

SCRIPTS = ScriptRegistry.default()


def faults_of(export: ExportBuilder) -> list[str]:
    with pytest.raises(InvalidMapping) as refused:
        export.analyse()
    return [str(fault) for fault in refused.value.faults]


def test_the_mimic_demo_export_loads_every_resource():
    mappings = load_mappings(MIMIC_DEMO_MAPPING, SCRIPTS)
    assert len(mappings) == 17
    encounter = mappings.resource("cktlnp0hz00500mmzpor3i6hn")
    assert encounter.resource_type == "Encounter"
    assert [alias.table for alias in encounter.aliases] == ["admissions", "services"]
    bp = mappings.resource("cktlnp0lh00880mmzfhsoshbm")
    assert bp.resource_type == "Observation" and bp.definition_id == "bp"
    assert bp.profile_url


@pytest.mark.parametrize(
    "name", ["single-sql-input.json", "with-condition.json", "no-resource-no-owner.json"]
)
def test_valid_format_examples_load(name):
    mappings = load_mappings(EXAMPLES / name, SCRIPTS)
    assert len(mappings) == (0 if name.startswith("no-resource") else 1)


def test_invalid_format_example_missing_owner():
    with pytest.raises(InvalidMapping) as refused:
        load_mappings(EXAMPLES / "invalid-missing-owner.json", SCRIPTS)
    assert [str(f) for f in refused.value.faults] == [
        "resource simple-resource: field `primary_key_owner`: unknown owner 'reference-to-owner'"
    ]
    assert "invalid-missing-owner.json" in str(refused.value)


def test_invalid_format_example_unknown_column():
    with pytest.raises(InvalidMapping) as refused:
        load_mappings(EXAMPLES / "invalid-missing-reference.json", SCRIPTS)
    (fault,) = refused.value.faults
    assert "attribute something" in str(fault)
    assert "sql_inputs[0].column" in str(fault)
    assert "unknown column id 'reference-to-column'" in str(fault)


def test_every_fault_is_listed_with_resource_attribute_and_field():
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    patient.attribute(
        "gender",
        "code",
        export.group(sql=[export.input("patients", "gender", script="no_such_clean")]),
    )
    patient.attribute("name[0].text", "string", export.group(static=["a", "b"]))
    patient.attribute(
        "birthDate",
        "date",
        export.group(sql=[export.input("patients", "dob"), export.input("patients", "dod")]),
    )
    patient.attribute(
        "deceasedDateTime", "dateTime", export.group(merging="no_such_merge", static=["x"])
    )
    bad_column = export.group(sql=[export.input("patients", "x")])
    bad_column["sql_inputs"][0]["column"] = "nope"
    patient.attribute("active", "boolean", bad_column)
    patient.attribute("bad path[", "string", export.group(static=["x"]))
    faults = faults_of(export)
    where = f"resource {patient.id} (a Patient)"
    assert (
        faults[0]
        == f"{where}, attribute gender, input group {patient.raw['attributes'][0]['input_groups'][0]['id']}, field sql_inputs[0].script: unknown cleaning script 'no_such_clean'"
    )
    assert any(
        f.startswith(f"{where}, attribute name[0].text")
        and "2 static inputs and no merging script" in f
        for f in faults
    )
    assert any(
        f.startswith(f"{where}, attribute birthDate") and "2 SQL inputs and no merging script" in f
        for f in faults
    )
    assert any(
        "attribute deceasedDateTime" in f and "unknown merging script 'no_such_merge'" in f
        for f in faults
    )
    assert any("attribute active" in f and "unknown column id 'nope'" in f for f in faults)
    assert any("attribute bad path[" in f and "malformed path" in f for f in faults)
    assert len(faults) == 6


def test_missing_primary_key_and_bad_logical_reference():
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "", logical_reference="not-a-uuid")
    faults = faults_of(export)
    assert any("missing primary key" in f for f in faults)
    assert any("`logical_reference` is not a UUID: 'not-a-uuid'" in f for f in faults)
    assert all(f.startswith(f"resource {patient.id}") for f in faults)


def test_unknown_relations_and_actions():
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    patient.filter("~", "1", export.input("patients", "row_id"))
    patient.attribute(
        "gender",
        "code",
        export.group(
            static=["male"],
            conditions=[
                ("MAYBE", "EQ", "1", export.input("patients", "row_id")),
                ("INCLUDE", "LIKE", "1", export.input("patients", "row_id")),
            ],
        ),
    )
    faults = faults_of(export)
    assert any("filters[0]: field `relation`: unknown relation '~'" in f for f in faults)
    assert any("conditions[0]: unknown action 'MAYBE'" in f for f in faults)
    assert any("conditions[1]: unknown relation 'LIKE'" in f for f in faults)


def test_join_that_starts_from_a_table_not_reached():
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    joins = [(("admissions", "hadm_id"), ("services", "hadm_id"))]
    patient.attribute(
        "gender", "code", export.group(sql=[export.input("services", "curr_service", joins=joins)])
    )
    (fault,) = faults_of(export)
    assert "joins[0]" in fault and "a table not reached yet" in fault


def test_join_chains_are_made_once_and_multi_hop_is_resolved():
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    to_admissions = (("patients", "subject_id"), ("admissions", "subject_id"))
    to_services = (("admissions", "hadm_id"), ("services", "hadm_id"))
    patient.attribute(
        "a",
        "string",
        export.group(sql=[export.input("admissions", "hadm_id", joins=[to_admissions])]),
    )
    patient.attribute(
        "b",
        "string",
        export.group(sql=[export.input("admissions", "language", joins=[to_admissions])]),
    )
    patient.attribute(
        "c",
        "string",
        export.group(
            sql=[export.input("services", "curr_service", joins=[to_admissions, to_services])]
        ),
    )
    plan = export.analyse().resources[patient.id]
    assert [(a.name, a.parent) for a in plan.aliases] == [
        ("patients", None),
        ("admissions", "patients"),
        ("services", "admissions"),
    ]
    assert [c.label for c in plan.columns] == [
        "patients.subject_id",
        "admissions.hadm_id",
        "admissions.language",
        "services.curr_service",
    ]
    assert all(a.per_row for a in plan.attributes)


def test_load_mappings_file_errors_are_one_sentence(tmp_path):
    with pytest.raises(RiverError, match="mapping file or folder not found"):
        load_mappings(tmp_path / "missing.json", SCRIPTS)
    with pytest.raises(RiverError, match=r"no mapping file \(\*\.json\) in folder"):
        load_mappings(tmp_path, SCRIPTS)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(RiverError, match="broken.json is not valid JSON"):
        load_mappings(tmp_path / "broken.json", SCRIPTS)


def test_a_folder_of_exports_and_unknown_resource(tmp_path):
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    (tmp_path / "one.json").write_text(json.dumps(export.document()))
    mappings = load_mappings(tmp_path, SCRIPTS)
    assert mappings.resource_ids() == [patient.id]
    with pytest.raises(UnknownResource, match="unknown resource id 'nope'"):
        mappings.resource("nope")
    (tmp_path / "two.json").write_text(json.dumps(export.document()))
    with pytest.raises(InvalidMapping, match="also defined in"):
        load_mappings(tmp_path, SCRIPTS)


def test_the_password_of_the_credential_never_prints():
    mapping = ExportBuilder().analyse()
    assert "'p'" not in repr(mapping.credential)
    assert "***" in mapping.credential.url().render_as_string(hide_password=True)


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("gender", (Step("gender"),)),
        ("name[0].given[1]", (Step("name", 0), Step("given", 1))),
        (
            "component[2].valueQuantity.value",
            (Step("component", 2), Step("valueQuantity"), Step("value")),
        ),
    ],
)
def test_parse_path(path, steps):
    assert parse_path(path) == steps


@pytest.mark.parametrize("path", ["", "name[", "name[a]", "a..b", "name[0]x"])
def test_parse_path_refuses_malformed(path):
    with pytest.raises(ValueError):
        parse_path(path)


def test_if_valid_is_refused_saying_why():
    # The original's if_valid built a script from two functions: a mapping cannot name it.
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    patient.attribute(
        "gender",
        "code",
        export.group(sql=[export.input("patients", "gender", script="if_valid")]),
    )
    patient.attribute("name[0].text", "string", export.group(static=["a", "b"], merging="if_valid"))
    faults = faults_of(export)
    assert len(faults) == 2
    assert all(
        "unknown " in f and " script 'if_valid' (if_valid is not a one-value script" in f
        for f in faults
    )
    assert "sql_inputs[0].script: unknown cleaning script 'if_valid'" in faults[0]
    assert "field `merging_script`: unknown merging script 'if_valid'" in faults[1]
