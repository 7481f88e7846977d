"""End to end: batches through real Kafka into the PostgreSQL FHIR store, with the
MIMIC-III demo and the mimic-demo.json mappings, as a user drives it over HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
from confluent_kafka import Consumer, Producer

from river import events
from test.conftest import (
    ROOT,
    committed,
    high_watermarks,
    kafka_client,
    reader_from_now,
    without_last_updated,
)
from test.integration.test_engine_mimic import (
    BAD_GENDER,
    BP,
    DIAGNOSIS,
    EXPECTED_COUNT_SQL,
    FEAT_6,
    MEDICATION_REQUEST,
)

EVERY_RESOURCE = sorted(EXPECTED_COUNT_SQL)  # every resource but bp, whose table is missing


@pytest.fixture(scope="module")
def expected(mimic_demo_url) -> dict[str, int]:
    with psycopg.connect(mimic_demo_url) as connection:
        return {r: connection.execute(sql).fetchone()[0] for r, sql in EXPECTED_COUNT_SQL.items()}


def resource_counts(state: dict) -> dict[str, dict]:
    return {r["resource_id"]: r for r in state["resources"]}


def stored(pipeline, resource_id: str) -> list[dict]:
    """Every resource the store holds for one mapping resource, read over HTTP."""
    return pipeline.stored(pipeline.store_type[resource_id], resource_id)


@pytest.fixture(scope="module", autouse=True)
def types_of(pipeline, engine):
    pipeline.store_type = {r: engine.plan(r).resource_type for r in engine.mappings.resource_ids()}


def test_a_batch_over_every_resource(pipeline, expected, engine):
    batch_id = pipeline.batch(EVERY_RESOURCE)
    state = pipeline.wait(batch_id)
    assert state["status"] == "completed", [
        r for r in state["resources"] if r["status"] != "completed"
    ]
    counts = resource_counts(state)
    for resource_id, n in expected.items():
        c = counts[resource_id]
        assert (c["expected"], c["extracted"]) == (n, n), c
        if resource_id == BAD_GENDER:
            assert (c["failed"], c["loaded"]) == (n, 0), c
        else:
            assert (c["created"], c["updated"], c["failed"], c["transformed"]) == (n, 0, 0, n), c
    # The store holds exactly these, each as `river preview` makes it.
    for resource_id, n in expected.items():
        if resource_id == BAD_GENDER:
            assert stored(pipeline, resource_id) == []
            continue
        in_store = {r["id"]: without_last_updated(r) for r in stored(pipeline, resource_id)}
        assert len(in_store) == n
        previews = {
            o.resource["id"]: without_last_updated(o.resource) for o in engine.run(resource_id)
        }
        assert in_store == previews
    one = next(iter(stored(pipeline, DIAGNOSIS)))
    read = pipeline.request("GET", f"/fhir/Condition/{one['id']}")
    assert read.status_code == 200 and read.json() == one


def test_the_same_batch_again_updates_and_duplicates_nothing(pipeline, expected):
    batch_id = pipeline.batch(EVERY_RESOURCE)
    state = pipeline.wait(batch_id)
    assert state["status"] == "completed"
    for resource_id, c in resource_counts(state).items():
        n = expected[resource_id]
        if resource_id != BAD_GENDER:
            assert (c["created"], c["updated"], c["failed"]) == (0, n, 0), c
            assert pipeline.total(pipeline.store_type[resource_id], resource_id) == n


def test_a_batch_with_primary_key_values_and_preview_over_http(pipeline):
    batch_id = pipeline.batch([FEAT_6], primary_key_values={FEAT_6: [10006, 41976]})
    state = pipeline.wait(batch_id)
    assert resource_counts(state)[FEAT_6]["expected"] == 2
    assert resource_counts(state)[FEAT_6]["loaded"] == 2
    over_http = pipeline.request(
        "POST", "/preview", json={"resource_id": FEAT_6, "primary_key_values": ["10006", "41976"]}
    )
    assert over_http.status_code == 200
    cli = subprocess.run(
        [sys.executable, "-m", "cli", "preview", FEAT_6, "10006", "41976"],
        capture_output=True,
        text=True,
        env=pipeline.env,
        cwd=ROOT,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    strip = lambda answer: [without_last_updated(r) for r in answer["instances"]]  # noqa: E731
    assert (
        strip(over_http.json()) == strip(json.loads(cli.stdout))
        and len(strip(over_http.json())) == 2
    )


def test_bp_fails_with_its_reason(pipeline):
    state = pipeline.wait(pipeline.batch([BP]))
    assert state["status"] == "failed"
    assert "table public.labevents does not exist" in resource_counts(state)[BP]["error"]


def test_cancel_stops_the_work(pipeline):
    batch_id = pipeline.batch([MEDICATION_REQUEST])
    # At once: 10,398 instances take about a second on a quiet machine, and the services
    # learn of a cancel within a second, so a cancel after the extraction could land on
    # a batch already done (seen in CI).
    canceled = pipeline.request("DELETE", f"/batches/{batch_id}")
    assert canceled.status_code == 200
    time.sleep(3)  # what was in flight settles
    before = pipeline.request("GET", f"/batches/{batch_id}").json()
    time.sleep(4)
    after = pipeline.request("GET", f"/batches/{batch_id}").json()
    assert after["status"] == "canceled"
    assert after["resources"] == before["resources"]  # counts stopped moving
    c = resource_counts(after)[MEDICATION_REQUEST]
    assert c["loaded"] < 10398, c


def test_invalid_instances_are_listed_and_retry_loads_exactly_them(pipeline, engine):
    """A batch of 200 instances, 100 of them invalid (BAD_GENDER's): the retry, once
    the mapping is fixed, runs those 100 and nothing else."""
    batch_id = pipeline.batch([FEAT_6, BAD_GENDER])
    state = pipeline.wait(batch_id)
    assert state["status"] == "completed"
    counts = resource_counts(state)
    assert (counts[FEAT_6]["failed"], counts[BAD_GENDER]["failed"]) == (0, 100)
    errors = pipeline.request("GET", f"/batches/{batch_id}/errors", params={"limit": 1000}).json()
    assert errors["total"] == 100
    assert all(
        (e["resource_id"], e["stage"]) == (BAD_GENDER, "transform")
        and "Patient.gender" in e["message"]
        for e in errors["items"]
    )
    failed = {e["primary_key_value"] for e in errors["items"]}
    assert len(failed) == 100
    assert stored(pipeline, BAD_GENDER) == []
    # Fix the cause in the mapping, restart the transformer, retry.
    mapping = pipeline.workdir / "mimic-demo.json"
    mapping.write_text(mapping.read_text().replace('"not-a-valid-gender"', '"unknown"'))
    pipeline.restart("transformer")
    retried = pipeline.request("POST", f"/batches/{batch_id}/retry")
    assert retried.status_code == 200, retried.text
    state = pipeline.wait(retried.json()["batch_id"])
    assert [c["resource_id"] for c in state["resources"]] == [BAD_GENDER]
    c = resource_counts(state)[BAD_GENDER]
    assert (c["expected"], c["created"], c["failed"]) == (100, 100, 0)
    assert {r["id"] for r in stored(pipeline, BAD_GENDER)} == {
        engine.fhir_id(BAD_GENDER, value) for value in failed
    }


def test_river_batch_wait_shows_progress_per_resource_until_the_end(pipeline, expected):
    """`river batch ... --wait` in a terminal (a pseudo-terminal here): a bar per
    resource with its counts and rate while it runs, the batch id on stdout, the
    final table, exit 0 once completed."""
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [str(ROOT / ".venv/bin/river"), "batch", FEAT_6, DIAGNOSIS, "--wait"],
        env={**pipeline.env, "COLUMNS": "200"},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
    ) as river:
        os.close(follower)
        terminal = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the command ended: its terminal is gone
                break
            if not chunk:
                break
            terminal += chunk
        stdout = river.stdout.read()
        assert river.wait(30) == 0, terminal.decode(errors="replace")
    os.close(leader)
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal.decode(errors="replace"))
    batch_id = stdout.splitlines()[0]
    assert f"batch {batch_id} started: 2 resource(s)" in screen
    for resource_id in (FEAT_6, DIAGNOSIS):
        n = expected[resource_id]
        assert f"{n}/{n}" in screen, screen[-3000:]  # the bar, filled
        assert f"loaded {n}, failed 0" in screen
    assert re.search(r"[0-9,]+/s", screen), "no rate shown"
    assert f"batch {batch_id}: completed" in stdout
    state = pipeline.request("GET", f"/batches/{batch_id}").json()
    assert state["status"] == "completed"


class TopicReader:
    """The events a topic receives from now on (one partition count: 3)."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.consumer, self.position = reader_from_now(topic)
        self.events: list[dict] = []

    def batch_events(self, batch_id: str, total: int, timeout: float = 60) -> list[dict]:
        """The events of `batch_id` up to the topic's end, once there are `total` of them
        (a loader sends its load events just after counting them in the store)."""
        deadline = time.monotonic() + timeout
        while True:
            end = high_watermarks(self.consumer, self.topic)
            while any(self.position[p] < end[p] for p in end):
                assert time.monotonic() < deadline, f"{self.topic}: at {self.position}, end {end}"
                for message in self.consumer.consume(1000, 0.5):
                    if message.error() is not None:
                        continue
                    self.position[message.partition()] = message.offset() + 1
                    with contextlib.suppress(TypeError, ValueError):  # not an event: skip it
                        self.events.append(json.loads(message.value()))
            found = [e for e in self.events if e.get("batch_id") == batch_id]
            if len(found) >= total or time.monotonic() > deadline:
                return found
            time.sleep(0.5)

    def close(self) -> None:
        self.consumer.close()


def test_two_copies_of_each_service_share_the_work(pipeline, expected):
    """A second extractor, transformer and loader join their services' consumer
    groups: each copy takes partitions and handles messages, and every instance is
    extracted, transformed and loaded once."""
    prefix = pipeline.env["KAFKA_TOPIC_PREFIX"]
    stages = ("extractor", "transformer", "loader")
    groups = {stage: f"{prefix}fhir-river-{stage}" for stage in stages}
    copies = [f"{stage}-2" for stage in stages]
    for stage, key in zip(stages, copies, strict=True):
        pipeline.start_copy(stage, key)
    try:
        owners = {stage: pipeline.wait_for_group(stage, members=2) for stage in groups}
        before = {stage: committed(group) for stage, group in groups.items()}
        readers = {topic: TopicReader(prefix + topic) for topic in ("transform", "load")}
        # Their batch events' keys fall on the 3 partitions of `batch` (librdkafka
        # places a key by its CRC32: 2, 1 and 0), so each extractor has one to run.
        resources = [MEDICATION_REQUEST, DIAGNOSIS, FEAT_6]
        batch_id = pipeline.batch(resources)
        state = pipeline.wait(batch_id)
        assert state["status"] == "completed"
        for c in state["resources"]:
            n = expected[c["resource_id"]]
            assert (c["expected"], c["extracted"], c["transformed"]) == (n, n, n), c
            assert (c["created"] + c["updated"], c["failed"]) == (n, 0), c

        # Each instance transformed once and loaded once: no copy handled another's messages.
        total = sum(expected[r] for r in resources)
        transformed = readers["transform"].batch_events(batch_id, total)
        loaded = readers["load"].batch_events(batch_id, total)
        for reader in readers.values():
            reader.close()
        assert len(transformed) == len({e["fhir_object"]["id"] for e in transformed}) == total
        assert len(loaded) == len({(e["resource_type"], e["id"]) for e in loaded}) == total

        # Both copies of each service owned partitions throughout and committed there.
        for stage, group in groups.items():
            assert pipeline.wait_for_group(stage, members=2) == owners[stage]
            after = committed(group)
            for member, partitions in owners[stage].items():
                assert any(after[p] > before[stage][p] for p in partitions), (
                    f"{stage} member {member} handled nothing on {partitions}: "
                    f"{before[stage]} -> {after}"
                )
        for key in copies:
            assert pipeline.processes[key].poll() is None, pipeline.log(key)[-2000:]
            assert f"{pipeline.services[key]} consuming" in pipeline.log(key)
    finally:
        pipeline.stop(*copies)
        for stage in groups:  # the first copies take every partition back
            pipeline.wait_for_group(stage, members=1)


@pytest.mark.parametrize(
    ("service", "sig"),
    [
        *(("extractor", signal.SIGKILL), ("transformer", signal.SIGKILL)),
        *(("loader", signal.SIGKILL), ("api", signal.SIGKILL)),
        *(("extractor", signal.SIGTERM), ("transformer", signal.SIGTERM)),
        ("loader", signal.SIGTERM),
    ],
    ids=lambda value: value.name if isinstance(value, signal.Signals) else value,
)
def test_a_service_killed_or_stopped_mid_batch_then_restarted(pipeline, expected, service, sig):
    """SIGKILL: the work in hand comes back to the restarted service (nothing was
    committed). SIGTERM: the service finishes or hands back its work, commits, and
    exits 0 at once. Either way the batch completes, each instance counted once."""
    resources = [MEDICATION_REQUEST, DIAGNOSIS]
    batch_id = pipeline.batch(resources)
    pipeline.wait_for_extraction(batch_id, at_least=2000)
    before = pipeline.request("GET", f"/batches/{batch_id}").json()
    assert before["status"] == "running"
    assert sum(c["created"] + c["updated"] for c in before["resources"]) < sum(
        expected[r] for r in resources
    ), "the batch was loaded before the service stopped: nothing was in flight"
    seen = len(pipeline.log(service))
    codes = pipeline.stop(service, sig=sig, timeout=20)
    if sig == signal.SIGTERM:
        assert codes[service] == 0, pipeline.log(service)[seen:]
        assert f"{service} stopped" in pipeline.log(service)[seen:]
    time.sleep(1)
    pipeline.start(service)
    state = pipeline.wait(batch_id)
    assert state["status"] == "completed"
    for c in state["resources"]:
        n = expected[c["resource_id"]]
        assert c["extracted"] == c["expected"] == n
        assert (c["created"] + c["updated"], c["failed"]) == (c["expected"], 0), c
        assert pipeline.total(pipeline.store_type[c["resource_id"]], c["resource_id"]) == n


def test_postgresql_stopped_for_20_seconds(pipeline, expected):
    """The loader loses its store in the middle of a batch, and the extractor its
    source and store before it starts the next one: both wait, retry, and lose
    nothing."""
    from test.e2e.stack import start_postgres, stop_postgres

    writing = pipeline.batch([MEDICATION_REQUEST])
    pipeline.wait_for_extraction(writing)
    # The next batch's event comes while PostgreSQL is down, as the API produces it.
    waiting = f"e2e-outage-{uuid.uuid4().hex[:8]}"
    pipeline.store.create_batch(waiting, [DIAGNOSIS])
    seen = {service: len(pipeline.log(service)) for service in ("extractor", "loader")}
    stop_postgres()
    try:
        producer = Producer(kafka_client())
        producer.produce(
            pipeline.env["KAFKA_TOPIC_PREFIX"] + events.BATCH,
            events.encode(events.BatchEvent(waiting, DIAGNOSIS)),
            events.instance_key(DIAGNOSIS, ""),
        )
        assert producer.flush(10) == 0
        time.sleep(20)
    finally:
        start_postgres()
    for batch_id, resource_id in ((writing, MEDICATION_REQUEST), (waiting, DIAGNOSIS)):
        state = pipeline.wait(batch_id, timeout=300)
        c = resource_counts(state)[resource_id]
        assert state["status"] == "completed"
        assert (c["created"] + c["updated"], c["failed"]) == (expected[resource_id], 0)
    for service, start in seen.items():
        assert "retrying in" in pipeline.log(service)[start:], f"{service} never waited"


def test_a_malformed_message_on_each_topic_goes_to_errors_and_the_rest_flows(pipeline):
    prefix = pipeline.env["KAFKA_TOPIC_PREFIX"]
    consumer = Consumer(
        {
            **kafka_client(),
            "group.id": f"e2e-errors-{uuid.uuid4().hex}",
            "auto.offset.reset": "latest",
        }
    )
    consumer.subscribe([prefix + "errors"])
    deadline = time.monotonic() + 30
    while not consumer.assignment():  # join before anything is produced
        consumer.poll(0.2)
        assert time.monotonic() < deadline
    producer = Producer(kafka_client())
    for topic in ("batch", "extract", "transform"):
        producer.produce(prefix + topic, b"{this is not json", b"malformed")
    producer.flush(10)
    stages = set()
    deadline = time.monotonic() + 60
    while stages != {"extract", "transform", "load"} and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None and message.key() == b"malformed":
            event = json.loads(message.value())
            assert "not JSON" in event["message"]
            stages.add(event["stage"])
    consumer.close()
    assert stages == {"extract", "transform", "load"}
    state = pipeline.wait(pipeline.batch([FEAT_6]))
    assert state["status"] == "completed"


def test_a_resource_the_store_refuses_fails_alone_and_its_batch_completes(pipeline, engine):
    """PostgreSQL's jsonb takes no \\u0000 (a NUL byte from a file, say): that resource
    is a failed instance of its batch, listed with its key; the rest of its poll loads."""
    keys = [10006, 10011, 10013]
    resources = engine.preview(FEAT_6, keys)["instances"]
    resources[1]["name"] = [{"family": "Nul\u0000Byte"}]
    batch_id = f"e2e-refused-{uuid.uuid4().hex[:8]}"
    pipeline.store.create_batch(batch_id, [FEAT_6])
    pipeline.store.set_expected(batch_id, FEAT_6, len(keys))
    pipeline.store.set_extracted(batch_id, FEAT_6, len(keys))
    producer = Producer(kafka_client())
    for key, resource in zip(keys, resources, strict=True):
        event = events.TransformEvent(batch_id, FEAT_6, resource, primary_key_value=key)
        producer.produce(
            pipeline.env["KAFKA_TOPIC_PREFIX"] + events.TRANSFORM,
            events.encode(event),
            events.instance_key(FEAT_6, key),
        )
    assert producer.flush(10) == 0

    state = pipeline.wait(batch_id)

    assert state["status"] == "completed"
    (counts,) = state["resources"]
    assert (counts["loaded"], counts["failed"]) == (2, 1)
    (error,) = pipeline.request("GET", f"/batches/{batch_id}/errors").json()["items"]
    assert (error["resource_id"], error["primary_key_value"], error["stage"]) == (
        FEAT_6,
        10011,
        "load",
    )
    # One sentence naming the resource, without PostgreSQL's quote of its content.
    assert error["message"] == (
        f"loader failed: the PostgreSQL FHIR store refused Patient/{resources[1]['id']}: "
        "unsupported Unicode escape sequence (\\u0000 cannot be converted to text)"
    )
    for resource in (resources[0], resources[2]):
        stored_now = pipeline.request("GET", f"/fhir/Patient/{resource['id']}").json()
        assert without_last_updated(stored_now) == without_last_updated(resource)
    refused = pipeline.request("GET", f"/fhir/Patient/{resources[1]['id']}").json()
    assert "Nul" not in json.dumps(refused.get("name", []))


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/batch", b"not json", 400),
        ("POST", "/batch", json.dumps({"resource_ids": "x"}).encode(), 400),
        ("POST", "/batch", json.dumps({"resource_ids": ["nope"]}).encode(), 400),
        ("POST", "/preview", json.dumps({"resource_id": FEAT_6}).encode(), 400),
        ("GET", "/batches/does-not-exist", None, 404),
    ],
)
def test_bad_requests_get_an_operation_outcome(pipeline, method, path, body, status):
    answer = pipeline.request(method, path, data=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == status
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["diagnostics"]
