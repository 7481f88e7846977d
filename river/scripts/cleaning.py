"""Cleaning scripts that need no time zone: codes, genders, booleans, text, numbers.

Each takes one source value and returns one. Every one returns None for None,
"" and blank text. A value a script cannot read raises ValueError naming it;
the transformation reports that as an error of the instance. The mapping
scripts (`map_gender`, `map_marital_status`) never raise: what they do not
know maps to the "unknown" code.
"""

from __future__ import annotations

import decimal
import math
import re
from typing import Any

_NUMBER_TYPES = (int, float, decimal.Decimal)


def clean_codes(value: Any) -> Any:
    """A code without its terminology prefix: `ICD10:A01` -> `A01`, `HL7:male` -> `male`.

    The prefix is a word that starts with a letter (letters, digits, `_`, `-`,
    `.`), then `:` (spaces around it allowed). Only the first prefix goes; a
    URL (`http://...`) and a text without prefix are kept (stripped). Values
    that are not text (numeric codes) are returned as they are.
    """
    if type(value) is not str:
        return value
    text = value.strip()
    if not text:
        return None
    match = _CODE_PREFIX.match(text)
    if match is None or match.group(2).startswith("//"):
        return text
    return match.group(2)


def map_gender(value: Any) -> str | None:
    """An administrative gender: `M` / `F` (or `HL7:M`, `HL7:F`, `male`, `female`,
    any case) -> `male` / `female`; anything else -> `unknown`; empty -> None.
    """
    if value is None:
        return None
    if type(value) is not str:
        return "unknown"
    if not value or value.isspace():
        return None
    return _GENDERS.get(value.strip().lower(), "unknown")


def map_marital_status(value: Any) -> str | None:
    """A v3 MaritalStatus code from a MIMIC marital status word.

    MARRIED -> M, SINGLE -> S (never married), DIVORCED -> D, WIDOWED -> W,
    SEPARATED -> L (legally separated), LIFE PARTNER -> T (domestic partner),
    UNKNOWN and UNKNOWN (DEFAULT) -> UNK; any case. A value that already is a
    code of the value set (A, D, I, L, M, P, S, T, U, W, UNK) is kept;
    anything else -> UNK; empty -> None.
    """
    if value is None:
        return None
    if type(value) is not str:
        return "UNK"
    if not value or value.isspace():
        return None
    return _MARITAL_STATUSES.get(" ".join(value.split()).upper(), "UNK")


def binary_to_bool_1(value: Any) -> bool | None:
    """0 / 1 (numbers or text) -> False / True; booleans kept; anything else raises."""
    if value is None:
        return None
    if type(value) is bool:
        return value
    if isinstance(value, _NUMBER_TYPES):
        if value == 0:
            return False
        if value == 1:
            return True
    elif type(value) is str:
        text = value.strip()
        if not text:
            return None
        if text == "0":
            return False
        if text == "1":
            return True
    raise ValueError(f"{value!r} is neither 0 nor 1")


def string_to_bool(value: Any) -> bool | None:
    """A boolean from text, any case: true/t/yes/y/1/on/oui/vrai -> True,
    false/f/no/n/0/off/non/faux -> False; numbers 0 / 1; booleans kept;
    anything else raises.
    """
    if value is None:
        return None
    if type(value) is bool:
        return value
    if type(value) is str:
        text = value.strip().lower()
        if not text:
            return None
        if text in _TRUE_WORDS:
            return True
        if text in _FALSE_WORDS:
            return False
    elif isinstance(value, _NUMBER_TYPES) and value in (0, 1):
        return value == 1
    raise ValueError(f"{value!r} is not a boolean (expected true or false)")


def strip(value: Any) -> Any:
    """Text without surrounding spaces (None when nothing is left); other values as they are."""
    if type(value) is not str:
        return value
    text = value.strip()
    return text or None


def make_title(value: Any) -> Any:
    """Text in title case and stripped (`jean-PIERRE dupont` -> `Jean-Pierre Dupont`);
    other values as they are.
    """
    if type(value) is not str:
        return value
    text = value.strip()
    return text.title() if text else None


def zero_to_empty(value: Any) -> Any:
    """None for a zero (0, 0.0, "0", "0.00", " 00 "); any other value as it is."""
    if value is None or type(value) is bool:
        return value
    if isinstance(value, _NUMBER_TYPES):
        return None if value == 0 else value
    if type(value) is str:
        text = value.strip()
        if not text or _ZERO.fullmatch(text):
            return None
    return value


def code_to_empty(value: Any) -> Any:
    """None for the codes that mean "no value" in the original sources: `-1` and
    `(sans)` (French for "none", any case); any other value as it is.
    """
    if value is None or type(value) is bool:
        return value
    if isinstance(value, _NUMBER_TYPES):
        return None if value == -1 else value
    if type(value) is str:
        text = value.strip()
        if not text or text == "-1" or text.lower() == "(sans)":
            return None
    return value


