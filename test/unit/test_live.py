"""Live sources: LIVE_SOURCES, Debezium change events, and CSV rows as records
(river/live.py, river/csv_source.py), on the example mappings and connector files."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import orjson
import pytest
from dotenv import dotenv_values

from river.csv_source import FileError, RowError, csv_records, resources_reading_file
from river.errors import ConfigurationError
from river.live import CDC, CSV, BadChange, live_sources, parse_change
from river.mapping import load_mappings
from river.scripts import ScriptRegistry
from test.conftest import ROOT

SOURCES = ROOT / "kafka_connect_connectors" / "sources"
CDC_FILE = SOURCES / "mimic-postgres-cdc.json"
CSV_FILE = SOURCES / "mimic-sftp-csv.json"
EXAMPLE = ROOT / "examples" / "mappings" / "mimic-example.json"
CSV_EXAMPLE = ROOT / "examples" / "mappings" / "mimic-csv-example.json"


@pytest.fixture(scope="module")
def mappings():
    return load_mappings(ROOT / "examples" / "mappings", ScriptRegistry.default())


def test_the_example_setting_pairs_each_connector_with_its_mapping(mappings):
    setting = f"{CDC_FILE}={EXAMPLE}, {CSV_FILE}={CSV_EXAMPLE}"
    cdc, csv = live_sources(setting, mappings)
    assert (cdc.name, cdc.kind, cdc.batch_id) == (
        "fhir-river-mimic-cdc",
        CDC,
        "live-fhir-river-mimic-cdc",
    )
    assert cdc.resource_ids == ("example-patient", "example-encounter", "example-condition")
    # one topic per table the resources read, named as Debezium names them
    assert cdc.topics == {
        "mimic.public.admissions": ("public", "admissions"),
        "mimic.public.d_icd_diagnoses": ("public", "d_icd_diagnoses"),
        "mimic.public.diagnoses_icd": ("public", "diagnoses_icd"),
        "mimic.public.patients": ("public", "patients"),
    }
    assert cdc.warnings == ()
    assert (csv.kind, csv.resource_ids, csv.topics) == (
        CSV,
        ("example-csv-patient",),
        {"mimic-sftp-csv": None},
    )


def test_without_a_mapping_a_connector_feeds_every_mapping_and_a_folder_is_every_file(mappings):
    sources = live_sources(str(SOURCES), mappings)
    assert [s.name for s in sources] == ["fhir-river-mimic-cdc", "fhir-river-mimic-sftp-csv"]
    assert len(sources[0].resource_ids) == len(mappings)
    assert live_sources("", mappings) == []


def test_a_table_the_connector_does_not_capture_is_a_warning(tmp_path, mappings):
    document = json.loads(CDC_FILE.read_text())
    document["config"]["table.include.list"] = r"public\.(patients|admissions)"
    narrow = tmp_path / "narrow.json"
    narrow.write_text(json.dumps(document))
    (source,) = live_sources(f"{narrow}={EXAMPLE}", mappings)
    assert len(source.warnings) == 2
    assert "does not capture table public.d_icd_diagnoses" in source.warnings[0]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("nowhere.json", "no connector file or folder nowhere.json"),
        # A missing connector file is an error even when its mapping is not loaded either.
        ("nowhere.json=other.json", "no connector file or folder nowhere.json"),
        (f"{CDC_FILE},{CDC_FILE}", "names connector fhir-river-mimic-cdc twice"),
    ],
)
def test_a_wrong_setting_says_what_is_wrong(mappings, setting, message):
    with pytest.raises(ConfigurationError, match="LIVE_SOURCES") as caught:
        live_sources(setting, mappings)
    assert message in str(caught.value)


def test_a_connector_river_cannot_follow_is_refused(tmp_path, mappings):
    other = tmp_path / "jdbc.json"
    other.write_text(json.dumps({"name": "jdbc", "config": {"connector.class": "JdbcSource"}}))
    with pytest.raises(ConfigurationError, match="not JdbcSource"):
        live_sources(str(other), mappings)
    # ... even when the mapping it names is not loaded (so it would be skipped).
    with pytest.raises(ConfigurationError, match="not JdbcSource"):
        live_sources(f"{other}=other.json", mappings)


# --- a live source whose mapping is not loaded: skipped, with one warning ------------------

DEFAULT_SETTING = dotenv_values(ROOT / ".env.example")["LIVE_SOURCES"]


def skipped(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_the_default_setting_with_a_mappings_folder_of_ones_own_follows_nothing_and_says_so(
    tmp_path, monkeypatch, caplog
):
    # A hospital's own MAPPINGS (here a copy of the example, elsewhere) and the default
    # LIVE_SOURCES, whose paths are relative to the checkout as the services run there.
    own = tmp_path / "hospital" / "mapping.json"
    own.parent.mkdir()
    own.write_bytes(EXAMPLE.read_bytes())
    monkeypatch.chdir(ROOT)
    with caplog.at_level(logging.WARNING, logger="river"):
        sources = live_sources(DEFAULT_SETTING, load_mappings(own, ScriptRegistry.default()))
    assert sources == []
    cdc, csv = skipped(caplog)
    assert cdc.startswith(
        "setting LIVE_SOURCES: connector fhir-river-mimic-cdc"
        " (kafka_connect_connectors/sources/mimic-postgres-cdc.json) is not followed:"
        " its mapping examples/mappings/mimic-example.json is not among the mappings"
        f" MAPPINGS loads ({own})"
    ), cdc
    assert "connector fhir-river-mimic-sftp-csv" in csv
    assert "its mapping examples/mappings/mimic-csv-example.json is not among" in csv


def test_a_source_whose_mapping_is_not_loaded_is_skipped_and_the_others_resolve(caplog):
    only_csv = load_mappings(CSV_EXAMPLE, ScriptRegistry.default())
    with caplog.at_level(logging.WARNING, logger="river"):
        sources = live_sources(f"{CDC_FILE}={EXAMPLE}, {CSV_FILE}={CSV_EXAMPLE}", only_csv)
    (source,) = sources
    assert (source.name, source.kind, source.resource_ids) == (
        "fhir-river-mimic-sftp-csv",
        CSV,
        ("example-csv-patient",),
    )
    (warning,) = skipped(caplog)
    assert "connector fhir-river-mimic-cdc" in warning
    assert f"its mapping {EXAMPLE} is not among the mappings MAPPINGS loads" in warning


def test_a_mapping_file_that_does_not_exist_skips_its_source_with_a_warning(mappings, caplog):
    with caplog.at_level(logging.WARNING, logger="river"):
        sources = live_sources(f"{CDC_FILE}=mine/nowhere.json,{CSV_FILE}={CSV_EXAMPLE}", mappings)
    assert [s.name for s in sources] == ["fhir-river-mimic-sftp-csv"]
    (warning,) = skipped(caplog)
    assert f"connector fhir-river-mimic-cdc ({CDC_FILE}) is not followed" in warning
    assert (
        "its mapping mine/nowhere.json is no mapping file or folder, nor the source name of"
        " a loaded mapping"
    ) in warning
    assert "\n" not in warning  # one line


def test_debezium_changes_are_read_with_or_without_schemas():
    row = {"subject_id": 1, "gender": "F"}
    event = {"before": None, "after": row, "source": {"schema": "public", "table": "patients"}}
    change = parse_change(orjson.dumps({**event, "op": "c"}))
    assert (change.owner, change.table, change.op, change.rows) == (
        "public",
        "patients",
        "c",
        [row],
    )
    wrapped = parse_change(orjson.dumps({"schema": {}, "payload": {**event, "op": "u"}}))
    assert wrapped.op == "u"
    deleted = parse_change(orjson.dumps({**event, "before": row, "after": None, "op": "d"}))
    assert deleted.rows == [row]
    assert parse_change(None) is None  # the tombstone after a delete


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"{", "not JSON"),
        (b"[]", "no source block"),
        (b'{"source": {"schema": "public", "table": "t"}, "op": "x"}', "unknown operation 'x'"),
        (b'{"source": {}, "op": "c", "after": {}}', "names no schema and table"),
    ],
)
def test_a_message_that_is_no_change_says_why(value, message):
    with pytest.raises(BadChange, match=message):
        parse_change(value)


# --- CSV ------------------------------------------------------------------------------------

HEADER = ["ROW_ID", "SUBJECT_ID", "GENDER", "DOB", "DOD", "DOD_HOSP", "DOD_SSN", "EXPIRE_FLAG"]


def test_a_file_feeds_the_resources_of_its_table(mappings):
    assert [p.resource_id for p in resources_reading_file("patients.csv", mappings)] == [
        "example-csv-patient",
        "example-patient",
    ]
    assert [
        p.resource_id for p in resources_reading_file("up/PUBLIC.ADMISSIONS.CSV", mappings)
    ] == ["example-encounter"]
    assert resources_reading_file("callout.csv", mappings) == []


def test_rows_become_records_and_a_row_that_does_not_fit_is_its_own_error(mappings):
    plan = mappings.resource("example-csv-patient")
    rows = [
        HEADER,
        ["1", "10006", "F", "2094-03-05 00:00:00", "", "", "", "0"],
        ["2", "10011", "F"],  # ragged
        ["3", "", "M", "2090-06-05 00:00:00", "", "", "", "0"],  # no primary key
        ["4", "10006", "F", "2094-03-05 00:00:00", "", "", "", "0"],  # same instance again
    ]
    items = list(csv_records(plan, "patients.csv", rows))
    errors = [item for item in items if isinstance(item, RowError)]
    assert [(e.row, e.message) for e in errors] == [
        (3, "file patients.csv, row 3: 3 field(s) where the header names 8"),
        (4, "file patients.csv, row 4: no value in the primary key column subject_id"),
    ]
    (record,) = [item for item in items if not isinstance(item, RowError)]
    assert record.primary_key_value == "10006"
    assert record.columns["patients.gender"] == ["F", "F"]
    assert record.columns["patients.dod"] == [None, None]  # an empty field is NULL


def test_a_mapping_that_joins_or_a_header_without_its_columns_is_refused(mappings):
    with pytest.raises(FileError, match="joins public.admissions: joins are not available"):
        list(csv_records(mappings.resource("example-patient"), "patients.csv", [HEADER]))
    with pytest.raises(
        FileError, match="file patients.csv has no column dob, dod, expire_flag in its header"
    ):
        list(csv_records(mappings.resource("example-csv-patient"), "patients.csv", [HEADER[:3]]))


def test_filters_apply_as_the_sql_query_would(mappings):
    from dataclasses import replace

    from river.plan import Filter

    plan = mappings.resource("example-csv-patient")
    flag = next(c for c in plan.columns if c.column.column == "expire_flag")
    rows = [HEADER] + [
        [str(n), str(n), "F", "", "", "", "", flag_value]
        for n, flag_value in ((1, "1"), (2, "0"), (3, ""), (4, "1.0"))
    ]

    def keys(relation: str, value: str) -> list[str]:
        filtered = replace(plan, filters=(Filter(relation, value, flag),))
        return [r.primary_key_value for r in csv_records(filtered, "patients.csv", rows)]

    assert keys("=", "1") == ["1", "4"]  # numbers compare as numbers; NULL passes nothing
    assert keys("<>", "1") == ["2"]
    assert keys("IN", "0, 1") == ["1", "2", "4"]
    assert keys("BETWEEN", "0,0.5") == ["2"]
    assert keys("LIKE", "1%") == ["1", "4"]
    assert keys(">=", "1") == ["1", "4"]


def test_the_example_connector_files_exist():
    assert CDC_FILE.is_file() and CSV_FILE.is_file() and Path(CSV_EXAMPLE).is_file()
