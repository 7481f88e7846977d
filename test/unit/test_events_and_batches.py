"""Events as the topics carry them, and where a batch stands from its counters."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson
import pytest

from river import events
from river.batches import (
    CANCELED,
    COMPLETED,
    EXTRACT,
    FAILED,
    LOAD,
    RUNNING,
    STALLED,
    TRANSFORM,
    BatchState,
    ResourceProgress,
    content_hash,
    stall,
    stalled_stage,
)
from river.errors import ConfigurationError
from river.settings import Settings

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_events_round_trip_with_instance_keys():
    event = events.ExtractEvent("b1", "r1", "Patient", 10006, {"patients.subject_id": [10006]})
    assert events.decode(events.EXTRACT, events.encode(event)) == event
    assert events.instance_key("r1", 10006) == b"r1:10006"
    batch = events.decode(events.BATCH, b'{"batch_id": "b1", "resource_id": "r1"}')
    assert batch.primary_key_values is None
    # a field this version does not know (a newer service wrote it) is ignored
    newer = events.decode(events.BATCH, b'{"batch_id": "b1", "resource_id": "r1", "since": 3}')
    assert newer == events.BatchEvent("b1", "r1")


@pytest.mark.parametrize(
    ("topic", "value", "message"),
    [
        (events.BATCH, None, "empty message on topic batch"),
        (events.BATCH, b"{not json", "message on topic batch is not JSON"),
        (events.BATCH, b"[1]", "message on topic batch: Expected `object`, got `array`"),
        (
            events.EXTRACT,
            b'{"batch_id": "b"}',
            "message on topic extract: Object missing required field `resource_id`",
        ),
        (
            events.BATCH,
            b'{"batch_id": 1, "resource_id": "r"}',
            "message on topic batch: Expected `str`, got `int` - at `$.batch_id`",
        ),
        (
            events.BATCH,
            b'{"batch_id": "b", "resource_id": "r", "primary_key_values": "1"}',
            "Expected `array | null`, got `str` - at `$.primary_key_values`",
        ),
        (
            events.EXTRACT,
            orjson.dumps(
                {
                    "batch_id": "b",
                    "resource_id": "r",
                    "resource_type": "P",
                    "primary_key_value": 1,
                    "record": {"a": 1},
                }
            ),
            "Expected `array`, got `int` - at `$.record[...]`",
        ),
        (
            events.TRANSFORM,
            b'{"batch_id": "b", "resource_id": "r", "fhir_object": {"id": "x"}}',
            "fhir_object must be a FHIR resource with a resourceType and an id",
        ),
        (
            events.TRANSFORM,
            b'{"batch_id": "b", "resource_id": "r", "fhir_object": {"resourceType": "Patient",'
            b' "id": "x"}, "deleted": "no"}',
            "Expected `bool`, got `str` - at `$.deleted`",
        ),
    ],
)
def test_malformed_messages_are_bad_events_that_say_why(topic, value, message):
    with pytest.raises(events.BadEvent) as bad:
        events.decode(topic, value)
    assert message in str(bad.value)


def state(**resources: ResourceProgress) -> BatchState:
    return BatchState(
        "b1", list(resources), T0, T0 + dt.timedelta(seconds=5), resources=dict(resources)
    )


def test_status_from_counters():
    assert state(r=ResourceProgress("r")).status == RUNNING  # expected not known yet
    assert state(r=ResourceProgress("r", expected=3, created=1, updated=1)).status == RUNNING
    done = state(r=ResourceProgress("r", expected=3, created=1, updated=1, failed=1))
    assert done.status == COMPLETED
    assert done.as_json()["duration_seconds"] == 5.0
    assert done.as_json()["resources"][0]["loaded"] == 2
    assert state(r=ResourceProgress("r", expected=0)).status == COMPLETED
    mixed = state(
        a=ResourceProgress("a", expected=1, created=1), b=ResourceProgress("b", error="no table")
    )
    assert mixed.status == FAILED
    assert mixed.as_json()["resources"][1] == {
        **mixed.as_json()["resources"][1],
        "status": FAILED,
        "error": "no table",
    }
    canceled = state(r=ResourceProgress("r", expected=3, created=1))
    canceled.canceled_at = T0 + dt.timedelta(seconds=2)
    assert canceled.status == CANCELED
    assert canceled.as_json()["duration_seconds"] == 2.0
    assert canceled.as_json()["resources"][0]["status"] == CANCELED


def seconds(n: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=n)


@pytest.mark.parametrize(
    ("progress", "stage", "where"),
    [
        (ResourceProgress("r"), EXTRACT, "the instances to extract not counted yet"),
        (
            ResourceProgress("r", expected=1968, extracted=1000),
            EXTRACT,
            "1,000 of 1,968 expected instances extracted",
        ),
        (
            ResourceProgress("r", expected=1968, extracted=1968, transformed=1934),
            TRANSFORM,
            "1,934 of 1,968 extracted instances transformed and loaded",
        ),
        (
            ResourceProgress("r", expected=1968, extracted=1968, transformed=1930, failed=4),
            TRANSFORM,
            "1,934 of 1,968 extracted instances transformed and loaded or failed",
        ),
        (
            # everything transformed or failed, but the loads fall short of expected
            ResourceProgress("r", expected=10, extracted=10, transformed=9, created=8, failed=1),
            LOAD,
            "9 of 10 expected instances loaded or failed",
        ),
    ],
)
def test_a_running_resource_without_progress_stalls_at_its_stage(progress, stage, where):
    assert stalled_stage(progress) == stage
    found = stall(progress, last_progress=T0, now=seconds(412.3), after_seconds=300)
    assert found is not None
    assert (found.stage, found.idle_seconds) == (stage, 412.3)
    assert found.reason == f"no progress for 412 s; stopped at stage {stage} ({where})"


def test_no_stall_before_the_threshold_nor_for_an_ended_resource():
    moving = ResourceProgress("r", expected=5, extracted=2)
    assert stall(moving, T0, seconds(299.9), 300) is None
    assert stall(moving, T0, seconds(300), 300) is not None
    assert stall(moving, seconds(200), seconds(499.9), 300) is None  # it moved at 200 s
    done = ResourceProgress("r", expected=2, extracted=2, transformed=2, created=2)
    assert stall(done, T0, seconds(10_000), 300) is None
    failed = ResourceProgress("r", error="no table")
    assert stall(failed, T0, seconds(10_000), 300) is None


def test_a_batch_shows_its_stalled_resources_but_stays_running():
    stuck = ResourceProgress(
        "stuck", expected=1968, extracted=1968, transformed=1934, progressed_at=seconds(10)
    )
    moving = ResourceProgress("moving", expected=5, extracted=3, progressed_at=seconds(400))
    done = ResourceProgress("done", expected=1, extracted=1, transformed=1, created=1)
    batch = state(stuck=stuck, moving=moving, done=done)
    shown = batch.as_json(stalled_after=300, now=seconds(422))
    assert batch.status == shown["status"] == RUNNING and shown["ended_at"] is None
    assert shown["stalled"] is True
    by_id = {r["resource_id"]: r for r in shown["resources"]}
    assert by_id["stuck"] | {"reason": None} == {
        "resource_id": "stuck",
        "status": STALLED,
        "stalled_at_stage": TRANSFORM,
        "reason": None,
        "expected": 1968,
        "extracted": 1968,
        "transformed": 1934,
        "loaded": 0,
        "created": 0,
        "updated": 0,
        "deleted": 0,
        "failed": 0,
    }
    assert by_id["stuck"]["reason"] == (
        "no progress for 412 s; stopped at stage transform"
        " (1,934 of 1,968 extracted instances transformed and loaded)"
    )
    assert by_id["moving"]["status"] == RUNNING and "reason" not in by_id["moving"]
    assert by_id["done"]["status"] == COMPLETED and "stalled_at_stage" not in by_id["done"]
    assert set(batch.stalls(seconds(422), 300)) == {"stuck"}

    # Without a threshold (or with 0) nothing is judged: the store's own view.
    for after in (None, 0):
        plain = batch.as_json(stalled_after=after, now=seconds(422))
        assert "stalled" not in plain
        assert [r["status"] for r in plain["resources"]] == [RUNNING, RUNNING, COMPLETED]


def test_a_resource_that_never_moved_counts_from_the_batch_last_change():
    # state(): created at T0, last changed at T0 + 5 s; "waiting" has no progress time.
    batch = state(waiting=ResourceProgress("waiting"))
    assert batch.stalls(seconds(304.9), 300) == {}
    [(resource_id, found)] = batch.stalls(seconds(305), 300).items()
    assert resource_id == "waiting" and found.stage == EXTRACT
    assert found.reason == (
        "no progress for 300 s; stopped at stage extract (the instances to extract not counted yet)"
    )
    # A resource the store never wrote a row for stalls the same way.
    unknown = BatchState("b1", ["r"], T0, T0)
    assert unknown.as_json(stalled_after=60, now=seconds(61))["resources"][0]["status"] == STALLED


def test_live_and_canceled_batches_never_stall():
    stuck = ResourceProgress("r", expected=5, extracted=2, progressed_at=T0)
    live = state(r=stuck)
    live.live = True
    assert live.stalls(seconds(10_000), 300) == {}
    assert "stalled" not in live.as_json(stalled_after=300, now=seconds(10_000))
    canceled = state(r=stuck)
    canceled.canceled_at = seconds(1)
    shown = canceled.as_json(stalled_after=300, now=seconds(10_000))
    assert "stalled" not in shown and shown["resources"][0]["status"] == CANCELED


def test_the_stalled_threshold_is_a_setting(tmp_path, monkeypatch):
    monkeypatch.delenv("STALLED_AFTER_SECONDS", raising=False)
    assert Settings.load(None).stalled_after_seconds == 300
    example = Path(__file__).resolve().parents[2] / ".env.example"
    assert Settings.load(example).stalled_after_seconds == 300  # the same default
    env_file = tmp_path / ".env"
    env_file.write_text("STALLED_AFTER_SECONDS=45\n")
    assert Settings.load(env_file).stalled_after_seconds == 45
    monkeypatch.setenv("STALLED_AFTER_SECONDS", "soon")
    with pytest.raises(ConfigurationError, match="STALLED_AFTER_SECONDS must be a whole number"):
        Settings.load(None)


def test_content_hash_ignores_last_updated_only():
    a = {
        "resourceType": "Patient",
        "id": "1",
        "meta": {"lastUpdated": "2026-01-01T00:00:00+00:00", "tag": [1]},
    }
    b = {
        "resourceType": "Patient",
        "id": "1",
        "meta": {"tag": [1], "lastUpdated": "2027-01-01T00:00:00+00:00"},
    }
    c = {**b, "gender": "male"}
    assert content_hash(a) == content_hash(b) != content_hash(c)
