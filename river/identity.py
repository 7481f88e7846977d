"""FHIR ids and the tags that say where a resource comes from (docs/mapping.md).

One rule, used by the transformer (a resource's own id), by logical references
(the id of the resource pointed at) and by the live path (the id of a deleted row).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from functools import lru_cache
from typing import Any

SOURCE_TAG_SYSTEM = "http://terminology.arkhn.org/CodeSystem/source"
RESOURCE_TAG_SYSTEM = "http://terminology.arkhn.org/CodeSystem/resource"
LOGICAL_REFERENCE_PREFIX = "http://terminology.arkhn.org/"


def key_text(value: object) -> str:
    """A primary key value as text: a float is written without a trailing '.0'."""
    if type(value) is int:
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return value
    text = str(value)
    # Decimal('10.0') and friends: same rule as floats.
    if text.endswith(".0") and text[:-2].lstrip("-").isdigit():
        return text[:-2]
    return text


def fhir_id(logical_reference: uuid.UUID, primary_key_value: object) -> str:
    """The FHIR id of the row whose primary key is `primary_key_value`."""
    return id_maker(logical_reference)(primary_key_value)


@lru_cache(maxsize=4096)
def id_maker(logical_reference: uuid.UUID) -> Callable[[object], str]:
    """`fhir_id` bound to one logical reference: the transformer's hot path.

    Equal to `str(uuid.uuid5(logical_reference, key_text(value)))`, without
    building UUID objects (three times faster, and ids are made per row).
    """
    namespace = logical_reference.bytes
    sha1 = hashlib.sha1

    def make(value: object) -> str:
        text = value if type(value) is str else key_text(value)
        digest = bytearray(sha1(namespace + text.encode()).digest()[:16])
        digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
        digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
        x = digest.hex()
        return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"

    return make


def pyrog_logical_reference(resource_id: str) -> uuid.UUID:
    """What stands for a logical reference in Pyrog's GraphQL API, which has none."""
    return uuid.uuid5(uuid.NAMESPACE_URL, resource_id)


def logical_reference_of(system: object) -> uuid.UUID | None:
    """The UUID of an identifier system `http://terminology.arkhn.org/<UUID>`, else None."""
    if not isinstance(system, str) or not system.startswith(LOGICAL_REFERENCE_PREFIX):
        return None
    return _parse_reference(system[len(LOGICAL_REFERENCE_PREFIX) :])


@lru_cache(maxsize=4096)
def _parse_reference(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def resolve_reference(node: dict[str, Any]) -> None:
    """Give a logical reference its `reference` (docs/mapping.md, References).

    `node` is a Reference element: when it has a `type` and an identifier whose
    system is `http://terminology.arkhn.org/<UUID>`, its `reference` becomes
    `<type>/<the id the referenced mapping gives that identifier's value>`.
    """
    identifier = node.get("identifier")
    if type(identifier) is not dict or "type" not in node or "value" not in identifier:
        return
    system = identifier.get("system")
    if type(system) is not str:
        return
    make = _reference_maker(system)
    if make is not None:
        node["reference"] = f"{node['type']}/{make(identifier['value'])}"


@lru_cache(maxsize=1024)
def _reference_maker(system: str) -> Callable[[object], str] | None:
    target = logical_reference_of(system)
    if target is None:
        return None
    make = id_maker(target)
    # Many rows point at the same few patients and encounters: remember their ids.
    known: dict[object, str] = {}

    def reference(value: object) -> str:
        made = known.get(value)
        if made is None:
            if len(known) >= 100_000:
                known.clear()
            made = known[value] = make(value)
        return made

    return reference
