"""How source values are read: casts to FHIR types, and condition tests.

Casts follow docs/mapping.md (Each SQL input): integer, decimal, positiveInt,
unsignedInt and boolean become JSON numbers and booleans; every other FHIR type
a string (numbers without a trailing ".0", dates in ISO 8601). Conditions
compare a value with the text of the mapping read as the value's own type.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import operator
from collections.abc import Callable
from typing import Any

from river.errors import BadValue
from river.plan import BOOLEAN_TYPES, DECIMAL_TYPES, INTEGER_TYPES

Cast = Callable[[Any], Any]
Test = Callable[[Any], bool]

_TRUE = frozenset({"1", "true", "t", "yes", "y"})
_FALSE = frozenset({"0", "false", "f", "no", "n"})


def cast_for(fhir_type: str) -> Cast:
    """The cast of values bound for an attribute of `fhir_type`; a value it cannot
    take raises BadValue (a ValueError), saying why without quoting the value."""
    if fhir_type in INTEGER_TYPES:
        return to_integer
    if fhir_type in DECIMAL_TYPES:
        return to_decimal
    if fhir_type in BOOLEAN_TYPES:
        return to_boolean
    return to_string


def to_string(value: Any) -> Any:
    kind = type(value)
    if kind is str or value is None:
        return value
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float or kind is decimal.Decimal:
        if not math.isfinite(value):
            raise BadValue("not a finite number")
        return str(int(value)) if value == int(value) else str(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return value  # objects built by a script stay as they are


def to_integer(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if type(value) is int:
        return value
    if isinstance(value, bool):
        return int(value)
    try:
        number = float(value) if isinstance(value, str) else value
    except ValueError:
        raise BadValue("not a number") from None
    if isinstance(number, float | decimal.Decimal) and not math.isfinite(number):
        raise BadValue("not a finite number")
    if isinstance(number, float | decimal.Decimal) and number == int(number):
        return int(number)
    raise BadValue("not a whole number")


def to_decimal(value: Any) -> int | float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadValue("a boolean is not a number")
    if type(value) is int or type(value) is float:
        return value
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise BadValue("not a number") from None


def to_boolean(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | decimal.Decimal) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise BadValue("not a boolean (true, false, 1, 0, yes, no...)")


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "EQ": operator.eq,
    "NEQ": operator.ne,
    "LT": operator.lt,
    "LE": operator.le,
    "GT": operator.gt,
    "GE": operator.ge,
}


def condition_test(relation: str, text: str) -> Test:
    """Whether a value satisfies `relation` with the mapping's `text` (docs/mapping.md).

    A relation on a NULL value is false, but NULL and NOTNULL themselves.
    """
    if relation == "NULL":
        return lambda value: value is None or value == ""
    if relation == "NOTNULL":
        return lambda value: value is not None and value != ""
    if relation == "IN":
        options = [_Operand(part.strip()) for part in text.split(",")]
        return lambda value: (
            value is not None and any(_compare(operator.eq, value, option) for option in options)
        )
    compare = _OPERATORS[relation]
    operand = _Operand(text)
    return lambda value: value is not None and _compare(compare, value, operand)


class _Operand:
    """The mapping's text, read ahead of time as each type a value may have."""

    __slots__ = ("text", "number", "boolean", "moment")

    def __init__(self, text: str) -> None:
        self.text = text
        self.number = _number(text)
        lowered = text.strip().lower()
        self.boolean = True if lowered in _TRUE else False if lowered in _FALSE else None
        self.moment = _moment(text)


def _compare(compare: Callable[[Any, Any], bool], value: Any, operand: _Operand) -> bool:
    if isinstance(value, bool):
        return operand.boolean is not None and compare(value, operand.boolean)
    if isinstance(value, int | float | decimal.Decimal):
        return operand.number is not None and compare(value, operand.number)
    if isinstance(value, dt.date | dt.datetime):
        value = value.isoformat()
    text = str(value)
    if operand.number is not None:
        number = _number(text)
        if number is not None:
            return compare(number, operand.number)
    if operand.moment is not None:
        moment = _moment(text)
        if moment is not None:
            return compare(moment, operand.moment)
    return compare(text, operand.text)


def _number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return None
        return None if number != number else number  # NaN compares as text


def _moment(text: str) -> dt.datetime | None:
    """ISO dates and date-times, naive, so that a date equals its midnight."""
    if len(text) < 10 or text[4:5] != "-":
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=None)
