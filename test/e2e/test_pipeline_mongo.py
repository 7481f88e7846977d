"""End to end on the MongoDB store (the Compose file's), spoken to through FerretDB:
a batch over Patient, Encounter and Condition, then the same batch again."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pymongo
import pytest

from test.conftest import kafka_topics
from test.e2e.conftest import Pipeline, make_pipeline
from test.integration.test_engine_mimic import DIAGNOSIS, EXPECTED_COUNT_SQL, FEAT_6

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
        return {r: connection.execute(EXPECTED_COUNT_SQL[r]).fetchone()[0] for r in RESOURCES}


def test_batch_then_again_on_the_mongodb_store(mongo_pipeline, expected):
    first = mongo_pipeline.wait(mongo_pipeline.batch(RESOURCES), timeout=600)
    assert first["status"] == "completed", first
    for c in first["resources"]:
        n = expected[c["resource_id"]]
        assert (c["expected"], c["created"], c["updated"], c["failed"]) == (n, n, 0, 0), c
    totals = {}
    for resource_id, resource_type in (
        (FEAT_6, "Patient"),
        (ENCOUNTER, "Encounter"),
        (DIAGNOSIS, "Condition"),
    ):
        page = mongo_pipeline.request(
            "GET",
            f"/fhir/{resource_type}",
            params={
                "_tag": f"http://terminology.arkhn.org/CodeSystem/resource|{resource_id}",
                "_summary": "count",
            },
        ).json()
        totals[resource_id] = page["total"]
    assert totals == expected
    second = mongo_pipeline.wait(mongo_pipeline.batch(RESOURCES), timeout=600)
    assert second["status"] == "completed"
    for c in second["resources"]:
        n = expected[c["resource_id"]]
        assert (c["created"], c["updated"], c["failed"]) == (0, n, 0), c
