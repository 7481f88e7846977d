"""Which instances a changed source row touches (the live path's first step),
on the MIMIC demo with the mimic-demo.json mappings."""

from __future__ import annotations

import psycopg
import pytest

from test.integration.test_engine_mimic import DIAGNOSIS, FEAT_2, FEAT_6

ENCOUNTER = "cktlnp0hz00500mmzpor3i6hn"
FEAT_11 = "cktlnp0nw00ai0mmzu53bsui8"


def test_resources_reading_a_table(engine):
    readers = engine.resources_reading("public", "admissions")
    assert {FEAT_2, FEAT_6, FEAT_11, ENCOUNTER} <= set(readers)  # joins, a filter, a primary table
    assert DIAGNOSIS not in readers
    assert engine.resources_reading("public", "callout") == []  # no mapping reads it
    assert DIAGNOSIS in engine.resources_reading("public", "d_icd_diagnoses")


def test_a_row_of_the_primary_table_is_its_own_instance(engine):
    assert engine.affected_keys(
        FEAT_6, "public", "patients", [{"subject_id": 10006, "gender": "F"}]
    ) == [10006]


def test_a_joined_row_finds_the_instances_that_join_to_it(engine, mimic_demo_url):
    # an admission of 41976: the patient joins it (feat_6 joins admissions on subject_id)
    row = {"row_id": 1, "subject_id": 41976, "hadm_id": 125449}
    assert engine.affected_keys(FEAT_6, "public", "admissions", [row]) == [41976]
    # a services row reaches the Encounter of its admission (admissions.hadm_id = services.hadm_id)
    with psycopg.connect(mimic_demo_url) as connection:
        hadm_id, row_id = connection.execute(
            "SELECT hadm_id, row_id FROM admissions WHERE subject_id = 10011"
        ).fetchone()
        codes = connection.execute(
            "SELECT count(*) FROM diagnoses_icd WHERE icd9_code = '4019'"
        ).fetchone()[0]
    assert engine.affected_keys(ENCOUNTER, "public", "services", [{"hadm_id": hadm_id}]) == [row_id]
    # a dictionary row reaches every diagnosis with its code; old and new versions both count
    keys = engine.affected_keys(
        DIAGNOSIS, "public", "d_icd_diagnoses", [{"icd9_code": "4019"}, {"icd9_code": "nope"}]
    )
    assert len(keys) == codes > 0


@pytest.mark.parametrize("row", [{}, {"subject_id": None}])
def test_a_row_without_join_values_reaches_nothing(engine, row):
    assert engine.affected_keys(FEAT_6, "public", "admissions", [row]) == []
