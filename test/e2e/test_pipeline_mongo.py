"""End to end on the MongoDB store (the Compose file's), spoken to through FerretDB:
a batch over Patient, Encounter and Condition, then the same batch again."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator

import psycopg
import pymongo
import pytest

from test.conftest import kafka_topics, without_last_updated
from test.e2e.conftest import Pipeline, make_pipeline
from test.integration.test_engine_mimic import (
    DIAGNOSIS,
    EXPECTED_COUNT_SQL,
    FEAT_6,
    MEDICATION_REQUEST,
)

ENCOUNTER = "cktlnp0hz00500mmzpor3i6hn"
RESOURCES = [FEAT_6, ENCOUNTER, DIAGNOSIS]
FERRETDB = f"mongodb://127.0.0.1:{os.environ.get('FERRETDB_PORT', '27017')}"


@pytest.fixture(scope="module")
def mongo_pipeline(tmp_path_factory, topic_prefix, mimic_demo_url) -> Iterator[Pipeline]:
    client = pymongo.MongoClient(FERRETDB, serverSelectionTimeoutMS=3000)
    try:
        client.admin.command("ping")
    except pymongo.errors.PyMongoError as error:
        pytest.fail(
            f"FerretDB is not reachable at {FERRETDB} ({error}); start it with `bash infra/start.sh ferretdb`"
        )
    database = f"river_e2e_{uuid.uuid4().hex[:8]}"
    pipeline = make_pipeline(
        tmp_path_factory.mktemp("mongo"),
        topic_prefix + "mongo-",
        f"{FERRETDB}/{database}",
        mimic_demo_url,
    )
    try:
        with kafka_topics(pipeline.env["KAFKA_TOPIC_PREFIX"]), pipeline:
            yield pipeline
    finally:
        client.drop_database(database)
        client.close()


@pytest.fixture(scope="module")
def expected(mimic_demo_url) -> dict[str, int]:
    with psycopg.connect(mimic_demo_url) as connection:
        return {
            r: connection.execute(EXPECTED_COUNT_SQL[r]).fetchone()[0]
            for r in [*RESOURCES, MEDICATION_REQUEST]
        }


TYPES = {FEAT_6: "Patient", ENCOUNTER: "Encounter", DIAGNOSIS: "Condition"}


def test_batch_then_again_on_the_mongodb_store(mongo_pipeline, expected, engine):
    first = mongo_pipeline.wait(mongo_pipeline.batch(RESOURCES), timeout=600)
    assert first["status"] == "completed", first
    for c in first["resources"]:
        n = expected[c["resource_id"]]
        assert (c["expected"], c["extracted"], c["transformed"]) == (n, n, n), c
        assert (c["created"], c["updated"], c["failed"]) == (n, 0, 0), c
    before = {}
    for resource_id, resource_type in TYPES.items():
        # What the store holds is what the engine gives for the same rows, read over HTTP.
        in_store = {r["id"]: r for r in mongo_pipeline.stored(resource_type, resource_id)}
        assert {id: without_last_updated(r) for id, r in in_store.items()} == {
            o.resource["id"]: without_last_updated(o.resource) for o in engine.run(resource_id)
        }
        one = next(iter(in_store.values()))
        assert mongo_pipeline.request("GET", f"/fhir/{resource_type}/{one['id']}").json() == one
        before[resource_id] = one

    second = mongo_pipeline.wait(mongo_pipeline.batch(RESOURCES), timeout=600)
    assert second["status"] == "completed"
    for c in second["resources"]:
        n = expected[c["resource_id"]]
        assert (c["created"], c["updated"], c["failed"]) == (0, n, 0), c
    for resource_id, resource_type in TYPES.items():
        assert mongo_pipeline.total(resource_type, resource_id) == expected[resource_id]
        one = before[resource_id]
        again = mongo_pipeline.request("GET", f"/fhir/{resource_type}/{one['id']}").json()
        assert without_last_updated(again) == without_last_updated(one)
        assert again["meta"]["lastUpdated"] > one["meta"]["lastUpdated"]  # written again


def test_a_loader_killed_mid_batch_on_the_mongodb_store_counts_exactly(mongo_pipeline, expected):
    """SIGKILL: what the loader had written but not committed comes back to the next
    loader, which writes it again; the store counts each instance once all the same."""
    resources = [MEDICATION_REQUEST, DIAGNOSIS]
    batch_id = mongo_pipeline.batch(resources)
    mongo_pipeline.wait_for_extraction(batch_id, at_least=2000)
    before = mongo_pipeline.request("GET", f"/batches/{batch_id}").json()
    loaded = sum(c["created"] + c["updated"] for c in before["resources"])
    assert loaded < sum(expected[r] for r in resources), "nothing was in flight"
    mongo_pipeline.stop("loader", sig=signal.SIGKILL)
    time.sleep(1)
    mongo_pipeline.start("loader")
    state = mongo_pipeline.wait(batch_id, timeout=600)
    assert state["status"] == "completed", state
    for c in state["resources"]:
        n = expected[c["resource_id"]]
        assert (c["expected"], c["extracted"], c["transformed"]) == (n, n, n), c
        assert (c["created"] + c["updated"], c["failed"]) == (n, 0), c
    assert (
        mongo_pipeline.total("MedicationRequest", MEDICATION_REQUEST)
        == (expected[MEDICATION_REQUEST])
    )
