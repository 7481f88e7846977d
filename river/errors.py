"""The errors FHIR River reports to its users.

Each carries what a user needs to fix the input: which mapping, resource,
attribute or row is at fault. Services and the command line turn them into
one clear sentence (or one line per fault), never a stack trace.

No patient data where it does not belong: a message names the resource, the
primary key value (the one identifier errors carry), the attribute, element or
column, the script or rule and the kind of problem, never a source value. Where
the value's shape helps, `shape_of` says it: "a text of 14 characters", "a whole
number of 12 digits". Scripts and casts raise `BadValue`, whose message is worded
so; any other exception of a script is shown by its type alone (its message may
quote the value).
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from dataclasses import dataclass
from typing import Any


class RiverError(Exception):
    """Base of every error FHIR River reports to a user."""


@dataclass(frozen=True)
class MappingFault:
    """One thing wrong in a mapping: where it is and what is wrong."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class InvalidMapping(RiverError):
    """A mapping refused as a whole; `faults` lists every problem found."""

    def __init__(self, source: str, faults: list[MappingFault]) -> None:
        self.source = source
        self.faults = faults
        lines = "\n".join(f"  - {fault}" for fault in faults)
        super().__init__(f"invalid mapping {source} ({len(faults)} problem(s)):\n{lines}")


class UnknownResource(RiverError):
    """A resource id that no loaded mapping defines."""

    def __init__(self, resource_id: str, known: list[str]) -> None:
        self.resource_id = resource_id
        hint = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "")
        super().__init__(f"unknown resource id {resource_id!r}; the mappings define: {hint}")


class SourceError(RiverError):
    """The source database cannot answer: unreachable, or missing a table or column."""


class InvalidValue(SourceError):
    """A value that cannot be read as its column's type: a primary key value given
    by a user (`1.5` for an integer key) or a filter value written in a mapping."""


class SourceUnavailable(SourceError):
    """The source database cannot be reached now: worth retrying later."""


class ConfigurationError(RiverError):
    """A setting is missing or wrong (file not found, malformed value...)."""


class InstanceError(RiverError):
    """A problem with one instance: it is reported and the others go on."""

    def __init__(self, message: str, attribute: str | None = None) -> None:
        self.attribute = attribute
        super().__init__(f"attribute {attribute}: {message}" if attribute else message)


class BadValue(ValueError):
    """A value a script or a cast cannot take, said without quoting it (`a date that
    does not exist`, `not a whole number`): its message is shown to users as it is.
    User scripts may raise it too (`from river.scripts import BadValue`)."""


def shape_of(value: Any) -> str:
    """What a value is, never what it holds: its type and size, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        digits = len(str(abs(value)))
        return f"a whole number of {digits} digit{'s' if digits > 1 else ''}"
    if isinstance(value, float | decimal.Decimal):
        if value != value:  # noqa: PLR0124 (NaN)
            return "NaN"
        if not math.isfinite(value):
            return "an infinite number"
        return "a decimal number"
    if isinstance(value, str):
        if not value:
            return "an empty text"
        n = len(value)
        kind = "a blank text" if value.isspace() else "a text"
        return f"{kind} of {n} character{'s' if n > 1 else ''}"
    if isinstance(value, dt.datetime):
        return "a date-time"
    if isinstance(value, dt.date):
        return "a date"
    if isinstance(value, dt.time):
        return "a time of day"
    if isinstance(value, dt.timedelta):
        return "a duration"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"binary data of {len(value)} bytes"
    if isinstance(value, list | tuple):
        n = len(value)
        return f"a list of {n} value{'s' if n != 1 else ''}"
    if isinstance(value, dict):
        return "an object"
    return f"a value of type {type(value).__name__}"


def shapes_of(values: Any) -> str:
    """The shapes of a script's arguments: `(a text of 10 characters, null)`."""
    return "(" + ", ".join(shape_of(value) for value in values) + ")"
