"""The compiled plan: a mapping resource analysed once into plain data.

`river.mapping` builds these from a Pyrog export; extraction (`river.sql`)
and transformation (`river.transform`) then only run them, never re-reading
the mapping. Everything here is immutable and holds no connection or state.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

# Attribute types cast to a JSON number or boolean (docs/mapping.md, Each SQL input);
# every other FHIR type becomes a string.
INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt", "integer64"})
DECIMAL_TYPES = frozenset({"decimal"})
BOOLEAN_TYPES = frozenset({"boolean"})

_STEP = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?$")


@dataclass(frozen=True, slots=True)
class Column:
    """A source column: `owner` is the SQL schema."""

    owner: str
    table: str
    column: str

    def __str__(self) -> str:
        return f"{self.owner}.{self.table}.{self.column}"


@dataclass(frozen=True, slots=True)
class Join:
    """One hop of a join chain: LEFT OUTER JOIN ... ON left = right."""

    left: Column
    right: Column


@dataclass(frozen=True, slots=True)
class TableAlias:
    """A table as the query sees it: the primary table, or one reached by a join chain.

    `chain` is the whole chain from the primary table; two inputs with the same
    chain share one alias, so each join is made once.
    """

    name: str
    owner: str
    table: str
    chain: tuple[Join, ...] = ()
    parent: str | None = None  # alias the last join starts from
    on_left: str = ""  # column of the parent alias
    on_right: str = ""  # column of this alias


@dataclass(frozen=True, slots=True)
class SqlInput:
    """A value read from a column: `label` is its key in an extracted record."""

    label: str
    column: Column
    alias: str
    script: str | None = None
    concept_map_id: str | None = None
    per_row: bool = False  # reached through a join: one value per joined row


@dataclass(frozen=True, slots=True)
class Condition:
    include: bool
    relation: str  # EQ NEQ LT LE GT GE IN NULL NOTNULL
    value: str
    input: SqlInput


@dataclass(frozen=True, slots=True)
class InputGroup:
    id: str
    merging_script: str | None
    static_values: tuple[str, ...]
    sql_inputs: tuple[SqlInput, ...]
    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Step:
    """One element of a FHIR path: `name`, or `name[index]` when `index` is set."""

    name: str
    index: int | None = None

    def __str__(self) -> str:
        return self.name if self.index is None else f"{self.name}[{self.index}]"


@dataclass(frozen=True, slots=True)
class Attribute:
    """A leaf of the resource: its path, FHIR type and input groups."""

    path: str
    steps: tuple[Step, ...]
    fhir_type: str
    slice_name: str
    groups: tuple[InputGroup, ...]
    per_row: bool  # some input or condition comes through a join


@dataclass(frozen=True, slots=True)
class Filter:
    relation: str  # = <> < <= > >= IN BETWEEN LIKE
    value: str
    input: SqlInput


@dataclass(frozen=True)
class ResourcePlan:
    """Everything needed to extract and transform one mapping resource."""

    resource_id: str
    label: str
    source_id: str
    source_name: str
    resource_type: str
    definition_id: str
    profile_url: str | None
    logical_reference: uuid.UUID
    primary_key: SqlInput
    aliases: tuple[TableAlias, ...]  # the primary table first, then joins in order
    columns: tuple[SqlInput, ...]  # every distinct column the query selects
    filters: tuple[Filter, ...]
    attributes: tuple[Attribute, ...]
    reference_paths: tuple[tuple[Step, ...], ...]
    concept_map_ids: frozenset[str] = field(default_factory=frozenset)
    # Inputs no join reaches: a valid mapping, but extraction refuses it.
    unreachable: tuple[str, ...] = ()

    @property
    def primary_table(self) -> TableAlias:
        return self.aliases[0]

    @property
    def tables(self) -> frozenset[tuple[str, str]]:
        """(owner, table) of every table the resource reads, filters included."""
        return frozenset((alias.owner, alias.table) for alias in self.aliases)


def parse_path(path: str) -> tuple[Step, ...]:
    """`name[0].given[1]` -> (Step('name', 0), Step('given', 1)); ValueError if malformed."""
    if not path:
        raise ValueError("empty path")
    steps = []
    for part in path.split("."):
        match = _STEP.match(part)
        if not match:
            raise ValueError(f"malformed path {path!r} at {part!r}")
        name, index = match.groups()
        steps.append(Step(name, int(index) if index is not None else None))
    return tuple(steps)
