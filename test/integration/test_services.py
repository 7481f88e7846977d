"""The services' handlers, one poll at a time, against real parts: Kafka (topics
of a prefix of this module's), the PostgreSQL FHIR store (a scratch database)
and the MIMIC-III demo with mimic-demo.json.

A poll's messages are read back from the topic the stage before produced, and
handed to the next stage's handler as its loop would; what the handler sends is
read back in turn. The end-to-end tests run the same handlers in their
processes; here a test sees exactly one poll, so it can say what that poll
must give (a poll mixing valid and invalid instances, a replay, a deletion).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.kafka import EventProducer, Handler, Message, Output
from adapters.store import FhirStore, open_store
from extractor.service import make_handler as extractor_handler
from loader.service import make_handler as loader_handler
from river import events
from river.engine import Engine
from river.settings import Settings
from test.conftest import (
    KAFKA,
    ROOT,
    committed,
    kafka_settings,
    kafka_topics,
    reader_from_now,
    scratch_database,
    wait_for,
    without_last_updated,
)
from test.integration.test_engine_mimic import BAD_GENDER, FEAT_6
from transformer.service import make_handler as transformer_handler

pytestmark = pytest.mark.stack

PATIENTS = [10006, 10011, 10013]


@pytest.fixture(scope="module")
def settings() -> Iterator[Settings]:
    """Topics and a store of the module's own; the engine is the shared one."""
    prefix = f"test-services-{uuid.uuid4().hex[:8]}-"
    with kafka_topics(prefix), scratch_database("river_test_services_store") as store_url:
        yield kafka_settings(kafka_topic_prefix=prefix, fhir_store_url=store_url)


@pytest.fixture(scope="module")
def store(settings: Settings) -> Iterator[FhirStore]:
    with contextlib.closing(open_store(settings.fhir_store_url)) as store:
        yield store


@pytest.fixture(scope="module")
def producer(settings: Settings) -> EventProducer:
    return EventProducer(settings)


