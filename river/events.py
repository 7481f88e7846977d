"""The events that flow between the services (docs/architecture.md), as plain data.

    value = encode(TransformEvent(batch_id, resource_id, resource))
    event = decode("transform", value)      # raises BadEvent, naming what is wrong

Values are JSON (UTF-8). The key of an instance's events is
`<resource_id>:<primary key value>`, so every version of one instance lands
on one partition, in order.
"""

from __future__ import annotations

from typing import Any

import msgspec

from river.errors import RiverError

BATCH, EXTRACT, TRANSFORM, LOAD, ERRORS = "batch", "extract", "transform", "load", "errors"
# Live changes go between the stages on topics of their own, read by consumer groups
# of their own (`<service>-live`): a change never waits behind a batch's instances.
EXTRACT_LIVE, TRANSFORM_LIVE = "extract-live", "transform-live"
TOPICS = (BATCH, EXTRACT, TRANSFORM, LOAD, ERRORS, EXTRACT_LIVE, TRANSFORM_LIVE)

CREATED, UPDATED, DELETED = "created", "updated", "deleted"


class BadEvent(RiverError):
    """A message that cannot be read as the event its topic carries."""


# msgspec Structs rather than dataclasses: every resource passes through three of
# them, and msgspec decodes and type-checks a message in one step, about three
# times faster than JSON parsing then building a frozen dataclass (the profile of
# the transformer and loader showed that step among their largest).
class BatchEvent(msgspec.Struct, frozen=True):
    batch_id: str
    resource_id: str
    primary_key_values: list[Any] | None = None  # None: every row


class ExtractEvent(msgspec.Struct, frozen=True):
    batch_id: str
    resource_id: str
    resource_type: str
    primary_key_value: Any
    record: dict[str, list[Any]]  # column label -> one value per joined row
    deleted: bool = False  # the instance is gone from the source (live): record is {}
    # Live: when Kafka Connect recorded the change (seconds since the epoch), for the
    # change-to-store latency the loader measures; None in batches.
    changed_at: float | None = None
    # When the extractor asked the source for this version (seconds since the epoch,
    # just before its query: the query's snapshot is no older). The store keeps it per
    # resource and never lets an older reading overwrite a newer one: a batch's
    # instance, extracted before a live change, may reach the loader after it.
    read_at: float | None = None


class TransformEvent(msgspec.Struct, frozen=True):
    batch_id: str
    resource_id: str
    fhir_object: dict[str, Any]
    deleted: bool = False  # delete it: fhir_object holds only resourceType and id
    # The instance's, so that a resource the loader cannot load is a failed instance
    # that a retry extracts again (None in events of versions before it).
    primary_key_value: Any = None
    changed_at: float | None = None  # the ExtractEvent's (live changes only)
    read_at: float | None = None  # the ExtractEvent's

    def __post_init__(self) -> None:
        if not (
            isinstance(self.fhir_object.get("resourceType"), str)
            and isinstance(self.fhir_object.get("id"), str)
        ):
            raise ValueError("fhir_object must be a FHIR resource with a resourceType and an id")


class LoadEvent(msgspec.Struct, frozen=True):
    batch_id: str
    resource_id: str
    resource_type: str
    id: str
    action: str  # created, updated or deleted


class ErrorEvent(msgspec.Struct, frozen=True):
    """An instance's error (or a message's, when it is no event): the store keeps
    it as such (`adapters.store.InstanceError`) and `errors` carries it."""

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
    EXTRACT_LIVE: ExtractEvent,
    TRANSFORM_LIVE: TransformEvent,
    LOAD: LoadEvent,
    ERRORS: ErrorEvent,
}
# Fields this version does not know are ignored (msgspec's default): an older
# service reads what a newer one wrote.
_DECODERS = {topic: msgspec.json.Decoder(kind) for topic, kind in EVENT_TYPES.items()}
_ENCODER = msgspec.json.Encoder()


def instance_key(resource_id: str, primary_key_value: Any) -> bytes:
    return f"{resource_id}:{primary_key_value}".encode()


def encode(event: Event) -> bytes:
    return _ENCODER.encode(event)


def decode(topic: str, value: bytes | None) -> Event:
    """The event of a message of `topic` (without any prefix); BadEvent if malformed."""
    if value is None:
        raise BadEvent(f"empty message on topic {topic}")
    try:
        return _DECODERS[topic].decode(value)
    except msgspec.ValidationError as error:  # names the field: "... - at `$.batch_id`"
        raise BadEvent(f"message on topic {topic}: {error}") from None
    except msgspec.DecodeError as error:
        raise BadEvent(f"message on topic {topic} is not JSON: {error}") from None
