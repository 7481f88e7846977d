"""The FHIR store: one suite, run on both backends (PostgreSQL and MongoDB).

PostgreSQL runs in a scratch database of the local stack; MongoDB runs on
FerretDB (`bash infra/start.sh ferretdb`; `make test` starts it), in a scratch
database dropped after each test, with bulk commands of 40 documents as
docs/operations.md demands. Data stay small: FerretDB is a wire-protocol check, not a
store. What the backends must agree on is what the services and the API see:
created / updated / replayed, the batch counters and status, errors, reads
and searches.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import psycopg
import pytest
from pymongo import monitoring

from adapters.store import FhirStore, InstanceError, ResourceRefused, StoreUnavailable
from adapters.store.mongo import MongoStore
from adapters.store.postgres import PostgresStore
from river.batches import CANCELED, COMPLETED, FAILED, RUNNING
from test.conftest import scratch_database

pytestmark = pytest.mark.stack

SOURCE = "http://terminology.arkhn.org/CodeSystem/source"
RESOURCE = "http://terminology.arkhn.org/CodeSystem/resource"
FERRETDB_PORT = os.environ.get("FERRETDB_PORT", "27017")


def ferretdb_url(database: str) -> str:
    return f"mongodb://127.0.0.1:{FERRETDB_PORT}/{database}"


@pytest.fixture(params=["postgres", "mongo"])
def store(request: pytest.FixtureRequest) -> Iterator[FhirStore]:
    if request.param == "postgres":
        with scratch_database("river_test_store") as url:
            pg = PostgresStore(url)
            try:
                yield pg
            finally:
                pg.close()
        return
    from pymongo import MongoClient
    from pymongo.errors import ConnectionFailure

    name = f"river_test_store_{uuid.uuid4().hex[:8]}"
    client: MongoClient[dict[str, Any]] = MongoClient(
        ferretdb_url("admin"), serverSelectionTimeoutMS=3000
    )
    try:
        client.admin.command("ping")
    except ConnectionFailure:
        client.close()
        pytest.fail(
            f"FerretDB is not running on 127.0.0.1:{FERRETDB_PORT}, so the MongoDB store cannot "
            "be tested: start it with `bash infra/start.sh ferretdb` (make test does), then run "
            "the tests again."
        )
    mongo = MongoStore(ferretdb_url(name), bulk_size=40)
    try:
        yield mongo
    finally:
        mongo.close()
        client.drop_database(name)
        client.close()


def patient(n: int, family: str = "Doe", code: str = "res-patient", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": f"pat-{n:03d}",
        "meta": {
            "lastUpdated": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "tag": [{"system": SOURCE, "code": "src-mimic"}, {"system": RESOURCE, "code": code}],
        },
        "identifier": [{"system": "http://mimic/subject_id", "value": str(n)}],
        "name": [{"family": family, "given": [f"Given{n}"]}],
        "gender": "female",
        **extra,
    }


def actions(loaded: list[Any]) -> list[str]:
    return [item.action for item in loaded]


def counts(store: FhirStore, batch_id: str, resource_id: str = "res-patient") -> dict[str, Any]:
    state = store.batch(batch_id)
    assert state is not None, f"batch {batch_id} not found"
    [row] = [r for r in state.as_json()["resources"] if r["resource_id"] == resource_id]
    return {k: v for k, v in row.items() if k != "resource_id"}


# --- loading: created, replayed, updated ---------------------------------------------------


def test_load_tells_created_from_replayed_from_updated(store: FhirStore):
    store.create_batch("b1", ["res-patient"])
    first = [patient(n) for n in range(3)]
    loaded = store.load("b1", [("res-patient", r) for r in first])
    assert [(x.resource_type, x.id, x.action) for x in loaded] == [
        ("Patient", "pat-000", "created"),
        ("Patient", "pat-001", "created"),
        ("Patient", "pat-002", "created"),
    ]
    assert store.read("Patient", "pat-001") == first[1]
    after_first = counts(store, "b1")
    assert after_first | {"status": None} == {
        "status": None,
        "expected": None,
        "extracted": 0,
        "transformed": 3,
        "loaded": 3,
        "created": 3,
        "updated": 0,
        "deleted": 0,
        "failed": 0,
    }

    # A replay (a service restarted before committing): same batch, same content but
    # meta.lastUpdated. Nothing is counted again.
    again = [patient(n) for n in range(3)]
    for r in again:
        r["meta"]["lastUpdated"] = "2031-01-01T00:00:00.000+00:00"
    assert actions(store.load("b1", [("res-patient", r) for r in again])) == ["replayed"] * 3
    assert counts(store, "b1") == after_first

    # The same batch with new content for one instance: an update, counted.
    changed = patient(1, family="Smith")
    assert actions(store.load("b1", [("res-patient", changed)])) == ["updated"]
    assert store.read("Patient", "pat-001") == changed
    assert counts(store, "b1")["updated"] == 1
    assert counts(store, "b1")["transformed"] == 4

    # Another batch over the same instances: updated, counted for that batch only.
    store.create_batch("b2", ["res-patient"])
    assert (
        actions(store.load("b2", [("res-patient", patient(n)) for n in range(3)]))
        == ["updated"] * 3
    )
    b2 = counts(store, "b2")
    assert (b2["created"], b2["updated"], b2["transformed"], b2["loaded"]) == (0, 3, 3, 3)
    assert counts(store, "b1")["transformed"] == 4
    total, page = store.search("Patient")
    assert total == 3 and len(page) == 3  # upserts: never a duplicate


def test_an_id_twice_in_one_call_is_judged_against_its_previous_version(store: FhirStore):
    store.create_batch("b1", ["res-patient"])
    loaded = store.load(
        "b1",
        [
            ("res-patient", patient(1)),
            ("res-patient", patient(1)),
            ("res-patient", patient(1, family="Smith")),
            ("res-patient", patient(2)),
        ],
    )
    assert actions(loaded) == ["created", "replayed", "updated", "created"]
    assert store.read("Patient", "pat-001")["name"][0]["family"] == "Smith"
    c = counts(store, "b1")
    assert (c["created"], c["updated"], c["transformed"]) == (2, 1, 3)


def test_resources_of_several_types_in_one_call(store: FhirStore):
    store.create_batch("b1", ["res-patient", "res-encounter"])
    encounter = {
        "resourceType": "Encounter",
        "id": "enc-1",
        "status": "finished",
        "subject": {"reference": "Patient/pat-001"},
    }
    loaded = store.load("b1", [("res-patient", patient(1)), ("res-encounter", encounter)])
    assert [(x.resource_type, x.action) for x in loaded] == [
        ("Patient", "created"),
        ("Encounter", "created"),
    ]
    assert store.read("Encounter", "enc-1") == encounter
    assert counts(store, "b1", "res-encounter")["created"] == 1
    assert counts(store, "b1", "res-patient")["created"] == 1


def test_load_refuses_what_cannot_name_a_table(store: FhirStore):
    with pytest.raises(Exception, match="not a FHIR resource type name"):
        store.load("b1", [("r", {"resourceType": "Patient; DROP TABLE x", "id": "1"})])
    with pytest.raises(Exception, match="has no id"):
        store.load("b1", [("r", {"resourceType": "Patient"})])
    assert store.load("b1", []) == []


# --- batch state ---------------------------------------------------------------------------


def test_a_batch_completes_when_loaded_and_failed_reach_expected(store: FhirStore):
    store.create_batch("b1", ["res-patient", "res-encounter"])
    state = store.batch("b1")
    assert state is not None and state.status == RUNNING
    assert state.resource_ids == ["res-patient", "res-encounter"]
    store.set_expected("b1", "res-patient", 3)
    store.set_extracted("b1", "res-patient", 3)
    store.set_expected("b1", "res-encounter", 0)
    store.set_extracted("b1", "res-encounter", 0)
    store.load("b1", [("res-patient", patient(n)) for n in range(2)])
    assert store.batch("b1").status == RUNNING
    assert store.batch("b1").as_json()["ended_at"] is None

    new = store.record_errors([InstanceError("b1", "res-patient", 2, "transform", "bad date")])
    assert new == 1
    state = store.batch("b1")
    assert state.status == COMPLETED
    shown = state.as_json()
    assert shown["status"] == COMPLETED
    assert shown["ended_at"] is not None
    assert shown["duration_seconds"] >= 0
    assert [r["status"] for r in shown["resources"]] == [COMPLETED, COMPLETED]
    assert shown["resources"][0] | {"resource_id": None} == {
        "resource_id": None,
        "status": COMPLETED,
        "expected": 3,
        "extracted": 3,
        "transformed": 2,
        "loaded": 2,
        "created": 2,
        "updated": 0,
        "deleted": 0,
        "failed": 1,
    }


def test_set_extracted_sets_the_value_it_is_given(store: FhirStore):
    store.create_batch("b1", ["res-patient"])
    store.set_extracted("b1", "res-patient", 10)
    store.set_extracted("b1", "res-patient", 4)  # a replayed extraction counts from 0 again
    assert counts(store, "b1")["extracted"] == 4
    store.set_expected("b1", "res-patient", 7)
    store.set_expected("b1", "res-patient", 5)
    assert counts(store, "b1")["expected"] == 5


def test_cancel_and_a_failed_resource(store: FhirStore):
    store.create_batch("b1", ["res-patient"])
    assert store.cancel_batch("b1") is True
    state = store.batch("b1")
    assert state.status == CANCELED and state.canceled_at is not None
    canceled_at = state.canceled_at
    assert store.cancel_batch("b1") is True  # again: nothing changes
    assert store.batch("b1").canceled_at == canceled_at
    assert store.batch("b1").as_json()["resources"][0]["status"] == CANCELED
    assert store.cancel_batch("no-such-batch") is False

    store.create_batch("b2", ["res-patient", "res-encounter"])
    store.resource_failed("b2", "res-encounter", "relation mimic.admissions does not exist")
    store.set_expected("b2", "res-patient", 1)
    store.load("b2", [("res-patient", patient(1))])
    shown = store.batch("b2").as_json()
    assert shown["status"] == FAILED
    encounter = shown["resources"][1]
    assert encounter["status"] == FAILED
    assert encounter["error"] == "relation mimic.admissions does not exist"


def test_a_live_batch_never_completes(store: FhirStore):
    store.create_batch("live", ["res-patient"], live=True)
    store.set_expected("live", "res-patient", 1)
    store.load("live", [("res-patient", patient(1))])
    shown = store.batch("live").as_json()
    assert shown["status"] == RUNNING and shown["live"] is True
    assert shown["resources"][0]["status"] == RUNNING  # caught up, but it goes on


def test_a_live_batch_grows_with_each_extraction(store: FhirStore):
    store.create_batch("live", ["res-patient"], live=True)
    store.add_extracted("live", "res-patient", 2)
    store.add_extracted("live", "res-patient", 3)
    store.add_extracted("live", "res-other", 1)  # made if missing
    assert (counts(store, "live")["expected"], counts(store, "live")["extracted"]) == (5, 5)
    store.add_counts("live", {"res-patient": {"transformed": 2, "updated": 2}})
    assert (counts(store, "live")["transformed"], counts(store, "live")["updated"]) == (2, 2)


def test_create_batch_is_idempotent_and_keeps_counters_written_before_it(store: FhirStore):
    # The loader may count for a batch whose record is not there yet: the counts wait for it.
    store.load("early", [("res-patient", patient(1))])
    assert store.batch("early") is None
    store.create_batch("early", ["res-patient"], retry_of="b0")
    state = store.batch("early")
    assert state.retry_of == "b0"
    assert counts(store, "early")["created"] == 1
    created_at = state.created_at
    store.create_batch("early", ["res-patient"])
    assert store.batch("early").created_at == created_at
    assert counts(store, "early")["created"] == 1


def test_batches_newest_first(store: FhirStore):
    for name in ("first", "second", "third"):
        store.create_batch(name, ["res-patient"])
    assert [b.batch_id for b in store.batches()] == ["third", "second", "first"]
    assert [b.batch_id for b in store.batches(limit=2, offset=1)] == ["second", "first"]
    assert store.batches(limit=0) == []
    assert store.batch("no-such-batch") is None


# --- progress times: what tells a stalled resource -------------------------------------------


def progressed_at(store: FhirStore, batch_id: str, resource_id: str) -> dt.datetime | None:
    state = store.batch(batch_id)
    assert state is not None
    progress = state.resources.get(resource_id)
    return progress.progressed_at if progress is not None else None


def test_every_kind_of_counter_write_moves_the_progress_time(store: FhirStore):
    store.create_batch("b1", ["res-patient", "res-other"])
    store.load("b1", [("res-patient", patient(1))])  # the type's table or collection, made
    assert progressed_at(store, "b1", "res-other") is None  # nothing moved yet
    slack = dt.timedelta(milliseconds=50)  # MongoDB keeps milliseconds; clocks of one host
    last: dt.datetime | None = None

    def moves(what: str, write: Any, resource_id: str = "res-other") -> None:
        nonlocal last
        time.sleep(0.01)  # a later write, a later time, even in milliseconds
        before = dt.datetime.now(dt.UTC)
        write()
        after = dt.datetime.now(dt.UTC)
        at = progressed_at(store, "b1", resource_id)
        assert at is not None, f"{what}: no progress time"
        assert before - slack <= at <= after + slack, f"{what}: {at} not in [{before}, {after}]"
        assert last is None or at > last, f"{what}: the progress time did not move"
        last = at

    def stays(what: str, write: Any, resource_id: str = "res-other") -> None:
        held = progressed_at(store, "b1", resource_id)
        time.sleep(0.01)
        write()
        assert progressed_at(store, "b1", resource_id) == held, f"{what} moved it"

    other = [("res-other", patient(n, code="res-other")) for n in range(10, 13)]
    moves("expected", lambda: store.set_expected("b1", "res-other", 3))
    moves("extracted", lambda: store.set_extracted("b1", "res-other", 3))
    moves("transformed, created", lambda: store.load("b1", other[:2]))
    changed = ("res-other", patient(10, family="Roe", code="res-other"))
    moves("updated", lambda: store.load("b1", [changed]))
    moves("deleted", lambda: store.delete("b1", "res-other", "Patient", ["pat-011"]))
    failure = InstanceError("b1", "res-other", 12, "transform", "bad date")
    moves("failed", lambda: store.record_errors([failure]))
    moves("add_counts", lambda: store.add_counts("b1", {"res-other": {"transformed": 1}}))
    moves("add_extracted", lambda: store.add_extracted("b1", "res-other", 1))
    moves("error", lambda: store.resource_failed("b1", "res-other", "gone"))

    # What changes no counter moves nothing: a replay, the same value set again, an
    # error already counted, a delete of what is not there, another resource's writes.
    stays("a replayed load", lambda: store.load("b1", [changed]))
    stays("the same expected", lambda: store.set_expected("b1", "res-other", 4))
    stays("the same extracted", lambda: store.set_extracted("b1", "res-other", 4))
    stays("the same error", lambda: store.resource_failed("b1", "res-other", "gone"))
    stays("a replayed error", lambda: store.record_errors([failure]))
    stays("nothing deleted", lambda: store.delete("b1", "res-other", "Patient", ["pat-011"]))
    stays("another resource's load", lambda: store.load("b1", [("res-patient", patient(2))]))
    stays("another resource's set", lambda: store.set_extracted("b1", "res-patient", 2))
    stays("nothing added", lambda: store.add_counts("b1", {"res-other": {"transformed": 0}}))


def test_a_resource_that_stops_moving_shows_stalled_at_its_stage(store: FhirStore):
    store.create_batch("b1", ["res-patient", "res-waiting"])
    store.set_expected("b1", "res-patient", 3)
    store.set_extracted("b1", "res-patient", 3)
    store.load("b1", [("res-patient", patient(n)) for n in range(2)])
    state = store.batch("b1")
    moved = state.resources["res-patient"].progressed_at
    assert moved is not None and moved >= state.created_at - dt.timedelta(milliseconds=5)

    assert "stalled" not in state.as_json(stalled_after=60, now=moved + dt.timedelta(seconds=59))
    later = state.updated_at + dt.timedelta(seconds=61)
    shown = state.as_json(stalled_after=60, now=later)
    assert shown["status"] == RUNNING and shown["stalled"] is True
    patient_row, waiting_row = shown["resources"]
    assert (patient_row["status"], patient_row["stalled_at_stage"]) == ("stalled", "transform")
    assert patient_row["reason"].endswith(
        "s; stopped at stage transform (2 of 3 extracted instances transformed and loaded)"
    )
    # Never moved: it counts from the batch's last change, and waits at extract.
    assert (waiting_row["status"], waiting_row["stalled_at_stage"]) == ("stalled", "extract")
    # Without a threshold, the store's own view judges nothing.
    assert "stalled" not in state.as_json(now=later)


def test_postgres_gains_the_progress_time_on_a_store_made_before_it():
    with scratch_database("river_test_store_progress") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE river_batch_resource (batch_id text NOT NULL,"
                " resource_id text NOT NULL, expected bigint,"
                " extracted bigint NOT NULL DEFAULT 0, transformed bigint NOT NULL DEFAULT 0,"
                " created bigint NOT NULL DEFAULT 0, updated bigint NOT NULL DEFAULT 0,"
                " deleted bigint NOT NULL DEFAULT 0, failed bigint NOT NULL DEFAULT 0,"
                " error text, PRIMARY KEY (batch_id, resource_id))"
            )
            conn.execute(
                "INSERT INTO river_batch_resource (batch_id, resource_id, extracted)"
                " VALUES ('old', 'res-patient', 7)"
            )
        store = PostgresStore(url)
        try:
            store.create_batch("old", ["res-patient"])
            assert progressed_at(store, "old", "res-patient") is None  # kept, as it was
            assert counts(store, "old")["extracted"] == 7
            store.set_extracted("old", "res-patient", 8)
            assert progressed_at(store, "old", "res-patient") is not None
        finally:
            store.close()


# --- errors --------------------------------------------------------------------------------


def test_record_errors_counts_each_new_instance_and_stage_once(store: FhirStore):
    store.create_batch("b1", ["res-patient", "res-encounter"])
    errors = [
        InstanceError("b1", "res-patient", 1, "transform", "birthDate: not a date"),
        InstanceError("b1", "res-patient", "1", "transform", "a string key is another key"),
        InstanceError("b1", "res-patient", 1, "load", "another stage"),
        InstanceError("b1", "res-encounter", 7, "transform", "status: required"),
        InstanceError("b1", None, None, "load", "message on topic transform is not JSON"),
        InstanceError(None, None, None, "extract", "no batch: not kept"),
    ]
    assert store.record_errors(errors) == 5
    assert store.record_errors(errors) == 0  # a replay
    assert store.record_errors(errors[:1] + errors[:1]) == 0
    assert counts(store, "b1")["failed"] == 3
    assert counts(store, "b1", "res-encounter")["failed"] == 1

    total, page = store.errors("b1")
    assert total == 5
    assert {(e.resource_id, e.primary_key_value, e.stage) for e in page} == {
        ("res-patient", 1, "transform"),
        ("res-patient", "1", "transform"),
        ("res-patient", 1, "load"),
        ("res-encounter", 7, "transform"),
        (None, None, "load"),
    }
    assert all(e.batch_id == "b1" for e in page)
    pages = [store.errors("b1", limit=2, offset=o) for o in (0, 2, 4)]
    assert [t for t, _ in pages] == [5, 5, 5]
    assert [len(p) for _, p in pages] == [2, 2, 1]
    assert [e for _, p in pages for e in p] == page  # a stable order
    assert store.errors("b1", limit=2, offset=10) == (5, [])
    assert store.errors("no-such-batch") == (0, [])

    failed = store.failed_instances("b1")
    assert sorted(failed) == ["res-encounter", "res-patient"]
    assert failed["res-encounter"] == [7]
    assert sorted(failed["res-patient"], key=repr) == sorted([1, "1"], key=repr)  # types kept


# --- reading and searching -----------------------------------------------------------------


def test_search_by_tag_with_paging(store: FhirStore):
    store.create_batch("b1", ["res-patient", "res-other"])
    store.load("b1", [("res-patient", patient(n)) for n in range(5)])
    store.load("b1", [("res-other", patient(n, code="res-other")) for n in range(5, 7)])

    total, everything = store.search("Patient", count=100)
    assert total == 7 and [r["id"] for r in everything] == [f"pat-{n:03d}" for n in range(7)]
    tag = (RESOURCE, "res-patient")
    seen = []
    for offset in (0, 2, 4):
        total, page = store.search("Patient", tag=tag, count=2, offset=offset)
        assert total == 5
        seen += [r["id"] for r in page]
    assert seen == [f"pat-{n:03d}" for n in range(5)]
    assert store.search("Patient", tag=tag, count=2, offset=6) == (5, [])
    assert store.search("Patient", tag=tag, count=0) == (5, [])  # _summary=count
    assert store.search("Patient", tag=(RESOURCE, "res-other"))[0] == 2
    # The pair must be one tag: the source's system with a resource code is no match.
    assert store.search("Patient", tag=(SOURCE, "res-patient")) == (0, [])
    # An empty system: the code in any system.
    assert store.search("Patient", tag=("", "src-mimic"))[0] == 7
    # What the store returns is the resource, nothing of the store's own.
    assert everything[0] == store.read("Patient", "pat-000")
    assert set(everything[0]) == set(patient(0))


def test_reading_what_is_not_there(store: FhirStore):
    assert store.read("Patient", "nope") is None
    assert store.read("Observation", "x") is None  # no table or collection yet
    assert store.read("not a type", "x") is None
    assert store.search("Observation") == (0, [])
    assert store.search("not a type") == (0, [])


def test_delete_counts_what_it_deleted(store: FhirStore):
    store.create_batch("b1", ["res-patient"])
    store.load("b1", [("res-patient", patient(n)) for n in range(3)])
    assert store.delete("b1", "res-patient", "Patient", ["pat-000", "pat-001", "pat-999"]) == 2
    assert store.read("Patient", "pat-000") is None
    assert store.read("Patient", "pat-002") is not None
    assert store.delete("b1", "res-patient", "Patient", ["pat-000"]) == 0  # a replay
    assert counts(store, "b1")["deleted"] == 2
    assert store.delete("b1", "res-patient", "Observation", ["x"]) == 0
    # Loaded again after a delete: created again.
    assert actions(store.load("b1", [("res-patient", patient(0))])) == ["created"]


# --- versions: batches and live changes reach the loader by two paths ------------------


def test_an_older_reading_never_overwrites_a_newer_one(store: FhirStore):
    """A batch extracted an instance at 10.0; a live change read it again at 20.0 and
    reached the store first: the batch's version arrives later and changes nothing,
    but counts as loaded (an update) so that its batch still completes."""
    store.create_batch("live-src", ["res-patient"], live=True)
    store.create_batch("b1", ["res-patient"])
    newer = patient(1, family="Newer")
    assert actions(store.load("live-src", [("res-patient", newer)], [20.0])) == ["created"]
    older = patient(1, family="Older")
    assert actions(store.load("b1", [("res-patient", older)], [10.0])) == ["superseded"]
    assert store.read("Patient", "pat-001") == newer
    b1 = counts(store, "b1")
    assert (b1["created"], b1["updated"], b1["transformed"], b1["loaded"]) == (0, 1, 1, 1)
    # A later reading writes, whichever batch it comes from; so does one of no known time.
    later = patient(1, family="Later")
    assert actions(store.load("b1", [("res-patient", later)], [30.0])) == ["updated"]
    assert store.read("Patient", "pat-001") == later
    unknown = patient(1, family="Unknown")
    assert actions(store.load("b1", [("res-patient", unknown)])) == ["updated"]
    assert store.read("Patient", "pat-001") == unknown
    # ... and keeps the newest known reading: 25.0 is still older than 30.0.
    assert actions(store.load("b1", [("res-patient", patient(1))], [25.0])) == ["superseded"]
    assert store.read("Patient", "pat-001") == unknown


def test_a_deletion_keeps_older_readings_out_and_newer_ones_in(store: FhirStore):
    store.create_batch("b1", ["res-patient"])
    store.create_batch("live-src", ["res-patient"], live=True)
    store.load("b1", [("res-patient", patient(n)) for n in range(2)], [10.0, 10.0])
    # A live change deleted pat-000 (read at 20.0): the batch's version read at 15.0
    # comes after, and does not bring it back.
    assert store.delete("live-src", "res-patient", "Patient", ["pat-000"], 20.0) == 1
    assert actions(store.load("b1", [("res-patient", patient(0))], [15.0])) == ["superseded"]
    assert store.read("Patient", "pat-000") is None
    assert counts(store, "b1")["updated"] == 1
    # A reading after the deletion makes it again (the row came back in the source).
    assert actions(store.load("b1", [("res-patient", patient(0))], [25.0])) == ["created"]
    assert store.read("Patient", "pat-000") is not None
    # A deletion read before the stored version leaves it: a newer reading made it.
    assert store.delete("live-src", "res-patient", "Patient", ["pat-001"], 5.0) == 0
    assert store.read("Patient", "pat-001") is not None
    # Deleted once more, then its tombstone is older than a new reading: created.
    assert store.delete("live-src", "res-patient", "Patient", ["pat-000"], 26.0) == 1
    assert actions(store.load("b1", [("res-patient", patient(0))], [27.0])) == ["created"]


def test_postgres_gains_the_reading_time_on_a_table_made_before_it():
    with scratch_database("river_test_store_read_at") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE patient (id text PRIMARY KEY, resource jsonb NOT NULL,"
                " batch_id text, content_hash text,"
                " last_updated timestamptz NOT NULL DEFAULT now())"
            )
        store = PostgresStore(url)
        try:
            store.create_batch("b1", ["res-patient"])
            assert actions(store.load("b1", [("res-patient", patient(1))], [10.0])) == ["created"]
            assert actions(store.load("b1", [("res-patient", patient(1, "X"))], [5.0])) == [
                "superseded"
            ]
        finally:
            store.close()


def test_batches_live_apart_and_errors_by_resource_and_stage(store: FhirStore):
    store.create_batch("b1", ["res-patient", "res-visit"])
    store.create_batch("live-src", ["res-patient"], live=True)
    store.create_batch("b2", ["res-patient"])
    assert [b.batch_id for b in store.batches()] == ["b2", "live-src", "b1"]
    assert [b.batch_id for b in store.batches(live=True)] == ["live-src"]
    assert [b.batch_id for b in store.batches(live=False)] == ["b2", "b1"]
    assert [b.batch_id for b in store.batches(1, 1, live=False)] == ["b1"]
    store.record_errors(
        [
            InstanceError("b1", "res-patient", 1, "transform", "bad date"),
            InstanceError("b1", "res-patient", 2, "load", "refused"),
            InstanceError("b1", "res-visit", 1, "transform", "bad code"),
        ]
    )
    total, page = store.errors("b1", resource_id="res-patient")
    assert total == 2 and [e.primary_key_value for e in page] == [1, 2]
    total, page = store.errors("b1", stage="transform")
    assert total == 2 and {e.resource_id for e in page} == {"res-patient", "res-visit"}
    total, page = store.errors("b1", 10, 0, "res-patient", "load")
    assert total == 1 and page[0].message == "refused"
    assert store.errors("b1", resource_id="res-other") == (0, [])


def test_ping(store: FhirStore):
    store.ping()


# --- failures ------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("backend", ["postgres", "mongo"])
def test_an_unreachable_store_raises_store_unavailable_without_the_password(backend):
    port = closed_port()
    password = "S3cret-pa55word"
    if backend == "postgres":
        unreachable: FhirStore = PostgresStore(
            f"postgresql://river:{password}@127.0.0.1:{port}/fhirstore", connect_timeout=2
        )
    else:
        unreachable = MongoStore(
            f"mongodb://river:{password}@127.0.0.1:{port}/fhirstore", timeout_ms=500
        )
    calls = [
        unreachable.ping,
        lambda: unreachable.load("b1", [("res-patient", patient(1))]),
        lambda: unreachable.batch("b1"),
        lambda: unreachable.record_errors([InstanceError("b1", "r", 1, "load", "m")]),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable) as raised:
            call()
        message = str(raised.value)
        assert password not in message
        assert f"127.0.0.1:{port}/fhirstore cannot be reached" in message, message
        assert "\n" not in message
    unreachable.close()


def test_concurrent_loads_of_the_same_new_ids_never_fail_nor_duplicate(store: FhirStore):
    store.create_batch("b1", ["res-patient"])
    items = [("res-patient", patient(n)) for n in range(40)]
    barrier = threading.Barrier(3)
    results: list[list[str]] = []
    failures: list[BaseException] = []

    def load() -> None:
        try:
            barrier.wait()
            results.append(actions(store.load("b1", items)))
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures
    assert len(results) == 3
    flat = [a for r in results for a in r]
    assert (flat.count("created"), flat.count("replayed")) == (40, 80)
    assert counts(store, "b1")["created"] == 40
    assert store.search("Patient", count=0) == (40, [])
    assert store.read("Patient", "pat-039") == items[-1][1]


def test_postgres_concurrent_loaders_count_each_instance_once():
    """Two loaders on a new resource type (its table made by both at once) and the
    same new ids: each instance is created once and replayed once, never twice."""
    with scratch_database("river_test_store_race") as url:
        stores = [PostgresStore(url) for _ in range(4)]
        stores[0].create_batch("b1", ["res-patient"])
        items = [("res-patient", patient(n)) for n in range(200)]
        barrier = threading.Barrier(len(stores))
        results: list[list[str]] = []
        failures: list[BaseException] = []

        def load(s: PostgresStore) -> None:
            try:
                barrier.wait()
                results.append(actions(s.load("b1", items)))
            except BaseException as error:  # noqa: BLE001 - reported below
                failures.append(error)

        threads = [threading.Thread(target=load, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not failures, failures
        flat = [a for r in results for a in r]
        assert flat.count("created") == 200
        assert flat.count("replayed") == 600
        c = counts(stores[0], "b1")
        assert (c["created"], c["updated"], c["transformed"]) == (200, 0, 200)
        for s in stores:
            s.close()


def test_postgres_replaces_a_pooled_connection_the_server_dropped():
    """After a PostgreSQL restart the pooled connections are dead: the next call
    gets a new one instead of failing (the store cannot tell until it uses one)."""
    with scratch_database("river_test_store_reconnect") as url:
        pg = PostgresStore(url)
        try:
            pg.create_batch("b1", ["res-patient"])
            pg.load("b1", [("res-patient", patient(1))])
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            assert counts(pg, "b1")["created"] == 1
            assert actions(pg.load("b1", [("res-patient", patient(1))])) == ["replayed"]
        finally:
            pg.close()


def test_postgres_serves_tag_searches_and_identifier_lookups_from_indexes():
    """With sequential scans off, a query no index can serve still scans the table:
    the store's own search by tag goes through the tag index (PostgreSQL's index
    statistics say so), and a lookup by identifier can use the identifier index."""
    with scratch_database("river_test_store_indexes") as url:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"ALTER DATABASE {url.rsplit('/', 1)[1]} SET enable_seqscan = off")
        store = PostgresStore(url)
        try:
            store.load("b1", [("r", patient(n)) for n in range(50)])
            assert store.search("Patient", tag=(RESOURCE, "res-patient"))[0] == 50
        finally:
            store.close()  # its sessions end, and report their index statistics
        with psycopg.connect(url) as conn:
            deadline = time.monotonic() + 10
            while True:
                (scans,) = conn.execute(
                    "SELECT idx_scan FROM pg_stat_user_indexes"
                    " WHERE indexrelname = 'patient_meta_tag'"
                ).fetchone()
                if scans > 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
                conn.execute("SELECT pg_stat_clear_snapshot()")
            assert scans > 0, "the search by tag did not use the tag index"
            plan = conn.execute(
                "EXPLAIN SELECT resource FROM patient WHERE resource->'identifier' @> %s::jsonb",
                (orjson.dumps([{"system": "http://mimic/subject_id", "value": "7"}]).decode(),),
            ).fetchall()
            assert "patient_identifier" in "\n".join(row[0] for row in plan), plan


class CommandLog(monitoring.CommandListener):
    """The writes to the Patient collection a MongoDB client sends while `recording`."""

    def __init__(self) -> None:
        self.recording = False
        self.writes: list[tuple[str, int]] = []  # (command, documents in it)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        if self.recording and name in ("insert", "update") and event.command[name] == "Patient":
            items = event.command.get("documents") or event.command.get("updates") or []
            self.writes.append((event.command_name, len(items)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.mark.parametrize("store", ["mongo"], indirect=True)
def test_mongo_writes_in_chunks_of_its_bulk_size_under_the_fhir_id(store: FhirStore):
    assert isinstance(store, MongoStore) and store.bulk_size == 40
    log = CommandLog()
    monitoring.register(log)  # clients made from now on report to it; the store's is
    store.close()  # made again at its next use
    log.recording = True
    store.load("b1", [("res-patient", patient(n)) for n in range(100)])
    assert log.writes == [("insert", 40), ("insert", 40), ("insert", 20)]
    log.writes.clear()
    store.load("b2", [("res-patient", patient(n, family="Roe")) for n in range(100)])
    assert log.writes == [("update", 40), ("update", 40), ("update", 20)]
    log.recording = False
    document = store.db["Patient"].find_one({"_id": "pat-007"})
    assert document is not None and document["id"] == "pat-007"
    assert document["name"][0]["family"] == "Roe"


def test_postgres_refuses_a_nul_character_in_one_sentence_and_writes_nothing():
    with scratch_database("river_test_store_refused") as url:
        store = PostgresStore(url)
        try:
            nul = patient(2, family="Nul\u0000Byte")
            with pytest.raises(ResourceRefused) as refused:
                store.load("b1", [("res-patient", patient(1)), ("res-patient", nul)])
            assert str(refused.value) == (
                "the PostgreSQL FHIR store refused one of 2 resources: unsupported Unicode "
                "escape sequence (\\u0000 cannot be converted to text)"
            )
            assert store.read("Patient", "pat-001") is None  # the bulk write failed whole
            with pytest.raises(ResourceRefused, match="refused Patient/pat-002: unsupported"):
                store.load("b1", [("res-patient", nul)])
        finally:
            store.close()


def test_mongo_refusals_are_one_sentence_without_the_document():
    """pymongo's BulkWriteError quotes the document it refused (the resource's content)."""
    from pymongo.errors import BulkWriteError

    from adapters.store.mongo import _refused

    document = patient(2, family="Zyxwvutska")
    error = BulkWriteError(
        {
            "writeErrors": [
                {
                    "index": 0,
                    "code": 2,
                    "errmsg": "invalid document {name: Zyxwvutska}",
                    "op": document,
                }
            ]
        }
    )
    assert "Zyxwvutska" in str(error)
    assert str(_refused(error, [("res-patient", document)])) == (
        "the MongoDB FHIR store refused Patient/pat-002: invalid document (error code 2)"
    )


def test_the_same_content_again_in_a_live_batch_counts_as_an_update(store: FhirStore):
    """A live batch extracts an instance again at each change that touches it: the
    store (not the loader) counts the same content again as an update, while an
    ordinary batch's replay counts nothing."""
    store.create_batch("live-conn", ["res-patient"], live=True)
    resources = [patient(n) for n in range(2)]
    store.load("live-conn", [("res-patient", r) for r in resources])
    again = store.load("live-conn", [("res-patient", r) for r in resources])
    assert [x.action for x in again] == ["replayed", "replayed"]
    live = counts(store, "live-conn")
    assert (live["created"], live["updated"], live["transformed"]) == (2, 2, 4)
    store.create_batch("b-ordinary", ["res-patient"])
    others = [patient(n) for n in range(10, 12)]
    store.load("b-ordinary", [("res-patient", r) for r in others])
    store.load("b-ordinary", [("res-patient", r) for r in others])
    ordinary = counts(store, "b-ordinary")
    assert (ordinary["created"], ordinary["updated"], ordinary["transformed"]) == (2, 0, 2)


