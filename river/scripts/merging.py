"""Merging scripts: one value from the values of an input group.

They are called with the group's SQL input values then its static values,
in mapping order. Empty values (None, "" and blank text) are ignored by
every one; when nothing is left they return None. `merge_datetime`, which
needs the source's time zone, lives in `river.scripts.temporal`.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Callable, Sequence
from typing import Any


def merge_concat(*values: Any) -> str | None:
    """The values as text joined by one space: `merge_concat("Jean", None, 12.0)`
    -> `"Jean 12"`. Numbers lose a trailing ".0", booleans are `true`/`false`,
    dates and times are ISO 8601.
    """
    parts = [as_text(value) for value in values if not _is_empty(value)]
    return " ".join(parts) if parts else None


def merge_concat_without_separator(*values: Any) -> str | None:
    """The values as text (as `merge_concat` writes them), joined without separator."""
    parts = [as_text(value) for value in values if not _is_empty(value)]
    return "".join(parts) if parts else None


def select_first_not_empty(*values: Any) -> Any:
    """The first value that is not empty, as it is."""
    for value in values:
        if not _is_empty(value):
            return value
    return None


def select_max(*values: Any) -> Any:
    """The greatest value, as it is. See `select_min` for how values compare."""
    return _select(values, max)


def select_min(*values: Any) -> Any:
    """The least value, as it is.

    Numbers, and text that reads as a number, compare as numbers (so a static
    value "10" compares with a column's integers); otherwise values compare as
    their text (`as_text`), which orders ISO dates and date-times in time.
    """
    return _select(values, min)


def as_text(value: Any) -> str:
    """How merging scripts write a value: text as it is, numbers without a
    trailing ".0", booleans `true`/`false`, dates, date-times and times in ISO 8601.
    """
    kind = type(value)
    if kind is str:
        return value
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float or kind is decimal.Decimal:
        if math.isfinite(value) and value == int(value):
            return str(int(value))
        return str(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


# -- below: helpers ----------------------------------------------------------------------


def _is_empty(value: Any) -> bool:
    return value is None or (type(value) is str and (not value or value.isspace()))


def _select(values: Sequence[Any], pick: Callable[..., int]) -> Any:
    present = [value for value in values if not _is_empty(value)]
    if not present:
        return None
    keys = _numbers(present)
    if keys is None:
        keys = [as_text(value) for value in present]
    return present[pick(range(len(present)), key=keys.__getitem__)]


def _numbers(values: list[Any]) -> list[Any] | None:
    """The values as numbers, or None if one of them is no number."""
    numbers: list[Any] = []
    for value in values:
        kind = type(value)
        if kind is int or kind is float or kind is decimal.Decimal:
            number = value
        elif kind is str:
            try:
                number = float(value.strip().replace(",", "."))
            except ValueError:
                return None
        else:
            return None
        if number != number:  # NaN orders nothing
            return None
        numbers.append(number)
    return numbers
