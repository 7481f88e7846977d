"""Records from the rows of a CSV file, without SQL (a live CSV source, river/live.py).

    plans = resources_reading_file("patients.csv", plans)
    for item in csv_records(plan, "patients.csv", rows):   # rows: header first
        if isinstance(item, RowError): ...                  # a row that does not fit
        else: ...                                           # a river.sql.Record

A file feeds the resources whose primary table it is named after (`patients.csv`,
or `public.patients.csv`). Its header row names the columns (case does not
matter); an empty field is NULL. Only the primary table is in the file: a mapping
that joins another table cannot read it (`csv_refusal` says why). Filters are
applied here the way the SQL query applies them, and rows of one primary key
make one record, as joined rows do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from river.plan import Filter, ResourcePlan
from river.sql import Record

HEADER_ROW = 1  # rows are numbered as a spreadsheet shows them: the header is row 1


@dataclass(frozen=True, slots=True)
class RowError:
    """A row of the file that cannot be an instance."""

    row: int
    primary_key_value: Any
    message: str


class FileError(ValueError):
    """The file as a whole cannot feed the resource (a column missing, no header)."""


def table_of_file(file_name: str) -> str:
    """`upload/patients.CSV` -> `patients`."""
    base = file_name.rsplit("/", 1)[-1]
    return re.sub(r"\.csv$", "", base, flags=re.IGNORECASE).lower()


def resources_reading_file(file_name: str, plans: Iterable[ResourcePlan]) -> list[ResourcePlan]:
    """The resources whose primary table the file is named after."""
    table = table_of_file(file_name)
    return [
        plan
        for plan in plans
        if table
        in (
            plan.primary_table.table.lower(),
            f"{plan.primary_table.owner}.{plan.primary_table.table}".lower(),
        )
    ]


def csv_refusal(plan: ResourcePlan) -> str | None:
    """Why a resource cannot be read from a CSV file, or None if it can."""
    joined = [f"{a.owner}.{a.table}" for a in plan.aliases[1:]]
    if joined:
        return (
            f"resource {plan.resource_id} ({plan.resource_type}) joins"
            f" {', '.join(sorted(set(joined)))}: joins are not available for CSV sources,"
            f" only the file's own columns"
        )
    return None


def csv_records(
    plan: ResourcePlan, file_name: str, rows: Sequence[Sequence[Any]]
) -> Iterator[Record | RowError]:
    """The instances of the file's rows (header first), grouped by primary key.

    FileError if the file cannot feed the resource at all; a row that does not
    fit is a RowError, and the other rows go on."""
    refusal = csv_refusal(plan)
    if refusal:
        raise FileError(refusal)
    if not rows:
        return
    header = [_column_name(cell) for cell in rows[0]]
    position = {name: i for i, name in reversed(list(enumerate(header)))}
    needed = [sql.column.column for sql in plan.columns] + [
        f.input.column.column for f in plan.filters
    ]
    missing = sorted({c for c in needed if c.lower() not in position})
    if missing:
        raise FileError(
            f"file {file_name} has no column {', '.join(missing)} in its header row,"
            f" which resource {plan.resource_id} ({plan.resource_type}) reads"
        )
    picks = [position[sql.column.column.lower()] for sql in plan.columns]
    filters = [(position[f.input.column.column.lower()], f) for f in plan.filters]
    labels = [sql.label for sql in plan.columns]
    records: dict[Any, dict[str, list[Any]]] = {}
    for number, row in enumerate(rows[1:], start=HEADER_ROW + 1):
        if len(row) != len(header):
            yield RowError(
                number,
                _value(row[picks[0]]) if len(row) > picks[0] else None,
                f"file {file_name}, row {number}: {len(row)} field(s) where the header"
                f" names {len(header)}",
            )
            continue
        values = [_value(row[i]) for i in picks]
        key = values[0]
        if key is None:
            yield RowError(
                number,
                None,
                f"file {file_name}, row {number}: no value in the primary key column"
                f" {plan.primary_key.column.column}",
            )
            continue
        if not all(_passes(f, _value(row[i])) for i, f in filters):
            continue
        columns = records.get(key)
        if columns is None:
            records[key] = {label: [value] for label, value in zip(labels, values, strict=True)}
        else:
            for label, value in zip(labels, values, strict=True):
                columns[label].append(value)
    for key, columns in records.items():
        yield Record(key, columns)


def _column_name(cell: Any) -> str:
    return str(cell or "").strip().lstrip("\ufeff").lower()


def _value(cell: Any) -> Any:
    if cell is None:
        return None
    text = str(cell)
    return None if text == "" else text


def _passes(filter_: Filter, value: str | None) -> bool:
    """A filter as SQL would apply it: NULL passes no comparison; numbers compare as numbers."""
    if value is None:
        return False
    relation = filter_.relation
    if relation == "LIKE":
        pattern = "".join(
            ".*" if c == "%" else "." if c == "_" else re.escape(c) for c in filter_.value
        )
        return re.fullmatch(pattern, value, re.DOTALL) is not None
    if relation == "IN":
        return any(_compare(value, v.strip()) == 0 for v in filter_.value.split(","))
    if relation == "BETWEEN":
        low, _, high = filter_.value.partition(",")
        return _compare(value, low.strip()) >= 0 and _compare(value, high.strip()) <= 0
    order = _compare(value, filter_.value)
    return {
        "=": order == 0,
        "<>": order != 0,
        "<": order < 0,
        "<=": order <= 0,
        ">": order > 0,
        ">=": order >= 0,
    }[relation]


def _compare(left: str, right: str) -> int:
    try:
        a: Any = float(left)
        b: Any = float(right)
    except ValueError:
        a, b = left, right
    return (a > b) - (a < b)
