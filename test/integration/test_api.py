"""The API against real parts: Kafka (topics of a prefix of its own, read back
with a consumer), the PostgreSQL FHIR store (a scratch database), and the
mapping engine over the MIMIC-III demo with mimic-demo.json.

No pipeline consumes this module's topics, so a batch stays as the API left
it; tests that need a batch to have ended (retry, cancel, errors) write its
counters through the store, as the services would.

Every database URL here carries a password of its own (a role made for the
module), and the last test checks that no answer and no log line shows it.
"""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import orjson
import psycopg
import pytest
import requests
from confluent_kafka import Consumer
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from adapters.kafka import EventProducer
from adapters.store import FhirStore, InstanceError, open_store
from api.app import create_app
from api.health import PIPELINE
from api.openapi import document
from cli import client
from cli import main as cli
from river import events
from river.engine import Engine
from river.errors import InvalidMapping, MappingFault
from river.settings import Settings
from test.conftest import (
    CONCEPT_MAPS,
    KAFKA,
    MIMIC_DEMO_MAPPING,
    ROOT,
    high_watermarks,
    kafka_client,
    kafka_settings,
    kafka_topics,
    postgres_url,
    scratch_database,
    wait_for,
    without_last_updated,
)

FEAT_6 = "cktlnp0ji006e0mmzat7dwb98"  # Patient, one per row of patients
DIAGNOSIS = "cktlnp0oa00at0mmzp0b1u7zx"  # Condition
BAD_GENDER = "ckur2ervw000107l437vy9vuq"  # every instance invalid (Patient.gender)
BP = "cktlnp0lh00880mmzfhsoshbm"  # its table (labevents) is missing from the demo
RESOURCE_TAG = "http://terminology.arkhn.org/CodeSystem/resource"
PATIENTS = ["10006", "10011", "10013", "10017", "10019"]

RUN = uuid.uuid4().hex[:8]
ROLE = f"river_api_test_{RUN}"
# Unlike the stack's postgres/postgres, a password no answer could contain by chance.
SECRET = f"Sekr3t-{uuid.uuid4().hex[:16]}"

ANSWERS: list[bytes] = []  # every body any test client received
LOGS: list[str] = []  # every log line of the module


class RecordingClient(FlaskClient):
    def open(self, *args: Any, **kwargs: Any) -> Any:
        response = super().open(*args, **kwargs)
        ANSWERS.append(response.get_data())
        return response


class ListHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        LOGS.append(self.format(record))


def with_role(url: str) -> str:
    """`url` with this module's role and password instead of postgres:postgres."""
    parts = urlsplit(url)
    return parts._replace(netloc=f"{ROLE}:{SECRET}@{parts.hostname}:{parts.port}").geturl()


def make_client(app: Flask) -> RecordingClient:
    app.test_client_class = RecordingClient
    return app.test_client()  # type: ignore[return-value]


def assert_outcome(response: Any, status: int, code: str | None = None, text: str = "") -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/fhir+json"
    outcome = response.json
    assert outcome["resourceType"] == "OperationOutcome"
    issue = outcome["issue"][0]
    assert issue["severity"] == "error"
    assert issue["diagnostics"]
    if code is not None:
        assert issue["code"] == code, issue
    assert text in issue["diagnostics"], issue
    return outcome


