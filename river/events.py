"""The events that flow between the services (DESIGN.md, Events), as plain data.

    value = encode(TransformEvent(batch_id, resource_id, resource))
    event = decode("transform", value)      # raises BadEvent, naming what is wrong

Values are JSON (UTF-8). The key of an instance's events is
`<resource_id>:<primary key value>`, so every version of one instance lands
on one partition, in order.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any

import orjson

from river.errors import RiverError

BATCH, EXTRACT, TRANSFORM, LOAD, ERRORS = "batch", "extract", "transform", "load", "errors"
TOPICS = (BATCH, EXTRACT, TRANSFORM, LOAD, ERRORS)

CREATED, UPDATED, DELETED = "created", "updated", "deleted"


class BadEvent(RiverError):
    """A message that cannot be read as the event its topic carries."""


@dataclass(frozen=True, slots=True)
class BatchEvent:
    batch_id: str
    resource_id: str
    primary_key_values: list[Any] | None = None  # None: every row


@dataclass(frozen=True, slots=True)
class ExtractEvent:
    batch_id: str
    resource_id: str
    resource_type: str
    primary_key_value: Any
    record: dict[str, list[Any]]  # column label -> one value per joined row
    deleted: bool = False  # the instance is gone from the source (live): record is {}


@dataclass(frozen=True, slots=True)
class TransformEvent:
    batch_id: str
    resource_id: str
    fhir_object: dict[str, Any]
    deleted: bool = False  # delete it: fhir_object holds only resourceType and id


@dataclass(frozen=True, slots=True)
class LoadEvent:
    batch_id: str
    resource_id: str
    resource_type: str
    id: str
    action: str  # created, updated or deleted


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    batch_id: str | None
    resource_id: str | None
    primary_key_value: Any
    stage: str  # extract, transform, load, or the topic a bad message came from
    message: str


Event = BatchEvent | ExtractEvent | TransformEvent | LoadEvent | ErrorEvent
EVENT_TYPES: dict[str, type] = {
    BATCH: BatchEvent,
    EXTRACT: ExtractEvent,
    TRANSFORM: TransformEvent,
    LOAD: LoadEvent,
    ERRORS: ErrorEvent,
}
_REQUIRED = {
    name: [f.name for f in fields(kind) if f.default is MISSING]
    for name, kind in EVENT_TYPES.items()
}
_FIELDS = {name: frozenset(f.name for f in fields(kind)) for name, kind in EVENT_TYPES.items()}


def instance_key(resource_id: str, primary_key_value: Any) -> bytes:
    return f"{resource_id}:{primary_key_value}".encode()


def encode(event: Event) -> bytes:
    # orjson writes dataclasses itself; asdict would deep-copy every resource first.
    return orjson.dumps(event)


def decode(topic: str, value: bytes | None) -> Event:
    """The event of a message of `topic` (without any prefix); BadEvent if malformed."""
    kind = EVENT_TYPES[topic]
    if value is None:
        raise BadEvent(f"empty message on topic {topic}")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        raise BadEvent(f"message on topic {topic} is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise BadEvent(f"message on topic {topic} is not a JSON object")
    missing = [name for name in _REQUIRED[topic] if name not in data]
    if missing:
        raise BadEvent(f"message on topic {topic} lacks {', '.join(missing)}")
    known = _FIELDS[topic]
    if data.keys() <= known:
        event = kind(**data)
    else:  # fields this version does not know are ignored
        event = kind(**{k: v for k, v in data.items() if k in known})
    _check_types(topic, event)
    return event


def _check_types(topic: str, event: Event) -> None:
    problems = []
    if not isinstance(event.batch_id, str) and not (topic == ERRORS and event.batch_id is None):
        problems.append("batch_id must be a string")
    if (
        isinstance(event, BatchEvent)
        and event.primary_key_values is not None
        and not isinstance(event.primary_key_values, list)
    ):
        problems.append("primary_key_values must be a list or null")
    if isinstance(event, ExtractEvent) and not (
        isinstance(event.record, dict) and all(isinstance(v, list) for v in event.record.values())
    ):
        problems.append("record must map each column to a list of values")
    if isinstance(event, ExtractEvent | TransformEvent) and not isinstance(event.deleted, bool):
        problems.append("deleted must be true or false")
    if isinstance(event, TransformEvent) and not (
        isinstance(event.fhir_object, dict)
        and isinstance(event.fhir_object.get("resourceType"), str)
        and isinstance(event.fhir_object.get("id"), str)
    ):
        problems.append("fhir_object must be a FHIR resource with a resourceType and an id")
    if problems:
        raise BadEvent(f"message on topic {topic}: {'; '.join(problems)}")
