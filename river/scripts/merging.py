"""Merging scripts: one value from the values of an input group.

They are called with the group's SQL input values then its static values,
in mapping order. Each gives what the original fhir-river script of that
name gave on purpose; where the original crashed (on any value that is not
text, for most of them) these do better, and their docstrings say how.
Blank values (None, "" and blank text) are ignored by every one but
`merge_status`; when nothing is left they return None. `merge_datetime` and
`merge_instant`, which need the source's time zone, live in
`river.scripts.temporal`.
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Callable, Sequence
from typing import Any

from river.errors import BadValue
from river.scripts.cleaning import is_blank, is_empty


def merge_concat(*values: Any) -> str | None:
    """The values as text (`as_text`) joined by one space:
    `merge_concat("Jean", None, 12)` -> `"Jean 12"`.

    Better than the original: blank values are left out, as None was (it
    doubled the space around ""), and nothing to join gives None.
    """
    parts = [as_text(value) for value in values if not is_blank(value)]
    return " ".join(parts) if parts else None


def merge_concat_without_separator(*values: Any) -> str | None:
    """The values as text (`as_text`), joined without separator; blank values left out."""
    parts = [as_text(value) for value in values if not is_blank(value)]
    return "".join(parts) if parts else None


def select_first_not_empty(*values: Any) -> Any:
    """The first value that is not empty, as it is. The texts `NaN`, `NaT`,
    `None` and `(null)` are empty, as in the original; better than it,
    values that are not text are read (it crashed on them).
    """
    for value in values:
        if not is_empty(value):
            return value
    return None


def merge_insee(*values: Any) -> str | None:
    """A French INSEE commune code from two columns: the first value if it is
    not empty, else the second, stripped.

    `NaN`, `NaT`, `None` and `(null)` are empty, as in the original. Better
    than it: a single value is read, a number is written as text (`as_text`),
    and two empty values give None (it crashed or gave "").
    """
    if len(values) > 2:
        raise BadValue(f"merge_insee takes two values, not {len(values)}")
    for value in values:
        if not is_empty(value):
            return as_text(value).strip()
    return None


def merge_status(*values: Any) -> str | None:
    """A FHIR CarePlan status from (inactive flag, value) pairs: the group's
    values taken two at a time, the first pair that decides giving the status.

    A pair with an empty member -> `unknown`; else an inactive flag 1 ->
    `revoked`; else a value 1 -> `active`, 0 -> `on hold`; any other value
    leaves the decision to the next pair (None when no pair decides):
    `merge_status(0, 1)` -> `active`, `merge_status(1, 1)` -> `revoked`.
    This is what the original meant ("merge two binary entries"); its code
    unpacked each single value as a pair and crashed. Numbers, booleans and
    the text `0` / `1` read the same. An odd number of values raises ValueError.
    """
    if len(values) % 2:
        raise BadValue(f"merge_status takes (inactive flag, value) pairs, not {len(values)} values")
    for inactive, value in zip(values[::2], values[1::2], strict=True):
        if is_empty(inactive) or is_empty(value):
            return "unknown"
        if _flag(inactive) == 1:
            return "revoked"
        status = _CARE_PLAN_STATUSES.get(_flag(value))
        if status is not None:
            return status
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
    """How merging scripts write a value: as the original did (`str`), so
    booleans are `True` / `False`, date-times `2020-01-02 03:04:00`; a float
    with no fraction loses its ".0" (`12.0` -> `12`), as the original's
    pipeline wrote floats before merging them.
    """
    if type(value) is str:
        return value
    if type(value) is float and math.isfinite(value) and value == int(value):
        return str(int(value))
    return str(value)


# -- below: helpers ----------------------------------------------------------------------


def _flag(value: Any) -> int | None:
    """0 or 1 from a number (a boolean too, as the original compared it) or its
    text; None for anything else.
    """
    if isinstance(value, int | float | decimal.Decimal):
        return int(value) if value in (0, 1) else None
    if type(value) is str:
        return {"0": 0, "1": 1}.get(value.strip())
    return None


def _select(values: Sequence[Any], pick: Callable[..., int]) -> Any:
    present = [value for value in values if not is_blank(value)]
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


_CARE_PLAN_STATUSES = {1: "active", 0: "on hold"}
