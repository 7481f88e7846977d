"""The errors FHIR River reports to its users.

Each carries what a user needs to fix the input: which mapping, resource,
attribute or row is at fault. Services and the command line turn them into
one clear sentence (or one line per fault), never a stack trace.
"""

from __future__ import annotations

from dataclasses import dataclass


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