class Topic:
    """A topic of the module's prefix, read from its end when made: a test sees
    what it produced, never what the tests before it left."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self.consumer, _ = reader_from_now(settings.kafka_topic_prefix + topic)

    def take(self, n: int, timeout: float = 30) -> list[Message]:
        """The next `n` messages, as the service loop hands them to a handler."""
        taken: list[Message] = []
        while len(taken) < n:
            more = self.consumer.consume(n - len(taken), timeout)
            assert more, f"{len(taken)} message(s) on {self.topic}, not {n}"
            for m in more:
                assert m.error() is None, m.error()
                taken.append(Message(self.topic, m.partition(), m.offset(), m.key(), m.value()))
        return taken

    def events(self, n: int) -> list[Any]:
        return [events.decode(self.topic, message.value) for message in self.take(n)]

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def topics(settings: Settings) -> Iterator[dict[str, Topic]]:
    opened = {topic: Topic(settings, topic) for topic in events.TOPICS}
    yield opened
    for topic in opened.values():
        topic.close()


def run(handler: Handler, messages: list[Message], producer: EventProducer) -> Output:
    """One poll through a handler, then the flush the service loop does before committing."""
    out = Output(producer, stopping=lambda: False)
    handler(messages, out)
    out.flush()
    return out


def extracted(
    engine: Engine,
    store: FhirStore,
    producer: EventProducer,
    topics: dict[str, Topic],
    batch_id: str,
    resource_ids: list[str],
) -> list[Message]:
    """The `extract` messages of a new batch over PATIENTS for `resource_ids`."""
    store.create_batch(batch_id, resource_ids)
    for resource_id in resource_ids:
        key = events.instance_key(resource_id, "")
        producer.send(events.BATCH, key, events.BatchEvent(batch_id, resource_id, PATIENTS))
    producer.flush()
    batch_messages = topics[events.BATCH].take(len(resource_ids))
    run(extractor_handler(engine, store), batch_messages, producer)
    return topics[events.EXTRACT].take(len(PATIENTS) * len(resource_ids))


def new_batch_id() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def test_a_poll_mixing_valid_and_invalid_instances(engine, store, producer, topics):
    """The valid instances go on as resources equal to the preview's; each invalid
    one is an error of its batch (stored and on `errors`), and nothing else fails."""
    batch_id = new_batch_id()
    poll = extracted(engine, store, producer, topics, batch_id, [FEAT_6, BAD_GENDER])

    # Every event of an instance has its key, so that its versions keep their order.
    assert {m.key for m in poll} == {
        events.instance_key(r, value) for r in (FEAT_6, BAD_GENDER) for value in PATIENTS
    }

    out = run(transformer_handler(engine, store), poll, producer)

    assert out.sent == 2 * len(PATIENTS)
    messages = topics[events.TRANSFORM].take(len(PATIENTS))
    assert {m.key for m in messages} == {events.instance_key(FEAT_6, v) for v in PATIENTS}
    sent = [decode_transform(m) for m in messages]
    preview = engine.preview(FEAT_6, PATIENTS)["instances"]
    assert sorted((without_last_updated(e.fhir_object) for e in sent), key=str) == sorted(
        (without_last_updated(r) for r in preview), key=str
    )
    assert {(e.batch_id, e.resource_id, e.deleted) for e in sent} == {(batch_id, FEAT_6, False)}
    assert sorted(e.primary_key_value for e in sent) == PATIENTS
    failed = topics[events.ERRORS].events(len(PATIENTS))
    assert sorted(e.primary_key_value for e in failed) == PATIENTS
    assert {(e.batch_id, e.resource_id, e.stage) for e in failed} == {
        (batch_id, BAD_GENDER, "transform")
    }
    assert all("gender" in e.message for e in failed), failed[0].message
    total, recorded = store.errors(batch_id)
    assert total == len(PATIENTS)
    assert {(e.resource_id, e.primary_key_value, e.stage) for e in recorded} == {
        (BAD_GENDER, value, "transform") for value in PATIENTS
    }


def test_the_loader_upserts_then_a_replay_counts_nothing_twice(engine, store, producer, topics):
    batch_id = new_batch_id()
    poll = extracted(engine, store, producer, topics, batch_id, [FEAT_6])
    run(transformer_handler(engine, store), poll, producer)
    transformed = topics[events.TRANSFORM].take(len(PATIENTS))
    resources = {e.fhir_object["id"]: e.fhir_object for e in map(decode_transform, transformed)}

    run(loader_handler(store), transformed, producer)

    load_messages = topics[events.LOAD].take(len(PATIENTS))
    assert {m.key for m in load_messages} == {m.key for m in transformed}
    loads = [events.decode(events.LOAD, m.value) for m in load_messages]
    assert {(e.batch_id, e.resource_type, e.id, e.action) for e in loads} == {
        (batch_id, "Patient", id, events.CREATED) for id in resources
    }
    for id, resource in resources.items():
        assert store.read("Patient", id) == resource

    # The same poll again (a loader killed before its commit): the resources are
    # the same, the load events say updated, and the batch counts each instance once.
    run(loader_handler(store), transformed, producer)

    again = topics[events.LOAD].events(len(PATIENTS))
    assert {(e.id, e.action) for e in again} == {(id, events.UPDATED) for id in resources}
    progress = store.batch(batch_id).resources[FEAT_6]
    assert (progress.transformed, progress.created, progress.updated, progress.failed) == (
        len(PATIENTS),
        len(PATIENTS),
        0,
        0,
    )
    assert store.batch(batch_id).status == "completed"


def decode_transform(message: Message) -> events.TransformEvent:
    return events.decode(events.TRANSFORM, message.value)


def test_an_instance_deleted_from_its_source_is_deleted_from_the_store(
    engine, store, producer, topics
):
    batch_id = new_batch_id()
    poll = extracted(engine, store, producer, topics, batch_id, [FEAT_6])
    run(transformer_handler(engine, store), poll, producer)
    run(loader_handler(store), topics[events.TRANSFORM].take(len(PATIENTS)), producer)
    topics[events.LOAD].take(len(PATIENTS))
    gone = engine.fhir_id(FEAT_6, PATIENTS[0])
    assert store.read("Patient", gone) is not None

    key = events.instance_key(FEAT_6, PATIENTS[0])
    deletion = events.ExtractEvent(batch_id, FEAT_6, "Patient", PATIENTS[0], {}, deleted=True)
    producer.send(events.EXTRACT, key, deletion)
    producer.flush()
    run(transformer_handler(engine, store), topics[events.EXTRACT].take(1), producer)
    transformed = topics[events.TRANSFORM].take(1)
    assert decode_transform(transformed[0]) == events.TransformEvent(
        batch_id,
        FEAT_6,
        {"resourceType": "Patient", "id": gone},
        deleted=True,
        primary_key_value=PATIENTS[0],
    )
    run(loader_handler(store), transformed, producer)

    (load,) = topics[events.LOAD].events(1)
    assert (load.resource_type, load.id, load.action) == ("Patient", gone, events.DELETED)
    assert store.read("Patient", gone) is None
    for value in PATIENTS[1:]:
        assert store.read("Patient", engine.fhir_id(FEAT_6, value)) is not None


def test_a_canceled_batch_is_left_alone(engine, store, producer, topics):
    batch_id = new_batch_id()
    poll = extracted(engine, store, producer, topics, batch_id, [FEAT_6])
    assert store.cancel_batch(batch_id)

    assert run(transformer_handler(engine, store), poll, producer).sent == 0
    transform = events.TransformEvent(batch_id, FEAT_6, {"resourceType": "Patient", "id": "x"})
    producer.send(events.TRANSFORM, b"k", transform)
    producer.flush()
    assert run(loader_handler(store), topics[events.TRANSFORM].take(1), producer).sent == 0
    assert store.read("Patient", "x") is None
    assert store.batch(batch_id).status == "canceled"


@pytest.mark.parametrize(
    ("topic", "stage", "make_handler"),
    [
        (events.EXTRACT, "transform", lambda engine, store: transformer_handler(engine, store)),
        (events.TRANSFORM, "load", lambda engine, store: loader_handler(store)),
    ],
)
def test_a_malformed_message_is_an_error_and_its_poll_goes_on(
    engine, store, producer, topics, topic, stage, make_handler
):
    batch_id = new_batch_id()
    poll = extracted(engine, store, producer, topics, batch_id, [FEAT_6])
    if topic == events.TRANSFORM:
        run(transformer_handler(engine, store), poll, producer)
        poll = topics[events.TRANSFORM].take(len(PATIENTS))
    malformed = Message(topic, 0, 0, b"bad", b'{"batch_id": 7}')

    out = run(make_handler(engine, store), [poll[0], malformed, *poll[1:]], producer)

    assert out.sent == len(PATIENTS) + 1
    (error,) = topics[events.ERRORS].events(1)
    assert error.stage == stage
    assert "batch_id" in error.message and "str" in error.message, error.message
    next_topic = events.TRANSFORM if topic == events.EXTRACT else events.LOAD
    assert len(topics[next_topic].take(len(PATIENTS))) == len(PATIENTS)


# A service whose handler fails with a transient error (its store down), fails for a
# while (an outage longer than the group's poll interval), has a bug, or succeeds: the
# real loop, consumer group and commits around a handler that does nothing else.
PROBE = """
import logging, sys, time
from adapters.kafka import ServiceConfig, run_service
from adapters.store import StoreUnavailable
from river.settings import Settings

