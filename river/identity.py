"""FHIR ids and the tags that say where a resource comes from (MAPPING.md, Identity).

One rule, used by the transformer (a resource's own id), by logical references
(the id of the resource pointed at) and by the live path (the id of a deleted row).
"""

from __future__ import annotations

import uuid

SOURCE_TAG_SYSTEM = "http://terminology.arkhn.org/CodeSystem/source"
RESOURCE_TAG_SYSTEM = "http://terminology.arkhn.org/CodeSystem/resource"
LOGICAL_REFERENCE_PREFIX = "http://terminology.arkhn.org/"


def key_text(value: object) -> str:
    """A primary key value as text: a float is written without a trailing '.0'."""
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
    return str(uuid.uuid5(logical_reference, key_text(primary_key_value)))


def pyrog_logical_reference(resource_id: str) -> uuid.UUID:
    """What stands for a logical reference in Pyrog's GraphQL API, which has none."""
    return uuid.uuid5(uuid.NAMESPACE_URL, resource_id)


def logical_reference_of(system: object) -> uuid.UUID | None:
    """The UUID of an identifier system `http://terminology.arkhn.org/<UUID>`, else None."""
    if not isinstance(system, str) or not system.startswith(LOGICAL_REFERENCE_PREFIX):
        return None
    try:
        return uuid.UUID(system[len(LOGICAL_REFERENCE_PREFIX) :])
    except ValueError:
        return None
