"""Events as the topics carry them, and where a batch stands from its counters."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from river import events
from river.batches import (
    CANCELED,
    COMPLETED,
    FAILED,
    RUNNING,
    BatchState,
    ResourceProgress,
    content_hash,
)

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