logging.basicConfig(level="INFO")
mode = sys.argv[1]
started = time.monotonic()

def handle(messages, out):
    if mode == "down" or (mode == "outage" and time.monotonic() - started < 15):
        raise StoreUnavailable("the store is down (a probe)")
    if mode == "broken":
        raise RuntimeError("a bug (a probe)")
    print(f"handled {len(messages)}", flush=True)

config = ServiceConfig(
    "probe",
    ("extract",),
    max_failures=3,
    # An outage of 15 s is twice the poll interval a group allows this member.
    max_poll_interval_ms=7000,
    consumer={"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000},
)
run_service(Settings.load(env_file=None), config, handle)
"""


@pytest.fixture
def probe_settings() -> Iterator[Settings]:
    """An `extract` topic of the test's own: the probe reads it from its start."""
    prefix = f"test-probe-{uuid.uuid4().hex[:8]}-"
    with kafka_topics(prefix, (events.EXTRACT,)):
        yield kafka_settings(kafka_topic_prefix=prefix)


def send_five(settings: Settings) -> str:
    """Five messages on the probe's topic; the probe's consumer group."""
    producer = EventProducer(settings)
    for n in range(5):
        producer.send_raw(events.EXTRACT, f"k{n}".encode(), b"{}")
    producer.flush()
    return f"{settings.kafka_topic_prefix}fhir-river-probe"


def handled(text: str) -> int:
    return sum(int(n) for n in re.findall(r"handled (\d+)", text))


def probe_runner(settings: Settings, tmp_path: Path) -> Callable[..., str]:
    """run(mode, done, exit_status=0): the probe's log once `done` says so (then
    SIGTERM), or once it exits by itself when `done` is None."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": KAFKA,
        "KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "PYTHONUNBUFFERED": "1",
    }

    def run(mode: str, done: Callable[[str], bool] | None, exit_status: int = 0) -> str:
        log = tmp_path / f"{mode}.log"
        with log.open("wb") as out:
            probe = subprocess.Popen(
                [sys.executable, "-c", PROBE, mode],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if done is not None:
            wait_for(f"the probe ({mode})", lambda: done(log.read_text()))
            probe.send_signal(signal.SIGTERM)
        assert probe.wait(60) == exit_status, log.read_text()
        return log.read_text()

    return run


def test_an_outage_longer_than_the_poll_interval_keeps_the_member_and_loses_nothing(
    probe_settings, tmp_path
):
    """While the handler waits for its store, the partitions are paused and the
    consumer keeps polling: 15 s of outage with a 7 s poll interval, and the
    member is never evicted: its commit goes through, each message handled once."""
    group = send_five(probe_settings)
    text = probe_runner(probe_settings, tmp_path)("outage", lambda text: handled(text) >= 5)
    assert "the store is down (a probe)" in text
    assert handled(text) == 5, text
    assert "commit refused" not in text and "poll interval" not in text, text
    assert sum(max(offset, 0) for offset in committed(group).values()) == 5


def test_a_service_that_gives_up_on_message_after_message_stops_with_status_1(
    probe_settings, tmp_path
):
    """A bug that fails every message stops the service (exit 1, in one sentence)
    after `max_failures` in a row, instead of draining its topic into `errors`."""
    send_five(probe_settings)
    text = probe_runner(probe_settings, tmp_path)("broken", None, exit_status=1)
    assert "a bug (a probe)" in text
    assert re.search(r"probe could not process \d+ messages in a row: stopping", text), text
    assert "probe stopped" in text


def test_the_loop_commits_only_what_its_handler_finished(probe_settings, tmp_path):
    """Messages whose work failed are not committed: stopped (SIGTERM) while waiting
    for its store, the service exits at once, and the next one gets them all again."""
    group = send_five(probe_settings)

    run = probe_runner(probe_settings, tmp_path)
    text = run("down", lambda text: "retrying in" in text)
    assert "the store is down (a probe)" in text
    assert committed(group) == {0: -1, 1: -1, 2: -1}, "work that failed was committed"

    text = run("ok", lambda text: handled(text) >= 5)
    assert handled(text) == 5, text  # every message came back, none twice
    assert "probe stopped" in text
    assert sum(max(offset, 0) for offset in committed(group).values()) == 5


def test_a_resource_whose_type_names_no_table_is_a_failed_instance(store, producer, topics):
    """The loader refuses it (no table, no collection can be named after it): its batch
    counts it failed, so the batch still completes, and the rest of the poll loads."""
    batch_id = new_batch_id()
    store.create_batch(batch_id, [FEAT_6])
    store.set_expected(batch_id, FEAT_6, 2)
    store.set_extracted(batch_id, FEAT_6, 2)
    for value, resource_type in ((1, "Patient"), (2, "Patient; DROP")):
        resource = {"resourceType": resource_type, "id": f"{batch_id}-{value}"}
        event = events.TransformEvent(batch_id, FEAT_6, resource, primary_key_value=value)
        producer.send(events.TRANSFORM, events.instance_key(FEAT_6, value), event)
    producer.flush()

    run(loader_handler(store), topics[events.TRANSFORM].take(2), producer)

    (load,) = topics[events.LOAD].events(1)
    assert (load.id, load.action) == (f"{batch_id}-1", events.CREATED)
    (error,) = topics[events.ERRORS].events(1)
    assert (error.batch_id, error.primary_key_value, error.stage) == (batch_id, 2, "load")
    assert "not a FHIR resource type: 'Patient; DROP'" in error.message
    total, (recorded,) = store.errors(batch_id)
    assert (total, recorded.primary_key_value, recorded.stage) == (1, 2, "load")
    state = store.batch(batch_id)
    assert (state.resources[FEAT_6].failed, state.status) == (1, "completed")
