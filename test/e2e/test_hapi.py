"""End to end into a real FHIR server: the four services load into the local HAPI FHIR
JPA server (infra/hapi.sh; `make test` starts it), batch state in PostgreSQL.

Every resource is read back from HAPI itself and compared with what `river preview`
makes (but `meta`, which the server writes: versionId, lastUpdated, source). HAPI is
emptied ($expunge) at the start of each module: each pipeline here writes ids of its own
mapping, and the first run of a batch must create every one of them."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from confluent_kafka import Producer

from adapters.store import open_store
from adapters.store.common import CREATED, REPLAYED, UPDATED
from river import events
from river.engine import Engine
from river.settings import FhirServerSettings, Settings
from test.conftest import ROOT, kafka_client, scratch_database
from test.e2e.conftest import RESOURCE_TAG, Pipeline, example_pipeline, make_pipeline
from test.utils.create_records_db import create_in_database

HAPI = os.environ.get("HAPI_URL", "http://127.0.0.1:8090/fhir").rstrip("/")
RESOURCES = ["example-patient", "example-encounter", "example-condition"]
TYPES = {"example-patient": "Patient", "example-encounter": "Encounter",
         "example-condition": "Condition"}  # fmt: skip
PATIENTS = 100


def hapi_up() -> str | None:
    """None when HAPI answers, else why not."""
    try:
        answer = requests.get(f"{HAPI}/metadata", params={"_summary": "true"}, timeout=10)
    except requests.RequestException as error:
        return f"{type(error).__name__}"
    return None if answer.status_code == 200 else f"status {answer.status_code}"


def skip_without_hapi() -> None:
    why = hapi_up()
    if why is not None:
        pytest.skip(
            f"HAPI FHIR does not answer at {HAPI} ({why}): bash infra/install.sh hapi and "
            "bash infra/start.sh hapi start it (make test does)"
        )


@pytest.fixture(scope="module", autouse=True)
def hapi() -> str:
    skip_without_hapi()
    expunge()
    return HAPI


def expunge() -> None:
    answer = requests.post(
        f"{HAPI}/$expunge",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "expungeEverything", "valueBoolean": True}],
        },
        headers={"Content-Type": "application/fhir+json"},
        timeout=300,
    )
    assert answer.status_code == 200, answer.text


def from_hapi(resource_type: str, resource_id: str) -> list[dict]:
    """Every resource HAPI holds with the mapping resource's tag, read from HAPI."""
    found: list[dict] = []
    while True:
        page = requests.get(
            f"{HAPI}/{resource_type}",
            params={
                "_tag": f"{RESOURCE_TAG}|{resource_id}",
                "_count": 1000,
                "_offset": len(found),
                # Pages by offset need an order: without one, HAPI's pages overlap.
                "_sort": "_id",
                "_total": "accurate",
            },
            headers={"Cache-Control": "no-cache"},
            timeout=120,
        ).json()
        entries = page.get("entry") or []
        found += [entry["resource"] for entry in entries]
        if not entries or len(found) >= page.get("total", 0):
            return found


def hapi_total(resource_type: str, resource_id: str) -> int:
    page = requests.get(
        f"{HAPI}/{resource_type}",
        params={"_tag": f"{RESOURCE_TAG}|{resource_id}", "_summary": "count"},
        headers={"Cache-Control": "no-cache"},
        timeout=60,
    ).json()
    return page["total"]


def but_meta(resource: dict) -> dict:
    """A resource as compared with its preview: meta is the server's (but its tags), and
    HAPI trims the spaces around strings (FHIR forbids them; MIMIC's ICD-9 titles have
    trailing ones)."""
    tags = sorted((t["system"], t["code"]) for t in resource.get("meta", {}).get("tag", []))
    return {**trimmed({k: v for k, v in resource.items() if k != "meta"}), "tags": tags}