# --- a FHIR server's writes: kept beside the batch state -------------------------------------


def test_the_writes_to_a_fhir_server_are_kept_with_their_counts(store: FhirStore):
    """What FhirServerStore (adapters/store/fhir_server.py) finds after a restart: each
    key's last write there, kept in the call that counts it."""
    store.create_batch("b1", ["res-patient"])
    assert store.written([("Patient", "p1")]) == {}
    store.count_written(
        "b1",
        {"res-patient": {"transformed": 2, "created": 2}},
        [
            (("Patient", "p1"), ("b1", "hash-1", 10.5)),
            (("Patient", "p2"), ("b1", "hash-2", None)),
            (("Patient", "p1"), ("b1", "hash-1b", 11.0)),  # its last write wins
        ],
    )
    assert store.written([("Patient", "p1"), ("Patient", "p2"), ("Patient", "p3")]) == {
        ("Patient", "p1"): ("b1", "hash-1b", 11.0),
        ("Patient", "p2"): ("b1", "hash-2", None),
    }
    assert counts(store, "b1")["created"] == 2
    # A deletion (no batch, no hash, its reading time), with its count.
    store.count_written(
        "b1", {"res-patient": {"deleted": 1}}, [(("Patient", "p2"), (None, None, 12.0))]
    )
    assert store.written([("Patient", "p2")]) == {("Patient", "p2"): (None, None, 12.0)}
    assert counts(store, "b1")["deleted"] == 1
    # Another type's id is another key; nothing to count is fine.
    store.count_written("b1", {}, [(("Encounter", "p1"), ("b1", "h", None))])
    assert store.written([("Encounter", "p1"), ("Patient", "p1")]) == {
        ("Encounter", "p1"): ("b1", "h", None),
        ("Patient", "p1"): ("b1", "hash-1b", 11.0),
    }
    assert counts(store, "b1")["created"] == 2