def clean_quantity(value: Any) -> int | float | decimal.Decimal | None:
    """The number of a quantity: `"150"` -> 150, `"-150.005"` -> -150.005,
    `"12,5 mg"` -> 12.5 (a comma is a decimal separator; a unit after the
    number is dropped), `"1e3"` -> 1000.0. Numbers are kept as they are.

    Text with no leading number, or with a comparator (`<5`) or a range
    (`5-10`) that one number would misstate, raises ValueError.
    """
    if value is None:
        return None
    kind = type(value)
    if kind is int:
        return value
    if kind is float or kind is decimal.Decimal:
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
        return value
    if kind is not str:
        raise ValueError(f"cannot read {value!r} ({kind.__name__}) as a number")
    text = value.strip()
    if not text:
        return None
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise ValueError(f"cannot read {value!r} as a number (with an optional unit)")
    number = match.group(1).replace(",", ".")
    if "." not in number and "e" not in number and "E" not in number:
        return int(number)
    return float(number)


def clean_phone(value: Any) -> str | None:
    """A phone number found in the value, written in one way.

    - a French number (`01 23 45 67 89`, `01.23.45.67.89`, `0123456789`,
      `+33 1 23 45 67 89`, `0033 (0)1 23 45 67 89`) -> `01 23 45 67 89`;
    - any other sequence of five pairs of digits -> the pairs joined by spaces,
      as the original script did;
    - another international number (`+1 (555) 123-4567`, `0044 20 7946 0958`)
      -> E.164 `+15551234567`;
    - an integer of nine digits is a French number whose leading 0 was lost
      by a numeric column: 123456789 -> `01 23 45 67 89`.
    The first number in the text is taken (`tel: 01 23 45 67 89 (home)`).
    Text with no phone number raises ValueError.
    """
    if value is None:
        return None
    if type(value) is int and value > 0:
        digits = str(value)
        text = "0" + digits if len(digits) == 9 else digits
    elif type(value) is str:
        text = value
        if not text or text.isspace():
            return None
    else:
        raise ValueError(f"cannot read {value!r} ({type(value).__name__}) as a phone")
    match = _PHONE.search(text)
    if match is None:
        raise ValueError(f"no phone number in {value!r}")
    digits = _NOT_DIGIT.sub("", match.group(0))
    if match.lastgroup == "french":
        national = digits[4:] if digits.startswith("0033") else digits[2:]
        if len(national) == 10:  # written with "(0)"
            national = national[1:]
        digits = "0" + national
    elif match.lastgroup == "international":
        return "+" + (digits[2:] if digits.startswith("00") else digits)
    return " ".join(digits[i : i + 2] for i in range(0, 10, 2))


# -- below: tables and patterns ----------------------------------------------------------

_CODE_PREFIX = re.compile(r"([A-Za-z][\w.\-]*)\s*:\s*(\S.*)", re.DOTALL)

_GENDERS = {
    "m": "male",
    "male": "male",
    "hl7:m": "male",
    "hl7:male": "male",
    "f": "female",
    "female": "female",
    "hl7:f": "female",
    "hl7:female": "female",
}

_MARITAL_STATUSES = {
    "MARRIED": "M",
    "SINGLE": "S",
    "DIVORCED": "D",
    "WIDOWED": "W",
    "SEPARATED": "L",
    "LIFE PARTNER": "T",
    "UNKNOWN": "UNK",
    "UNKNOWN (DEFAULT)": "UNK",
    **{code: code for code in ("A", "D", "I", "L", "M", "P", "S", "T", "U", "W", "UNK")},
}

_TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "on", "oui", "vrai"})
_FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "off", "non", "faux"})

_ZERO = re.compile(r"[+-]?0+(?:[.,]0*)?")

# A number, then optionally a unit that starts with neither a digit, a sign, a
# separator nor a comparator (so that "5-10", "1.2.3" and "<5" are refused).
_QUANTITY = re.compile(
    r"([+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?)(?:\s*[^\d\s.,+\-<>=].*)?",
    re.DOTALL,
)

_SEP = r"[\s.\-]*"
_PHONE = re.compile(
    # +33 / 0033, an optional (0), then the 9 digits of the national number.
    rf"(?P<french>(?:\+|(?<!\d)00){_SEP}33{_SEP}(?:\(0\){_SEP})?[1-9](?:{_SEP}\d){{8}})(?!\d)"
    # Any other international number: 7 to 15 digits after + or 00.
    r"|(?P<international>(?:\+|(?<!\d)00)[\s.\-]*[1-9](?:[\s.\-()]*\d){6,14})(?!\d)"
    # 0 then 9 digits in any grouping, or five pairs of digits.
    rf"|(?P<national>(?<![\d+])(?:0{_SEP}[1-9](?:{_SEP}\d){{8}}|\d\d(?:{_SEP}\d\d){{4}}))(?!\d)"
)
_NOT_DIGIT = re.compile(r"\D")