def trimmed(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        return [trimmed(v) for v in value]
    if isinstance(value, dict):
        return {k: trimmed(v) for k, v in value.items()}
    return value


def counts(state: dict) -> dict[str, dict]:
    return {r["resource_id"]: r for r in state["resources"]}


def hapi_env(pipeline: Pipeline) -> None:
    pipeline.env.update(
        {
            "FHIR_SERVER_URL": HAPI,
            # Small Bundles, several at once: a poll spans several Bundles here.
            "FHIR_SERVER_BUNDLE_SIZE": "100",
            "FHIR_SERVER_CONCURRENCY": "2",
            "FHIR_SERVER_RETRIES": "2",
        }
    )


def stack_script(script: str, *args: str) -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "infra" / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- the example mapping ----------------------------------------------------------------
@contextmanager
def example_into_hapi(
    tmp: Path, prefix: str, name: str, patients: int, seed: int
) -> Iterator[tuple[Pipeline, Engine]]:
    """The example pipeline loading into HAPI (not started), over a scratch source
    (`river_<name>_source`) of `patients` synthetic patients, and the mapping engine
    over that source (what `river preview` makes)."""
    with (
        scratch_database(f"river_{name}_source") as source_url,
        scratch_database(f"river_{name}_state") as store_url,
    ):
        create_in_database(source_url, patients, seed=seed, replace=True)
        pipeline = example_pipeline(tmp, prefix, store_url, source_url)
        hapi_env(pipeline)
        engine = Engine.from_settings(
            Settings(
                mappings=pipeline.env["MAPPINGS"],
                concept_maps=pipeline.env["CONCEPT_MAPS"],
                source_db_url=source_url,
            )
        )
        try:
            yield pipeline, engine
        finally:
            engine.close()


@pytest.fixture(scope="module")
def example(tmp_path_factory, topic_prefix) -> Iterator[tuple[Pipeline, Engine]]:
    tmp = tmp_path_factory.mktemp("hapi")
    with example_into_hapi(tmp, topic_prefix, "hapi", PATIENTS, seed=20) as (pipeline, engine):
        pipeline.start()
        try:
            yield pipeline, engine
        finally:
            pipeline.close()


def test_a_batch_of_the_example_mapping_lands_in_hapi_as_preview_makes_it(example):
    pipeline, engine = example
    state = pipeline.wait(pipeline.batch(RESOURCES), timeout=240)
    assert state["status"] == "completed", state
    for resource_id, c in counts(state).items():
        n = c["expected"]
        assert n > 0
        assert (c["created"], c["updated"], c["failed"], c["transformed"]) == (n, 0, 0, n), c
        in_hapi = {r["id"]: but_meta(r) for r in from_hapi(TYPES[resource_id], resource_id)}
        previews = {o.resource["id"]: but_meta(o.resource) for o in engine.run(resource_id)}
        assert len(previews) == n
        assert in_hapi == previews
    # FHIR River's own API reads from HAPI too (the README's curl commands).
    one = from_hapi("Condition", "example-condition")[0]
    read = pipeline.request("GET", f"/fhir/Condition/{one['id']}")
    assert read.status_code == 200 and read.json() == one
    search = pipeline.request(
        "GET",
        "/fhir/Patient",
        params={"_tag": f"{RESOURCE_TAG}|example-patient", "_count": 5},
    ).json()
    assert search["total"] == counts(state)["example-patient"]["expected"]
    assert len(search["entry"]) == 5
    assert (
        pipeline.total("Encounter", "example-encounter")
        == (counts(state)["example-encounter"]["expected"])
    )
    missing = pipeline.request("GET", "/fhir/Patient/not-there")
    assert missing.status_code == 404


def test_the_same_batch_again_is_all_updated_and_duplicates_nothing(example):
    pipeline, _ = example
    state = pipeline.wait(pipeline.batch(RESOURCES), timeout=240)
    assert state["status"] == "completed", state
    for resource_id, c in counts(state).items():
        n = c["expected"]
        assert (c["created"], c["updated"], c["failed"]) == (0, n, 0), c
        assert hapi_total(TYPES[resource_id], resource_id) == n


def assert_each_counted_once(state: dict) -> None:
    """The batch completed, each instance counted once (created or updated) and once in HAPI."""
    assert state["status"] == "completed", state
    for resource_id, c in counts(state).items():
        n = c["expected"]
        assert (c["created"] + c["updated"], c["failed"], c["transformed"]) == (n, 0, n), c
        assert hapi_total(TYPES[resource_id], resource_id) == n


def send_transform_events(pipeline: Pipeline, batch_id: str, resource_id: str, evts) -> None:
    producer = Producer(kafka_client())
    for key, event in evts:
        producer.produce(
            pipeline.env["KAFKA_TOPIC_PREFIX"] + events.TRANSFORM,
            events.encode(event),
            events.instance_key(resource_id, key),
        )
    assert producer.flush(10) == 0


def new_batch(pipeline: Pipeline, resource_id: str, n: int) -> str:
    batch_id = f"e2e-hapi-{uuid.uuid4().hex[:8]}"
    pipeline.store.create_batch(batch_id, [resource_id])
    pipeline.store.set_expected(batch_id, resource_id, n)
    pipeline.store.set_extracted(batch_id, resource_id, n)
    return batch_id


def test_an_entry_hapi_refuses_is_a_failed_instance_with_its_message(example):
    """HAPI refuses a Condition whose subject is a Practitioner (HAPI-0931), which FHIR
    River's validation lets through: that instance fails with HAPI's words, the rest of
    its poll (in the same Bundle) loads, and the batch completes."""
    pipeline, engine = example
    keys = [o.primary_key_value for o in engine.run("example-condition")][:5]
    resources = engine.preview("example-condition", keys)["instances"]
    resources[2]["subject"] = {"reference": "Practitioner/someone"}
    batch_id = new_batch(pipeline, "example-condition", len(keys))
    send_transform_events(
        pipeline,
        batch_id,
        "example-condition",
        [
            (key, events.TransformEvent(batch_id, "example-condition", r, primary_key_value=key))
            for key, r in zip(keys, resources, strict=True)
        ],
    )
    state = pipeline.wait(batch_id)
    assert state["status"] == "completed"
    (c,) = state["resources"]
    assert (c["loaded"], c["failed"]) == (4, 1), c
    answer = pipeline.request("GET", f"/batches/{batch_id}/errors")
    assert answer.status_code == 200, answer.text
    (error,) = answer.json()["items"]
    assert (error["primary_key_value"], error["stage"]) == (keys[2], "load")
    assert error["message"].startswith(
        f"loader failed: the FHIR server refused Condition/{resources[2]['id']} (422: HAPI-0931"
    ), error
    assert "Practitioner" in error["message"]
    stored = requests.get(f"{HAPI}/Condition/{resources[2]['id']}", timeout=30).json()
    assert stored["subject"]["reference"].startswith("Patient/")  # the refused one: unchanged


def test_deletions_delete_in_hapi(example):
    pipeline, engine = example
    outcomes = list(engine.run("example-condition"))[:3]
    batch_id = new_batch(pipeline, "example-condition", 0)
    send_transform_events(
        pipeline,
        batch_id,
        "example-condition",
        [
            (
                o.primary_key_value,
                events.TransformEvent(
                    batch_id,
                    "example-condition",
                    {"resourceType": "Condition", "id": o.resource["id"]},
                    deleted=True,
                    primary_key_value=o.primary_key_value,
                ),
            )
            for o in outcomes
        ],
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        deleted = counts(pipeline.request("GET", f"/batches/{batch_id}").json())
        if deleted["example-condition"].get("deleted", 0) >= 3:
            break
        time.sleep(0.5)
    assert deleted["example-condition"]["deleted"] == 3, deleted
    for o in outcomes:
        gone = requests.get(f"{HAPI}/Condition/{o.resource['id']}", timeout=30)
        assert gone.status_code == 410, gone.text  # HAPI: deleted
        assert pipeline.request("GET", f"/fhir/Condition/{o.resource['id']}").status_code == 404
    # A batch brings them back: created again.
    state = pipeline.wait(pipeline.batch(["example-condition"]), timeout=240)
    c = counts(state)["example-condition"]
    assert (c["created"], c["updated"], c["failed"]) == (3, c["expected"] - 3, 0), c


def test_hapi_stopped_for_20_seconds_mid_batch_loses_and_doubles_nothing(example):
    pipeline, _ = example
    seen = len(pipeline.log("loader"))
    batch_id = pipeline.batch(RESOURCES)
    pipeline.wait_for_extraction(batch_id, at_least=200)
    stack_script("stop.sh", "hapi")
    try:
        time.sleep(20)
    finally:
        stack_script("start.sh", "hapi")
    assert_each_counted_once(pipeline.wait(batch_id, timeout=300))
    assert "retrying in" in pipeline.log("loader")[seen:], "the loader never waited"


def test_a_poll_loaded_again_by_a_restarted_loader_counts_nothing_twice(example):
    """A loader killed after a poll's writes and counts but before its Kafka commit gets
    that poll again, in a new process: the store's record of the writes (kept with the
    counts) finds them replayed. Two stores opened one after the other are those two
    processes."""
    pipeline, engine = example
    outcomes = list(engine.run("example-condition"))[:30]
    items = [("example-condition", o.resource) for o in outcomes]
    batch_id = new_batch(pipeline, "example-condition", len(items))
    target = FhirServerSettings(url=HAPI, bundle_size=10)
    first = open_store(pipeline.env["FHIR_STORE_URL"], fhir_server=target)
    try:
        assert {o.action for o in first.load(batch_id, items)} <= {CREATED, UPDATED}
    finally:
        first.close()
    again = open_store(pipeline.env["FHIR_STORE_URL"], fhir_server=target)
    try:
        assert {o.action for o in again.load(batch_id, items)} == {REPLAYED}
    finally:
        again.close()
    (c,) = pipeline.request("GET", f"/batches/{batch_id}").json()["resources"]
    assert (c["created"] + c["updated"], c["loaded"]) == (30, 30), c


def test_a_loader_killed_mid_batch_counts_each_instance_once(example):
    """Killed (SIGKILL) wherever it is in a poll, the loader gets that poll again:
    nothing is lost, nothing counted twice."""
    pipeline, _ = example
    batch_id = pipeline.batch(RESOURCES)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = pipeline.request("GET", f"/batches/{batch_id}").json()
        if sum(r["loaded"] for r in state["resources"]) >= 300:
            break
        time.sleep(0.05)
    assert state["status"] == "running", "the batch ended before the loader was killed"
    pipeline.restart("loader", sig=signal.SIGKILL)
    assert_each_counted_once(pipeline.wait(batch_id, timeout=300))


# --- live: a change in the source reaches HAPI ---------------------------------------------
def test_a_live_change_reaches_hapi(tmp_path, topic_prefix, monkeypatch):
    from test.e2e.live import StackMissing, live_pipeline

    # make_pipeline takes the environment of this process: the live pipeline loads into HAPI.
    monkeypatch.setenv("FHIR_SERVER_URL", HAPI)
    try:
        context = live_pipeline(tmp_path, f"{topic_prefix}live-", patients=3)
        live = context.__enter__()
    except StackMissing as error:
        pytest.skip(str(error))
    try:
        subject_id = 990_000 + int(uuid.uuid4().hex[:4], 16)
        live.sql(
            "INSERT INTO patients (row_id, subject_id, gender, dob, expire_flag) "
            "VALUES (%s, %s, 'F', '2080-01-01', 0)",
            subject_id,
            subject_id,
        )
        fhir_id = live.ids["example-patient"](subject_id)
        deadline = time.monotonic() + 60
        answer = None
        while time.monotonic() < deadline:
            answer = requests.get(f"{HAPI}/Patient/{fhir_id}", timeout=10)
            if answer.status_code == 200:
                break
            time.sleep(0.3)
        assert answer is not None and answer.status_code == 200, "the change never reached HAPI"
        assert answer.json()["gender"] == "female"
    finally:
        context.__exit__(None, None, None)


# --- the shared MIMIC mapping ---------------------------------------------------------------
@pytest.fixture(scope="module")
def mimic(tmp_path_factory, topic_prefix, mimic_demo_url) -> Iterator[Pipeline]:
    with scratch_database("river_hapi_mimic_state") as store_url:
        # Topics of its own: the example pipeline of this module still runs.
        pipeline = make_pipeline(
            tmp_path_factory.mktemp("hapi-mimic"),
            f"{topic_prefix}mimic-",
            store_url,
            mimic_demo_url,
        )
        hapi_env(pipeline)
        pipeline.env["FHIR_SERVER_BUNDLE_SIZE"] = "250"
        with pipeline:
            yield pipeline


def test_a_batch_of_the_mimic_mapping_lands_in_hapi_as_preview_makes_it(mimic, engine):
    from test.integration.test_engine_mimic import BAD_GENDER, EXPECTED_COUNT_SQL

    resource_ids = sorted(EXPECTED_COUNT_SQL)
    state = mimic.wait(mimic.batch(resource_ids), timeout=600)
    assert state["status"] == "completed", state
    for resource_id, c in counts(state).items():
        n = c["expected"]
        if resource_id == BAD_GENDER:
            assert (c["failed"], c["loaded"]) == (n, 0), c
            continue
        assert (c["created"], c["updated"], c["failed"], c["transformed"]) == (n, 0, 0, n), c
        resource_type = engine.plan(resource_id).resource_type
        in_hapi = {r["id"]: but_meta(r) for r in from_hapi(resource_type, resource_id)}
        previews = {o.resource["id"]: but_meta(o.resource) for o in engine.run(resource_id)}
        assert len(previews) == n and in_hapi == previews, resource_id
