"""Extraction on the values a hospital's database really holds, against PostgreSQL:
a value Python cannot hold fails its own instance, named with its primary key value
and column, and every other instance of the resource is read; a list of keys of any
length is read (drivers cap bound parameters at 65,535)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest

from river.concept_maps import ConceptMaps
from river.engine import Engine
from river.mapping import MappingSet
from river.scripts import ScriptRegistry
from river.sql import SourceDatabase
from test.conftest import postgres_url, scratch_database
from test.unit.mapping_builder import ExportBuilder

# row id -> what its row holds that Python cannot, and the column the error names
MESSY = {
    2: ("admitted = 'infinity'", "visits.admitted", "timestamp infinity"),
    4: ("admitted = '-infinity'", "visits.admitted", "timestamp -infinity"),
    5: ("born = '10000-01-01'", "visits.born", "a date outside the years 1 to 9999"),
    6: ("born = '0044-03-15 BC'", "visits.born", "a date outside the years 1 to 9999"),
    7: ("at = '24:00:00'", "visits.at", "a time Python cannot hold"),
    8: ("amount = 'NaN'", "visits.amount", "NaN"),
    9: ("amount = 1e400", "visits.amount", "a number too large"),
    10: ("ratio = 'Infinity'", "visits.ratio", "an infinite number"),
}
ROWS = 12


@pytest.fixture(scope="module")
def source() -> Iterator[str]:
    with scratch_database("river_source_values") as url:
        with psycopg.connect(url, autocommit=True) as db:
            make_visits(db, ROWS)
            for row_id, (assignment, _, _) in MESSY.items():
                db.execute(f"UPDATE visits SET {assignment} WHERE id = {row_id}")
            db.execute("CREATE TABLE many (id integer PRIMARY KEY)")
            db.execute("INSERT INTO many SELECT generate_series(1, 80000)")
        yield url


def make_visits(db: psycopg.Connection, rows: int) -> None:
    """The table `visits`, its `rows` rows holding readable values."""
    db.execute(
        "CREATE TABLE visits (id integer PRIMARY KEY, admitted timestamp, born date,"
        " at time, amount numeric, ratio float8, note text)"
    )
    db.execute(
        "INSERT INTO visits SELECT i, '2012-02-24 06:00', '1970-01-01', '12:00', i, i,"
        " 'visit ' || i FROM generate_series(1, %s) i",
        (rows,),
    )


def visits_engine(url: str) -> Engine:
    export = ExportBuilder()
    visit = export.resource("Encounter", "visits", "id")
    visit.attribute("status", "code", export.group(static=["finished"]))
    visit.attribute("class.code", "code", export.group(static=["IMP"]))
    visit.attribute(
        "period.start", "dateTime", export.group(sql=[export.input("visits", "admitted")])
    )
    for n, column in enumerate(("born", "at", "amount", "ratio")):
        visit.attribute(
            f"identifier[{n}].value", "string", export.group(sql=[export.input("visits", column)])
        )
    mapping = export.analyse()
    scripts = ScriptRegistry.default()
    return Engine(MappingSet([mapping]), scripts, ConceptMaps({}), source_db_url=url, chunk_size=3)


def test_a_value_python_cannot_hold_fails_its_instance_and_the_others_are_read(source):
    engine = visits_engine(source)
    resource_id = next(iter(engine.mappings)).resource_id
    records = list(engine.records(resource_id))
    # Every row is read, across chunks of 3, in order: nothing after a bad value is lost.
    assert [r.primary_key_value for r in records] == list(range(1, ROWS + 1))
    for record in records:
        if record.primary_key_value in MESSY:
            _, column, reason = MESSY[record.primary_key_value]
            assert len(record.unreadable) == 1, record
            assert record.unreadable[0].startswith(f"column {column}: {reason}")
        else:
            assert record.unreadable == (), record
    outcomes = {o.primary_key_value: o for o in engine.run(resource_id)}
    assert {k for k, o in outcomes.items() if o.resource is None} == set(MESSY)
    assert "cannot read the source row: column visits.admitted" in outcomes[2].error
    assert outcomes[1].resource["period"]["start"].startswith("2012-02-24T06:00:00")
    answer = engine.preview(resource_id, [1, 2, 5])
    assert len(answer["instances"]) == 1
    assert {e["primary_key_value"] for e in answer["errors"]} == {2, 5}
    engine.close()


def test_an_unreadable_value_never_quotes_the_value(source):
    engine = visits_engine(source)
    resource_id = next(iter(engine.mappings)).resource_id
    notes = [n for r in engine.records(resource_id) for n in r.unreadable]
    assert notes and not any("10000-01-01" in n or "0044" in n or "1e400" in n for n in notes)
    engine.close()


@pytest.mark.parametrize("n", [65_536, 70_000])
def test_more_keys_than_a_statement_can_bind_are_counted_and_read(source, n):
    export = ExportBuilder()
    export.resource("Patient", "many", "id").attribute(
        "identifier[0].value", "string", export.group(sql=[export.input("many", "id")])
    )
    plan = next(iter(export.analyse().resources.values()))
    database = SourceDatabase(source, chunk_size=5000)
    keys = [str(k) for k in range(n, 0, -1)]  # as a retry names them: text, any order
    assert database.count(plan, keys) == n
    assert sum(1 for _ in database.records(plan, keys)) == n
    database.close()


def test_text_of_a_sql_ascii_source_is_read_as_utf8_and_other_bytes_fail_their_instance():
    """A SQL_ASCII database keeps text as bytes, checked against no encoding: UTF-8
    text reads as itself; other bytes (a Latin-1 é) fail their instance, named."""
    name = f"river_source_sql_ascii_{os.getpid()}"
    with psycopg.connect(postgres_url(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(
            f"CREATE DATABASE \"{name}\" ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'"
            " TEMPLATE template0"
        )
    url = postgres_url(name)
    try:
        with psycopg.connect(url, autocommit=True) as db:
            make_visits(db, 4)
            # Caf\xc3\xa9 is UTF-8; Caf\xe9 is Latin-1, which UTF-8 cannot read.
            db.execute(r"UPDATE visits SET note = E'Caf\xc3\xa9' WHERE id = 2")
            db.execute(r"UPDATE visits SET note = E'Caf\xe9' WHERE id = 3")
        engine = notes_engine(url)
        resource_id = next(iter(engine.mappings)).resource_id
        outcomes = {o.primary_key_value: o for o in engine.run(resource_id)}
        assert sorted(outcomes) == [1, 2, 3, 4]
        assert outcomes[1].resource["identifier"][0]["value"] == "visit 1"
        assert outcomes[2].resource["identifier"][0]["value"] == "Café"
        assert outcomes[3].resource is None
        assert outcomes[3].error == (
            "cannot read the source row: column visits.note: text that is not UTF-8"
            " (the source database is SQL_ASCII, which checks no encoding)"
        )
        assert outcomes[4].resource is not None
        engine.close()
    finally:
        with psycopg.connect(postgres_url(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def notes_engine(url: str) -> Engine:
    export = ExportBuilder()
    visit = export.resource("Encounter", "visits", "id")
    visit.attribute("status", "code", export.group(static=["finished"]))
    visit.attribute("class.code", "code", export.group(static=["IMP"]))
    visit.attribute(
        "identifier[0].value", "string", export.group(sql=[export.input("visits", "note")])
    )
    mapping = export.analyse()
    scripts = ScriptRegistry.default()
    return Engine(MappingSet([mapping]), scripts, ConceptMaps({}), source_db_url=url)