def as_json(data: Any) -> Any:
    return orjson.loads(orjson.dumps(data, default=str))


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def captured_logs() -> Iterator[None]:
    handler = ListHandler()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    yield
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="module")
def role(mimic_demo_url: str) -> Iterator[str]:
    """A login role with SECRET as password, allowed to read the demo."""
    demo = urlsplit(mimic_demo_url).path.lstrip("/")
    with psycopg.connect(postgres_url(), autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{SECRET}'")
    with psycopg.connect(mimic_demo_url, autocommit=True) as conn:
        conn.execute(f'GRANT CONNECT ON DATABASE "{demo}" TO {ROLE}')
        conn.execute(f"GRANT USAGE ON SCHEMA public TO {ROLE}")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {ROLE}")
    yield ROLE
    with psycopg.connect(mimic_demo_url, autocommit=True) as conn:
        conn.execute(f"DROP OWNED BY {ROLE}")
    with psycopg.connect(postgres_url(), autocommit=True) as admin:
        admin.execute(f"DROP ROLE IF EXISTS {ROLE}")


@pytest.fixture(scope="module")
def store_url(role: str) -> Iterator[str]:
    with scratch_database("river_test_api_store") as url:
        name = urlsplit(url).path.lstrip("/")
        with psycopg.connect(postgres_url(), autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" OWNER TO {role}')
        yield with_role(url)


@pytest.fixture(scope="module")
def topic_prefix() -> Iterator[str]:
    prefix = f"test-api-{RUN}-"
    with kafka_topics(prefix):
        yield prefix


@pytest.fixture(scope="module")
def settings(topic_prefix: str, store_url: str, mimic_demo_url: str, role: str) -> Settings:
    return kafka_settings(
        kafka_topic_prefix=topic_prefix,
        fhir_store_url=store_url,
        mappings=str(MIMIC_DEMO_MAPPING),
        concept_maps=str(CONCEPT_MAPS),
        source_db_url=with_role(mimic_demo_url),
        fhir_api_url="",
        pyrog_api_url="",
        api_auth="none",  # this module tests what the API does; test_auth.py who may
    )


@pytest.fixture(scope="module")
def engine(settings: Settings) -> Iterator[Engine]:
    engine = Engine.from_settings(settings)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def store(settings: Settings) -> Iterator[FhirStore]:
    store = open_store(settings.fhir_store_url)
    yield store
    store.close()


@pytest.fixture(scope="module")
def app(settings: Settings, engine: Engine, store: FhirStore) -> Flask:
    return create_app(settings, engine=engine, store=store, producer=EventProducer(settings))


@pytest.fixture(scope="module")
def api(app: Flask) -> RecordingClient:
    return make_client(app)


class BatchTopic:
    """The `batch` events the API produced, read back and kept by batch id."""

    def __init__(self, prefix: str) -> None:
        self.topic = prefix + events.BATCH
        self.consumer = Consumer(
            {
                **kafka_client(),
                "group.id": f"test-api-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self.consumer.subscribe([self.topic])
        # Watermarks asked of the subscribed consumer wait on its group's heartbeat
        # (3 s each); a consumer outside any group answers at once.
        self.watcher = Consumer(kafka_client(**{"group.id": "unused"}))
        self.seen: dict[str, list[tuple[bytes, events.BatchEvent]]] = defaultdict(list)

    def _poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            message = self.consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            event = events.decode(events.BATCH, message.value())
            assert isinstance(event, events.BatchEvent)
            self.seen[event.batch_id].append((message.key(), event))

    def of(self, batch_id: str, expected: int, timeout: float = 30) -> list:
        """The events of a batch, once `expected` came and a second passed without more."""
        deadline = time.monotonic() + timeout
        while len(self.seen[batch_id]) < expected and time.monotonic() < deadline:
            self._poll(0.5)
        self._poll(1.0)  # anything extra would show up now
        return self.seen[batch_id]

    def messages(self) -> int:
        """How many messages the topic holds in all (high watermarks)."""
        return sum(high_watermarks(self.watcher, self.topic).values())

    def close(self) -> None:
        self.consumer.close()
        self.watcher.close()


@pytest.fixture(scope="module")
def batch_topic(topic_prefix: str) -> Iterator[BatchTopic]:
    topic = BatchTopic(topic_prefix)
    yield topic
    topic.close()


def start(api: FlaskClient, resource_ids: list[str], **body: Any) -> str:
    answer = api.post("/batch", json={"resource_ids": resource_ids, **body})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.json["batch_id"]


# --- POST /batch ---------------------------------------------------------------------------


def test_a_batch_is_recorded_then_one_event_per_resource_is_produced(api, store, batch_topic):
    answer = api.post("/batch", json={"resource_ids": [FEAT_6, DIAGNOSIS]})
    assert answer.status_code == 200
    assert answer.mimetype == "application/json"
    batch_id = answer.json["batch_id"]
    assert answer.json == {"batch_id": batch_id, "resource_ids": [FEAT_6, DIAGNOSIS]}
    assert re.fullmatch(r"[0-9a-f]{32}", batch_id)
    state = store.batch(batch_id)
    assert state is not None and state.resource_ids == [FEAT_6, DIAGNOSIS]
    received = batch_topic.of(batch_id, 2)
    assert sorted(received, key=lambda r: r[0]) == sorted(
        [
            (f"{FEAT_6}:".encode(), events.BatchEvent(batch_id, FEAT_6, None)),
            (f"{DIAGNOSIS}:".encode(), events.BatchEvent(batch_id, DIAGNOSIS, None)),
        ],
        key=lambda r: r[0],
    )


def test_primary_key_values_as_one_list_or_per_resource(api, batch_topic):
    for_all = start(api, [FEAT_6, DIAGNOSIS], primary_key_values=[10006, "41976"])
    by_id = {e.resource_id: e for _, e in batch_topic.of(for_all, 2)}
    assert by_id[FEAT_6].primary_key_values == [10006, "41976"]
    assert by_id[DIAGNOSIS].primary_key_values == [10006, "41976"]

    per_resource = start(api, [FEAT_6, DIAGNOSIS], primary_key_values={FEAT_6: [10006]})
    by_id = {e.resource_id: e for _, e in batch_topic.of(per_resource, 2)}
    assert by_id[FEAT_6].primary_key_values == [10006]
    assert by_id[DIAGNOSIS].primary_key_values is None  # every row


def test_a_resource_named_twice_runs_once(api, batch_topic):
    answer = api.post("/batch", json={"resource_ids": [FEAT_6, FEAT_6]})
    assert answer.json["resource_ids"] == [FEAT_6]
    assert len(batch_topic.of(answer.json["batch_id"], 1)) == 1


# --- POST /preview ---------------------------------------------------------------------


def test_preview_answers_what_the_engine_gives(api, engine, store, batch_topic):
    keys = ["10006", "41976", "1"]
    batches, events_before = len(store.batches(limit=1000)), batch_topic.messages()
    answer = api.post("/preview", json={"resource_id": FEAT_6, "primary_key_values": keys})
    assert answer.status_code == 200
    # Nothing written: no batch, no event, no resource.
    assert len(store.batches(limit=1000)) == batches
    assert batch_topic.messages() == events_before
    assert all(store.read("Patient", r["id"]) is None for r in answer.json["instances"])
    expected = as_json(engine.preview(FEAT_6, keys))
    got = answer.json
    assert [without_last_updated(r) for r in got["instances"]] == [
        without_last_updated(r) for r in expected["instances"]
    ]
    assert len(got["instances"]) == 2
    assert got["errors"] == expected["errors"] and got["warnings"] == expected["warnings"]
    assert got["errors"][0]["primary_key_value"] == "1"


def test_preview_of_invalid_instances_lists_their_errors(api):
    answer = api.post("/preview", json={"resource_id": BAD_GENDER, "primary_key_values": [10006]})
    assert answer.status_code == 200
    assert answer.json["instances"] == []
    assert "Patient.gender" in answer.json["errors"][0]["message"]


def test_preview_is_fast(api):
    keys = [
        "10006",
        "10011",
        "10013",
        "10017",
        "10019",
        "10026",
        "10027",
        "10029",
        "10032",
        "10033",
    ]
    body = {"resource_id": FEAT_6, "primary_key_values": keys}
    api.post("/preview", json=body)
    durations = []
    for _ in range(20):
        started = time.perf_counter()
        assert api.post("/preview", json=body).status_code == 200
        durations.append(time.perf_counter() - started)
    durations.sort()
    assert durations[len(durations) // 2] < 0.3, durations  # target: p95 under 300 ms


def test_preview_of_a_missing_table_is_a_502_naming_it(api):
    answer = api.post("/preview", json={"resource_id": BP, "primary_key_values": ["1"]})
    assert_outcome(answer, 502, "exception", "labevents")


def test_preview_of_an_invalid_mapping_lists_each_fault(api, engine, monkeypatch):
    def invalid(resource_id: str, keys: list) -> dict:
        raise InvalidMapping(
            "mimic-demo.json",
            [MappingFault("resource x, attribute gender", "unknown script"), MappingFault("", "b")],
        )

    monkeypatch.setattr(engine, "preview", invalid)
    answer = api.post("/preview", json={"resource_id": FEAT_6, "primary_key_values": ["1"]})
    outcome = assert_outcome(answer, 400, "invalid", "is invalid (2 problem(s))")
    assert [i["diagnostics"] for i in outcome["issue"][1:]] == [
        "resource x, attribute gender: unknown script",
        "b",
    ]


def test_preview_with_the_source_database_down_is_a_503(settings, store):
    down = replace(settings, source_db_url=f"postgresql://{ROLE}:{SECRET}@127.0.0.1:1/none")
    engine = Engine.from_settings(down)
    try:
        api = make_client(create_app(down, engine=engine, store=store, producer=None))
        answer = api.post("/preview", json={"resource_id": FEAT_6, "primary_key_values": ["1"]})
        assert_outcome(answer, 503, "transient", "cannot query the source database")
        assert SECRET not in answer.get_data(as_text=True)
    finally:
        engine.close()


# --- every bad request ----------------------------------------------------------------------

JSON = "application/json"
BAD_REQUESTS = [
    # (method, path, body (bytes, or an object sent as JSON), content type, status, code, text)
    ("POST", "/batch", b"not json", JSON, 400, "structure", "not JSON"),
    ("POST", "/batch", b"", JSON, 400, "required", "empty"),
    ("POST", "/batch", b'{"resource_ids": ["x"]', JSON, 400, "structure", "not JSON"),
    ("POST", "/batch", {"resource_ids": [FEAT_6]}, "text/plain", 400, "invalid", "Content-Type"),
    ("POST", "/batch", {"resource_ids": [FEAT_6]}, None, 400, "invalid", "Content-Type"),
    ("POST", "/batch", [FEAT_6], JSON, 400, "structure", "JSON object"),
    ("POST", "/batch", {}, JSON, 400, "required", "resource_ids is missing"),
    ("POST", "/batch", {"resource_ids": None}, JSON, 400, "required", "resource_ids is missing"),
    ("POST", "/batch", {"resource_ids": "x"}, JSON, 400, "value", "resource_ids must be a list"),
    ("POST", "/batch", {"resource_ids": []}, JSON, 400, "value", "resource_ids must not be empty"),
    ("POST", "/batch", {"resource_ids": [FEAT_6, 1]}, JSON, 400, "value", "resource_ids[1]"),
    ("POST", "/batch", {"resource_ids": [""]}, JSON, 400, "value", "resource_ids[0]"),
    (
        "POST",
        "/batch",
        {"resource_ids": ["nope"]},
        JSON,
        400,
        "not-found",
        "unknown resource id(s) at resource_ids[0] (1 of 1)",
    ),
    (
        "POST",
        "/batch",
        {"resource_ids": [FEAT_6, "a", "b"]},
        JSON,
        400,
        "not-found",
        "at resource_ids[1], resource_ids[2] (2 of 3)",
    ),
    (
        "POST",
        "/batch",
        {"resource_ids": [FEAT_6], "primary_keys": [1]},
        JSON,
        400,
        "invalid",
        "unknown field(s) primary_keys",
    ),
    (
        "POST",
        "/batch",
        {"resource_ids": [FEAT_6], "primary_key_values": "1"},
        JSON,
        400,
        "value",
        "primary_key_values must be",
    ),
    (
        "POST",
        "/batch",
        {"resource_ids": [FEAT_6], "primary_key_values": []},
        JSON,
        400,
        "value",
        "must not be empty",
    ),
    (
        "POST",
        "/batch",
        {"resource_ids": [FEAT_6], "primary_key_values": [{"a": 1}]},
        JSON,
        400,
        "value",
        "primary_key_values[0]",
    ),
    (
        "POST",
        "/batch",
        {"resource_ids": [FEAT_6], "primary_key_values": [True]},
        JSON,
        400,
        "value",
        "primary_key_values[0]",
    ),
    (
        "POST",
        "/batch",
        {"resource_ids": [FEAT_6], "primary_key_values": {DIAGNOSIS: [1]}},
        JSON,
        400,
        "invalid",
        f"not in resource_ids: {DIAGNOSIS}",
    ),
    (
        "POST",
        "/batch",
        {"resource_ids": [FEAT_6], "primary_key_values": {FEAT_6: "1"}},
        JSON,
        400,
        "value",
        f"primary_key_values.{FEAT_6}",
    ),
    (
        "POST",
        "/batch",
        {"resource_ids": [FEAT_6], "primary_key_values": list(range(10_001))},
        JSON,
        400,
        "too-long",
        "at most 10000",
    ),
    (
        "POST",
        "/batch",
        b'{"resource_ids": ["' + b"x" * (1024 * 1024) + b'"]}',
        JSON,
        400,
        "too-long",
        "too large",
    ),
    (
        "POST",
        "/preview",
        {"primary_key_values": ["1"]},
        JSON,
        400,
        "required",
        "resource_id is missing",
    ),
    (
        "POST",
        "/preview",
        {"resource_id": 1, "primary_key_values": ["1"]},
        JSON,
        400,
        "value",
        "resource_id must be a non-empty string",
    ),
    (
        "POST",
        "/preview",
        {"resource_id": FEAT_6},
        JSON,
        400,
        "required",
        "primary_key_values is missing",
    ),
    (
        "POST",
        "/preview",
        {"resource_id": FEAT_6, "primary_key_values": []},
        JSON,
        400,
        "value",
        "must not be empty",
    ),
    (
        "POST",
        "/preview",
        {"resource_id": FEAT_6, "primary_key_values": "10006"},
        JSON,
        400,
        "value",
        "must be a list",
    ),
    (
        "POST",
        "/preview",
        {"resource_id": "nope", "primary_key_values": ["1"]},
        JSON,
        400,
        "not-found",
        "resource_id is an unknown resource id",
    ),
    ("POST", "/preview", b"[1, 2", JSON, 400, "structure", "not JSON"),
    (
        "POST",
        "/preview",
        {"resource_id": FEAT_6, "primary_key_values": ["1"]},
        "application/x-www-form-urlencoded",
        400,
        "invalid",
        "Content-Type",
    ),
    ("GET", "/batches?limit=abc", None, None, 400, "value", "limit must be a whole number"),
    ("GET", "/batches?limit=0", None, None, 400, "value", "limit must be between 1 and 1000"),
    ("GET", "/batches?offset=-1", None, None, 400, "value", "offset must be >= 0"),
    ("GET", "/batches?limit=1&limit=2", None, None, 400, "invalid", "given 2 times"),
    ("GET", "/batches?sort=asc", None, None, 400, "invalid", "unknown parameter(s) sort"),
    (
        "GET",
        "/fhir/Patient?name=x",
        None,
        None,
        400,
        "not-supported",
        "unsupported search parameter(s) name",
    ),
    ("GET", "/fhir/Patient?_count=abc", None, None, 400, "value", "_count must be a whole number"),
    ("GET", "/fhir/Patient?_count=-1", None, None, 400, "value", "_count must be >= 0"),
    ("GET", "/fhir/Patient?_offset=x", None, None, 400, "value", "_offset"),
    ("GET", "/fhir/Patient?_summary=text", None, None, 400, "not-supported", "_summary=text"),
    ("GET", "/fhir/Patient?_tag=", None, None, 400, "value", "has no code"),
    ("GET", "/fhir/Patient?_tag=|x", None, None, 400, "invalid", "without a system"),
    ("GET", "/fhir/Patient?_tag=a|b&_tag=c|d", None, None, 400, "not-supported", "given 2 times"),
    ("GET", "/fhir/Patient?_tag=a|b%00", None, None, 400, "value", "control character"),
    ("GET", "/fhir/Patient?_format=xml", None, None, 400, "not-supported", "JSON only"),
    ("GET", "/fhir/Patient/1?_elements=id", None, None, 400, "not-supported", "_elements"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "status", "code", "text"),
    BAD_REQUESTS,
    ids=[f"{m} {p} {str(b)[:40]}" for m, p, b, *_ in BAD_REQUESTS],
)
def test_bad_requests_get_a_400_operation_outcome(
    api, store, batch_topic, method, path, body, content_type, status, code, text
):
    batches_before = len(store.batches(10_000))
    messages_before = batch_topic.messages()
    data = body if isinstance(body, bytes | None) else orjson.dumps(body)
    headers = {"Content-Type": content_type} if content_type else {}
    answer = api.open(path, method=method, data=data, headers=headers)
    assert_outcome(answer, status, code, text)
    # Nothing was written: no batch, no event.
    assert len(store.batches(10_000)) == batches_before
    assert batch_topic.messages() == messages_before


def test_a_chunked_oversize_body_is_a_400_too(api):
    # No Content-Length: werkzeug stops reading at the limit (gunicorn marks such
    # bodies wsgi.input_terminated, as here).
    body = io.BytesIO(b'{"resource_ids": ["' + b"x" * (2 * 1024 * 1024) + b'"]}')
    answer = api.post(
        "/batch",
        input_stream=body,
        headers={"Content-Type": JSON},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert_outcome(answer, 400, "too-long", "too large")


@pytest.mark.parametrize(
    ("method", "path", "text"),
    [
        ("GET", "/batches/does-not-exist", "no batch 'does-not-exist'"),
        ("GET", "/batches/does-not-exist/errors", "no batch"),
        ("POST", "/batches/does-not-exist/retry", "no batch"),
        ("DELETE", "/batches/does-not-exist", "no batch"),
        ("GET", "/fhir/Patient/does-not-exist", "Patient/does-not-exist is not in the store"),
        ("GET", "/fhir/Patient/not%20an%20id", "is not a FHIR id"),
        ("GET", "/batches/nul%00byte", "no batch"),
        ("GET", "/fhir/Nope/1", "unknown resource type 'Nope'"),
        ("GET", "/fhir/patient", "unknown resource type 'patient'"),
        ("GET", "/nowhere", "no such endpoint: /nowhere"),
    ],
)
def test_not_found_is_a_404_operation_outcome(api, method, path, text):
    assert_outcome(api.open(path, method=method), 404, "not-found", text)


def test_a_wrong_method_is_a_405_operation_outcome(api):
    answer = api.put("/batch")
    assert_outcome(answer, 405, "not-supported", "PUT is not allowed on /batch; use POST")
    assert "POST" in answer.headers["Allow"]


# --- batches: list, state, errors, retry, cancel ------------------------------------------------


def test_batches_newest_first_with_paging_links(api):
    ids = [start(api, [FEAT_6]) for _ in range(3)]
    first = api.get("/batches?limit=2")
    assert first.status_code == 200
    assert [b["batch_id"] for b in first.json["items"]] == ids[::-1][:2]
    assert first.json["prev"] is None and first.json["next"].endswith("/batches?limit=2&offset=2")
    second = api.get(urlsplit(first.json["next"]).path + "?" + urlsplit(first.json["next"]).query)
    assert second.json["items"][0]["batch_id"] == ids[0]
    assert second.json["prev"].endswith("/batches?limit=2&offset=0")


def test_a_batch_state_per_resource(api, store):
    batch_id = start(api, [FEAT_6, DIAGNOSIS])
    state = api.get(f"/batches/{batch_id}").json
    assert state == store.batch(batch_id).as_json() | {
        "duration_seconds": state["duration_seconds"]
    }
    assert state["status"] == "running"
    assert [r["resource_id"] for r in state["resources"]] == [FEAT_6, DIAGNOSIS]
    assert state["resources"][0] | {"expected": None} == {
        "resource_id": FEAT_6,
        "status": "running",
        "expected": None,
        "extracted": 0,
        "transformed": 0,
        "loaded": 0,
        "created": 0,
        "updated": 0,
        "deleted": 0,
        "failed": 0,
    }


def fail(store: FhirStore, batch_id: str, resource_id: str, keys: list, stage: str = "transform"):
    store.record_errors(
        [InstanceError(batch_id, resource_id, k, stage, f"invalid FHIR: row {k}") for k in keys]
    )


def test_batch_errors_paginated_with_links(api, store):
    batch_id = start(api, [FEAT_6])
    keys = [10006, 10011, 10013, 10017, 10019]
    fail(store, batch_id, FEAT_6, keys)
    page = api.get(f"/batches/{batch_id}/errors?limit=2").json
    assert (page["total"], page["limit"], page["offset"], page["prev"]) == (5, 2, 0, None)
    seen = []
    while True:
        seen += page["items"]
        if page["next"] is None:
            break
        assert page["next"].startswith("http://localhost/batches/")
        link = urlsplit(page["next"])
        page = api.get(f"{link.path}?{link.query}").json
        assert page["prev"] is not None
    assert len(seen) == 5
    assert {e["primary_key_value"] for e in seen} == set(keys)
    assert seen[0] == {
        "resource_id": FEAT_6,
        "primary_key_value": seen[0]["primary_key_value"],
        "stage": "transform",
        "message": f"invalid FHIR: row {seen[0]['primary_key_value']}",
    }


def test_batches_and_errors_filtered_as_the_console_asks(api, store):
    start(api, [FEAT_6])  # another running one, older
    done = start(api, [FEAT_6])
    running = start(api, [FEAT_6])
    store.set_expected(done, FEAT_6, 2)
    fail(store, done, FEAT_6, [10006], stage="extract")
    fail(store, done, FEAT_6, [10011], stage="transform")
    store.create_batch("live-console-test", [FEAT_6], live=True)
    found = api.get("/batches?status=completed&live=false&limit=1000").json["items"]
    assert done in [b["batch_id"] for b in found] and running not in [b["batch_id"] for b in found]
    assert all(b["status"] == "completed" for b in found)
    running_page = api.get("/batches?status=running&live=false&limit=1").json
    assert [b["batch_id"] for b in running_page["items"]] == [running]
    assert "status=running" in running_page["next"] and "live=false" in running_page["next"]
    live = api.get("/batches?live=true").json["items"]
    assert "live-console-test" in [b["batch_id"] for b in live] and all(b.get("live") for b in live)
    assert_outcome(api.get("/batches?status=asleep"), 400, "value", "status must be one of")
    page = api.get(f"/batches/{done}/errors?stage=transform&resource_id={FEAT_6}").json
    assert page["total"] == 1 and page["items"][0]["primary_key_value"] == 10011
    assert api.get(f"/batches/{done}/errors?stage=load").json["total"] == 0


def test_the_first_keys_of_a_resource_and_who_calls(api):
    answer = api.get(f"/resources/{FEAT_6}/keys?limit=3")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    keys = answer.json["primary_key_values"]
    assert len(keys) == 3 and keys == sorted(keys)
    preview = api.post("/preview", json={"resource_id": FEAT_6, "primary_key_values": keys[:1]})
    [record] = preview.json["records"]
    assert record["primary_key_value"] == keys[0] and record["columns"]
    assert all(isinstance(v, list) for v in record["columns"].values())
    assert api.get("/me").json == {
        "name": "local (API_AUTH=none)",
        "role": "admin",
        "roles": ["admin"],
        "auth": "none",
    }


def test_retry_runs_exactly_the_failed_instances(api, store, batch_topic):
    batch_id = start(api, [FEAT_6, DIAGNOSIS, BP])
    assert_outcome(api.post(f"/batches/{batch_id}/retry"), 409, "conflict", "still running")
    # As the services would: FEAT_6 has 3 instances, 2 of them failed; DIAGNOSIS
    # had none; BP could not run at all.
    store.set_expected(batch_id, FEAT_6, 2)
    fail(store, batch_id, FEAT_6, ["10006", 10011])
    store.set_expected(batch_id, DIAGNOSIS, 0)
    store.resource_failed(batch_id, BP, "table public.labevents does not exist")
    assert api.get(f"/batches/{batch_id}").json["status"] == "failed"

    answer = api.post(f"/batches/{batch_id}/retry")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    retry_id = answer.json["batch_id"]
    assert answer.json == {
        "batch_id": retry_id,
        "resource_ids": [FEAT_6, BP],
        "retry_of": batch_id,
        "instances": {FEAT_6: 2, BP: None},
    }
    by_id = {e.resource_id: (key, e) for key, e in batch_topic.of(retry_id, 2)}
    assert by_id == {
        FEAT_6: (f"{FEAT_6}:".encode(), events.BatchEvent(retry_id, FEAT_6, ["10006", 10011])),
        BP: (f"{BP}:".encode(), events.BatchEvent(retry_id, BP, None)),
    }
    state = api.get(f"/batches/{retry_id}").json
    assert state["retry_of"] == batch_id and state["status"] == "running"


def test_retry_of_a_batch_without_failures_is_a_409(api, store):
    batch_id = start(api, [DIAGNOSIS])
    store.set_expected(batch_id, DIAGNOSIS, 0)
    assert api.get(f"/batches/{batch_id}").json["status"] == "completed"
    assert_outcome(api.post(f"/batches/{batch_id}/retry"), 409, "conflict", "no failed instance")


def test_cancel(api, store):
    batch_id = start(api, [FEAT_6, DIAGNOSIS])
    answer = api.delete(f"/batches/{batch_id}")
    assert answer.status_code == 200
    assert answer.json["status"] == "canceled" and answer.json["ended_at"] is not None
    assert {r["status"] for r in answer.json["resources"]} == {"canceled"}
    assert api.get(f"/batches/{batch_id}").json["status"] == "canceled"
    assert store.batch(batch_id).canceled_at is not None
    again = api.delete(f"/batches/{batch_id}")  # idempotent
    assert again.status_code == 200 and again.json["ended_at"] == answer.json["ended_at"]

    ended = start(api, [DIAGNOSIS])
    store.set_expected(ended, DIAGNOSIS, 0)
    assert_outcome(api.delete(f"/batches/{ended}"), 409, "conflict", "already ended (completed)")
    assert api.get(f"/batches/{ended}").json["status"] == "completed"


def test_a_live_batch_is_retried_while_it_runs_and_is_never_canceled(api, store, batch_topic):
    live = f"live-test-{uuid.uuid4().hex[:8]}"
    store.create_batch(live, [FEAT_6], live=True)
    store.add_extracted(live, FEAT_6, 3)
    fail(store, live, FEAT_6, ["10006"])
    assert_outcome(api.delete(f"/batches/{live}"), 409, "conflict", "follows a live source")
    answer = api.post(f"/batches/{live}/retry")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    retry_id = answer.json["batch_id"]
    assert answer.json["instances"] == {FEAT_6: 1} and answer.json["retry_of"] == live
    [(_, event)] = batch_topic.of(retry_id, 1)
    assert event == events.BatchEvent(retry_id, FEAT_6, ["10006"])
    assert api.get(f"/batches/{live}").json["status"] == "running"


def test_a_live_batch_of_csv_files_is_not_retried_from_the_database(settings, engine, store):
    # Its rows came in a file: a retry would look for them in the source database.
    connector = ROOT / "kafka_connect_connectors" / "sources" / "mimic-sftp-csv.json"
    api = make_client(
        create_app(
            replace(settings, live_sources=str(connector)),
            engine=engine,
            store=store,
            producer=None,
        )
    )
    live = "live-fhir-river-mimic-sftp-csv"
    if store.batch(live) is None:
        store.create_batch(live, [FEAT_6], live=True)
    fail(store, live, FEAT_6, ["10006"])
    assert_outcome(api.post(f"/batches/{live}/retry"), 409, "conflict", "upload the corrected file")


# --- stalled resources ------------------------------------------------------------------------

STALLED_AFTER = 2  # seconds: STALLED_AFTER_SECONDS of the `impatient` API


@pytest.fixture(scope="module")
def impatient(settings: Settings, engine: Engine, store: FhirStore) -> Flask:
    """The API over the same parts, with STALLED_AFTER_SECONDS=2 (the module's keeps 300)."""
    return create_app(
        replace(settings, stalled_after_seconds=STALLED_AFTER),
        engine=engine,
        store=store,
        producer=None,
    )


def stopped_in_transform(api: FlaskClient, store: FhirStore) -> str:
    """A batch whose FEAT_6 stops in transform, as the services would leave it: 4
    instances extracted, 2 transformed and loaded; DIAGNOSIS had no row (completed)."""
    batch_id = start(api, [FEAT_6, DIAGNOSIS])
    store.set_expected(batch_id, FEAT_6, 4)
    store.set_extracted(batch_id, FEAT_6, 4)
    store.add_counts(batch_id, {FEAT_6: {"transformed": 2, "created": 2}})
    store.set_expected(batch_id, DIAGNOSIS, 0)
    return batch_id


def test_a_resource_without_progress_is_stalled_with_its_stage_and_reason(api, impatient, store):
    batch_id = stopped_in_transform(api, store)
    client_ = make_client(impatient)
    fresh = client_.get(f"/batches/{batch_id}").json
    assert "stalled" not in fresh and fresh["resources"][0]["status"] == "running"

    def stalled() -> dict | None:
        state = client_.get(f"/batches/{batch_id}").json
        return state if state.get("stalled") else None

    state = wait_for("the batch to show stalled", stalled, timeout=STALLED_AFTER + 10)
    assert (state["status"], state["ended_at"], state["stalled"]) == ("running", None, True)
    feat_6, diagnosis = state["resources"]
    assert feat_6 | {"reason": None} == {
        "resource_id": FEAT_6,
        "status": "stalled",
        "stalled_at_stage": "transform",
        "reason": None,
        "expected": 4,
        "extracted": 4,
        "transformed": 2,
        "loaded": 2,
        "created": 2,
        "updated": 0,
        "deleted": 0,
        "failed": 0,
    }
    found = re.fullmatch(
        r"no progress for (\d+) s; stopped at stage transform"
        r" \(2 of 4 extracted instances transformed and loaded\)",
        feat_6["reason"],
    )
    assert found and int(found.group(1)) >= STALLED_AFTER, feat_6["reason"]
    assert diagnosis["status"] == "completed" and "stalled_at_stage" not in diagnosis
    [listed] = [
        b for b in client_.get("/batches?limit=20").json["items"] if b["batch_id"] == batch_id
    ]
    assert listed["stalled"] is True and listed["resources"][0]["status"] == "stalled"
    # The module's API (the default 300 s) sees it running, not stalled.
    patient = api.get(f"/batches/{batch_id}").json
    assert "stalled" not in patient and patient["resources"][0]["status"] == "running"

    # It moves (an instance failed): running again, until it stops for that long again.
    fail(store, batch_id, FEAT_6, [10006])
    moved = client_.get(f"/batches/{batch_id}").json
    assert "stalled" not in moved and moved["resources"][0]["status"] == "running"
    state = wait_for("the batch to stall again", stalled, timeout=STALLED_AFTER + 10)
    assert state["resources"][0]["reason"].endswith(
        "stopped at stage transform (3 of 4 extracted instances transformed and loaded or failed)"
    )


def test_river_status_shows_a_stalled_resource_with_its_stage_and_reason(
    api, impatient, store, capsys
):
    batch_id = stopped_in_transform(api, store)
    server = make_server("127.0.0.1", 0, impatient, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        wait_for(
            "the batch to stall",
            lambda: store.batch(batch_id).as_json(stalled_after=STALLED_AFTER).get("stalled"),
            timeout=STALLED_AFTER + 10,
        )
        assert cli.main(["status", batch_id, "--api", url]) == 0
        out = capsys.readouterr().out
        assert f"batch {batch_id}: running (stalled)" in out
        # The table: FEAT_6 (its label may fold over lines) stalled in transform, DIAGNOSIS not.
        assert out.count("stalled (transform)") == 1 and "completed" in out
        assert re.search(
            rf"{FEAT_6} stalled: no progress for \d+ s; stopped at stage transform"
            r" \(2 of 4 extracted instances transformed and loaded\)",
            out,
        ), out
        assert cli.main(["status", "--api", url]) == 0
        [line] = [line for line in capsys.readouterr().out.splitlines() if batch_id in line]
        assert "running (stalled)" in line
    finally:
        server.shutdown()
        thread.join(10)


# --- FHIR reads -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def patients(engine: Engine, store: FhirStore) -> list[dict]:
    """Five FEAT_6 Patients, loaded straight through the store."""
    instances = engine.preview(FEAT_6, PATIENTS)["instances"]
    assert len(instances) == 5
    store.load("fhir-read-test", [(FEAT_6, r) for r in instances])
    return sorted(instances, key=lambda r: r["id"])


def test_read_one_resource(api, store, patients):
    for patient in patients:
        answer = api.get(f"/fhir/Patient/{patient['id']}")
        assert answer.status_code == 200
        assert answer.mimetype == "application/fhir+json"
        assert answer.json == store.read("Patient", patient["id"])
        assert without_last_updated(answer.json) == without_last_updated(patient)


def test_search_by_tag_pages_with_links(api, patients):
    tag = f"{RESOURCE_TAG}|{FEAT_6}"
    answer = api.get("/fhir/Patient", query_string={"_tag": tag, "_count": 2})
    assert answer.status_code == 200 and answer.mimetype == "application/fhir+json"
    bundle = answer.json
    assert (bundle["resourceType"], bundle["type"], bundle["total"]) == ("Bundle", "searchset", 5)
    links = {link["relation"]: link["url"] for link in bundle["link"]}
    assert set(links) == {"self", "next"}
    assert links["self"].startswith("http://localhost/fhir/Patient?_tag=")
    found, pages = [], 0
    while True:
        pages += 1
        found += bundle["entry"]
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        if pages > 1:
            assert "previous" in links
        if "next" not in links:
            break
        link = urlsplit(links["next"])
        bundle = api.get(f"{link.path}?{link.query}").json
        assert bundle["total"] == 5
    assert pages == 3
    assert [e["resource"]["id"] for e in found] == [p["id"] for p in patients]
    for entry in found:
        assert entry["fullUrl"] == f"http://localhost/fhir/Patient/{entry['resource']['id']}"
        assert entry["search"] == {"mode": "match"}
    last = api.get("/fhir/Patient", query_string={"_tag": tag, "_count": 2, "_offset": 4}).json
    links = {link["relation"]: link["url"] for link in last["link"]}
    assert links["previous"].endswith("_count=2&_offset=2") and "next" not in links


def test_search_summary_count_and_tag_forms(api, patients):
    tag = f"{RESOURCE_TAG}|{FEAT_6}"
    count = api.get("/fhir/Patient", query_string={"_tag": tag, "_summary": "count"}).json
    assert count["total"] == 5 and "entry" not in count
    assert count["resourceType"] == "Bundle" and count["type"] == "searchset"
    any_system = api.get("/fhir/Patient", query_string={"_tag": FEAT_6, "_summary": "count"})
    assert any_system.json["total"] == 5
    other = api.get("/fhir/Patient", query_string={"_tag": f"{RESOURCE_TAG}|nothing"}).json
    assert (other["total"], other["entry"]) == (0, [])
    untagged = api.get("/fhir/Patient", query_string={"_count": 0}).json
    assert untagged["total"] == 5 and untagged["entry"] == []
    assert api.get("/fhir/Condition?_summary=count").json["total"] == 0  # no table yet


# --- health, failures of the parts, openapi ------------------------------------------------------


def test_health_when_every_part_answers(api, topic_prefix):
    """Each pipeline service is alive while its consumer group has a member: here,
    consumers that join the groups the services would; one that leaves is named."""
    members = {
        name: Consumer(
            {
                **kafka_client(),
                "group.id": f"{topic_prefix}fhir-river-{name}",
                "auto.offset.reset": "latest",
            }
        )
        for name in PIPELINE
    }
    for consumer in members.values():
        consumer.subscribe([topic_prefix + events.LOAD])

    def healthy() -> bool:
        for consumer in members.values():
            consumer.consume(1, 0.1)  # joins the group, and keeps its membership
        return api.get("/health").status_code == 200

    try:
        wait_for("every service's group has a member", healthy, timeout=60)
        health = api.get("/health").json
        assert health["status"] == "ok" and health["problems"] == []
        assert health["kafka"]["ok"] and health["kafka"]["brokers"] >= 1
        assert "missing_topics" not in health["kafka"]  # the fixture made them
        assert health["store"] == {"ok": True, "backend": "PostgresStore"}
        assert health["mappings"] == {"ok": True, "resources": 17}
        assert health["services"]["loader"] == {"ok": True, "processes": 1}
        assert "connectors" not in health  # no LIVE_SOURCES here
        members.pop("loader").close()  # leaves its group at once
        answer = api.get("/health")
        assert answer.status_code == 503
        health = answer.json
        assert health["status"] == "unavailable"
        assert health["services"]["loader"] == {"ok": False, "processes": 0}
        assert health["services"]["extractor"]["ok"]
        assert health["problems"] == [
            f"not running: loader (no process in consumer group {topic_prefix}fhir-river-loader;"
            " make status shows why, and the service's log)"
        ]
    finally:
        for consumer in members.values():
            consumer.close()


def test_the_liveness_probe_answers_while_parts_are_down(settings, engine):
    """/health/live (a container's healthcheck) says the API answers, whatever the
    parts: restarting the API would not bring Kafka back."""
    down = replace(settings, kafka_bootstrap_servers="127.0.0.1:1")
    api = make_client(create_app(down, engine=engine))
    assert api.get("/health").status_code == 503
    answer = api.get("/health/live")
    assert (answer.status_code, answer.json) == (200, {"status": "alive"})


def test_health_and_answers_when_kafka_and_the_store_are_down(settings, engine):
    down = replace(
        settings,
        kafka_bootstrap_servers="127.0.0.1:1",
        fhir_store_url=f"postgresql://{ROLE}:{SECRET}@127.0.0.1:1/none",
    )
    app = create_app(down, engine=engine)
    api = make_client(app)
    answer = api.get("/health")
    assert answer.status_code == 503
    health = answer.json
    assert health["status"] == "unavailable"
    assert not health["kafka"]["ok"] and "did not answer" in health["kafka"]["error"]
    assert not health["store"]["ok"] and "cannot be reached" in health["store"]["error"]
    assert health["mappings"]["ok"]
    assert_outcome(api.get("/batches"), 503, "transient", "cannot be reached")
    assert_outcome(api.post("/batch", json={"resource_ids": [FEAT_6]}), 503, "transient")
    assert SECRET not in "".join(a.decode(errors="replace") for a in ANSWERS[-4:])
    app.extensions["river"].store.close()


def test_kafka_down_at_batch_time_is_a_503_and_the_batch_is_canceled(settings, engine, store):
    down = replace(settings, kafka_bootstrap_servers="127.0.0.1:1")
    app = create_app(down, engine=engine, store=store)
    app.extensions["river"].produce_timeout = 1.0
    before = {b.batch_id for b in store.batches(10_000)}
    answer = make_client(app).post("/batch", json={"resource_ids": [FEAT_6]})
    assert_outcome(answer, 503, "transient", "Kafka")
    (new,) = [b for b in store.batches(10_000) if b.batch_id not in before]
    assert new.status == "canceled"


def test_an_unexpected_error_is_a_500_without_a_trace(api, store, monkeypatch):
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"boom, password {SECRET}")

    monkeypatch.setattr(store, "batches", broken)
    answer = api.get("/batches")
    outcome = assert_outcome(answer, 500, "exception", "internal error (reference ")
    text = answer.get_data(as_text=True)
    assert "boom" not in text and "Traceback" not in text
    reference = re.search(r"reference (\w+)", outcome["issue"][0]["diagnostics"]).group(1)
    logged = [line for line in LOGS if reference in line]
    assert logged and "RuntimeError: boom, password ***" in logged[0]


def test_openapi_describes_every_route(app, api):
    answer = api.get("/openapi.json")
    assert answer.status_code == 200
    doc = answer.json
    assert doc == document() and doc["openapi"].startswith("3.1")
    described = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("console."):
            continue  # the console's page and files (console/), not the API
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        assert path in doc["paths"], f"{rule.rule} is not in /openapi.json"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            operation = doc["paths"][path].get(method.lower())
            assert operation, f"{method} {rule.rule} is not in /openapi.json"
            assert operation["responses"]
            described += 1
    assert described == 15
    # Every $ref resolves.
    refs = set(re.findall(r'"\$ref": ?"#/components/schemas/(\w+)"', answer.get_data(as_text=True)))
    assert refs and refs <= set(doc["components"]["schemas"])


# --- python -m api, and the river command's client ---------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(settings: Settings, tmp_path_factory) -> Iterator[str]:
    """`python -m api` (gunicorn, 2 workers) on a free port."""
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": KAFKA,
        "KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "FHIR_STORE_URL": settings.fhir_store_url,
        "MAPPINGS": settings.mappings,
        "CONCEPT_MAPS": settings.concept_maps,
        "SOURCE_DB_URL": settings.source_db_url,
        "FHIR_API_URL": "",
        "PYROG_API_URL": "",
        "API_PORT": str(port),
        "API_AUTH": "none",  # on 127.0.0.1; test_auth.py checks tokens
    }
    log = tmp_path_factory.mktemp("api") / "api.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "api"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/health/live", timeout=30).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        LOGS.append(log.read_text(errors="replace"))
    assert process.returncode == 0, log.read_text()


def test_python_m_api_serves_with_gunicorn(served):
    health = requests.get(f"{served}/health/live", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "alive"
    # gunicorn serves, not the development server it falls back on without it.
    assert health.headers.get("Server", "").startswith("gunicorn"), health.headers
    body = {"resource_id": FEAT_6, "primary_key_values": ["10006"]}
    durations = []
    for _ in range(10):  # both workers get some: each built its engine once, at start
        started = time.perf_counter()
        answer = requests.post(f"{served}/preview", json=body, timeout=10)
        durations.append(time.perf_counter() - started)
        assert answer.status_code == 200 and len(answer.json()["instances"]) == 1
    assert sorted(durations)[5] < 0.3, durations
    oversize = requests.post(
        f"{served}/batch",
        data=b"x" * (2 * 1024 * 1024),
        headers={"Content-Type": JSON},
        timeout=10,
    )
    assert oversize.status_code == 400 and "too large" in oversize.text
    ANSWERS.extend([health.content, answer.content, oversize.content])


def test_the_river_client_starts_follows_and_shows_batches(served, store, capsys):
    assert client.start_batch(served, [FEAT_6], {FEAT_6: ["10006"]}) == 0
    out, err = capsys.readouterr()
    batch_id = out.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", batch_id) and "started" in err
    # As the services would: one instance expected; it failed.
    store.set_expected(batch_id, FEAT_6, 1)
    fail(store, batch_id, FEAT_6, ["10006"])
    assert client.wait_batch(served, batch_id, progress=False) == 0
    out, err = capsys.readouterr()
    assert f"batch {batch_id} completed" in err and "1 failed" in err
    assert client.show_status(served, batch_id) == 0
    out, _ = capsys.readouterr()
    assert batch_id in out and "invalid FHIR: row 10006" in out
    assert client.show_status(served) == 0
    assert batch_id in capsys.readouterr().out

    assert client.start_batch(served, ["nope"]) == 1
    assert "river: unknown resource id(s) at resource_ids[0]" in capsys.readouterr().err
    assert client.show_status(served, "nope") == 1
    assert "river: no batch 'nope'" in capsys.readouterr().err
    assert client.show_status("http://127.0.0.1:1") == 1
    assert "cannot be reached" in capsys.readouterr().err


def test_wait_batch_returns_1_for_a_canceled_batch(served, api):
    batch_id = start(api, [FEAT_6])
    api.delete(f"/batches/{batch_id}")
    assert client.wait_batch(served, batch_id, progress=False) == 1


# --- last: secrets ----------------------------------------------------------------------------


def test_no_answer_and_no_log_line_shows_a_password():
    assert len(ANSWERS) > 100
    for answer in ANSWERS:
        assert SECRET.encode() not in answer
    for line in LOGS:
        assert SECRET not in line
