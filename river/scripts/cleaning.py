"""Cleaning scripts that need no time zone: codes, genders, booleans, text, numbers.

Each takes one source value and returns one, as the original fhir-river
script of that name did for every value it handled on purpose. Where the
original crashed (most of them did on any value that is not text), gave its
input back because it could not read it, or missed a spelling of a word it
maps (case, surrounding spaces, a number written as text or the reverse),
these scripts do better, and their docstrings say how.

Every one returns None for None, "" and blank text, except the mapping
scripts whose original gave a code for a missing value (`map_marital_status`,
`map_gender_numeric`, `map_status`, `map_priority`, `map_intent`). The
scripts whose original took the texts `NaN`, `NaT`, `None` and `(null)` for
empty (those that used its `is_empty`) take them for empty too. None of them
raises: where the original returned nothing for a value it did not know,
these return None.
"""

from __future__ import annotations

import decimal
import math
import re
from typing import Any

_NUMBER_TYPES = (int, float, decimal.Decimal)

# The texts the original's `is_empty` took for a missing value, besides blank text.
EMPTY_TEXTS = frozenset({"NaN", "NaT", "None", "(null)"})


def is_blank(value: Any) -> bool:
    """True for None, "" and text made of spaces."""
    return value is None or (type(value) is str and (not value or value.isspace()))


def is_empty(value: Any) -> bool:
    """True for a blank value (`is_blank`) and for the texts `NaN`, `NaT`, `None`
    and `(null)` (surrounding spaces ignored), which the original took for empty.
    """
    return is_blank(value) or (type(value) is str and value.strip() in EMPTY_TEXTS)


# --- codes ------------------------------------------------------------------------------


def clean_codes(value: Any) -> Any:
    """A code without the prefix of a terminology the original knows: `HL7:male`
    -> `male`, `CIM10 : I10` -> `I10`, `ICD-O-3:8140/3` -> `8140/3`.

    The prefixes are HL7, UMLS, LOINC, ATC, FINESS, MedDRA, CIM10, RECIST,
    OSIRIS, ICDO3 and ICD-O-3, then `:` (spaces around it allowed). Any other
    text is kept: `urn:oid:1.2.3`, `UnvalidCode:KeepCode`, `ICD10:A01`.
    Better than the original: a prefix is read in any case (`hl7:male`), the
    text is stripped, and values that are not text (numeric codes) are
    returned as they are (the original crashed on them). A prefix with
    nothing after it (`HL7:`) gives None (the original gave "").
    """
    if type(value) is not str:
        return value
    if is_empty(value):
        return None
    text = value.strip()
    match = _CODE_PREFIX.fullmatch(text)
    if match is None or match.group(1).upper() not in _TERMINOLOGIES:
        return text
    return match.group(2).strip() or None


def map_gender(value: Any) -> str | None:
    """An administrative gender: `M` / `F` (or `HL7:M`, `HL7:F`) -> `male` /
    `female`; anything else -> `unknown`; empty -> None.

    Better than the original: any case and surrounding spaces (`m`, ` F `), a
    value that already is `male` or `female` (`HL7:male`) is kept, and values
    that are not text give `unknown` (the original crashed on them).
    """
    if is_empty(value):
        return None
    if type(value) is not str:
        return "unknown"
    return _GENDERS.get(value.strip().lower(), "unknown")


def map_gender_numeric(value: Any) -> str:
    """An administrative gender from a number: 1 -> `male`, 2 -> `female`,
    anything else (a missing value included, as in the original) -> `unknown`.

    Better than the original, which knew the numbers only: the text `1` / `2`
    (surrounding spaces ignored) and 1.0 / 2.0 read the same.
    """
    return _NUMERIC_GENDERS.get(_code_text(value), "unknown")


def map_marital_status(value: Any) -> str:
    """A v3 MaritalStatus code from a MIMIC marital status word.

    MARRIED -> M, SINGLE -> U (unmarried), WIDOWED -> W, SEPARATED -> L
    (legally separated), DIVORCED -> D, UNKNOWN and UNKNOWN (DEFAULT) -> UNK;
    empty or missing -> UNK; anything else -> UNK, as in the original. Better
    than the original: any case and spacing of these words (`married`,
    ` Widowed `), and a value that already is a code of the value set (A, D,
    I, L, M, P, S, T, U, W, UNK, any case) is kept.
    """
    word = _word(value)
    return _MARITAL_STATUSES.get(word, "UNK") if word else "UNK"


def map_family_situation(value: Any) -> Any:
    """A French family situation from its one-letter code: M -> `Marié(e)`,
    C -> `Célibataire`, V -> `Veuvage`, D -> `Divorcé(e)`, O -> `Pacsé(e)`;
    anything else is returned as it is, as in the original. Better than the
    original: the letters in any case and with surrounding spaces; blank -> None.
    """
    if is_blank(value):
        return None
    return _FAMILY_SITUATIONS.get(_word(value), value)


def map_deceased(value: Any) -> bool | None:
    """Whether the patient died, from a French answer: O (oui) -> True,
    N (non) -> False; anything else -> None. Better than the original: any
    case and surrounding spaces (`o`, ` N `).
    """
    return _DECEASED.get(_word(value))


def map_permission(value: Any) -> str | None:
    """A consent provision type from a UMLS code: `UMLS:C1298907` (yes) ->
    `permit`, `UMLS:C1298908` (no) -> `deny`; anything else -> None. Better
    than the original: any case and surrounding spaces.
    """
    return _PERMISSIONS.get(_word(value))


def map_intent(value: Any) -> str | None:
    """A request intent: 0 -> `plan`, 1 -> `order`, empty -> `proposal`;
    anything else -> None.

    This is what the original meant ("Map (0,1,NULL) to (plan, order,
    proposal)"); its code tested the built-in `input` instead of the value
    and crashed on every call. The number or its text (`0`, ` 1 `) read the
    same; `NaN`, `None` and `(null)` are empty, as the original's `is_empty` said.
    """
    if is_empty(value):
        return "proposal"
    return _INTENTS.get(_code_text(value))


def map_priority(value: Any) -> str:
    """A request priority: 1 -> `stat`, 2 -> `asap`, 3 -> `urgent`; anything
    else, empty included -> `routine`. The number or its text read the same,
    as in the original; better than it, 1.0 reads as 1 and surrounding spaces
    are ignored.
    """
    return _PRIORITIES.get(_code_text(value), "routine")


def map_status(value: Any) -> str:
    """An activity status: 0 -> `active`, 1 -> `inactive`; anything else (a
    missing value included, as in the original) -> `unknown`. Better than the
    original, which knew the numbers only: the text `0` / `1` reads the same.
    """
    return _STATUSES.get(_code_text(value), "unknown")


# --- booleans ---------------------------------------------------------------------------


def binary_to_bool_1(value: Any) -> bool | None:
    """0 / 1 -> False / True; booleans kept; anything else -> None (as in the
    original). Better than the original, which knew the numbers only: the
    text `0` / `1` (surrounding spaces ignored) reads the same.
    """
    if type(value) is bool:
        return value
    return _BINARY.get(_code_text(value))


def binary_to_bool_2(value: Any) -> bool | None:
    """The reverse of `binary_to_bool_1`: 0 -> True, 1 -> False; anything else
    (booleans included) -> None. The original knew the text `0` / `1` only;
    the numbers read the same here, and surrounding spaces are ignored.
    """
    if type(value) is bool:
        return None
    answer = _BINARY.get(_code_text(value))
    return None if answer is None else not answer


def map_2_true(value: Any) -> bool | None:
    """True for the code 2 (the number, or its text with or without
    surrounding spaces); anything else -> None. The original meant both
    ("Map some code from (2->True)") but read neither: it crashed on the
    number and gave None for the text.
    """
    if type(value) is bool:
        return None
    return True if _code_text(value) == "2" else None


def string_to_bool(value: Any) -> bool | None:
    """`true` / `false` -> True / False; anything else -> None, as in the original.

    The original knew True, true, TRUE and their false; here any case and
    surrounding spaces read the same, and a boolean is kept (the original
    gave None for it).
    """
    if type(value) is bool:
        return value
    return _BOOLEAN_WORDS.get(_word(value))


# --- text -------------------------------------------------------------------------------


def strip(value: Any) -> Any:
    """Text without surrounding spaces; None when nothing is left, and for the
    text `NaN` (as in the original). Other values are returned as they are
    (the original crashed on them).
    """
    if type(value) is not str:
        return value
    text = value.strip()
    return None if not text or text == "NaN" else text


def make_title(value: Any) -> Any:
    """Text in title case and stripped (`jean-PIERRE dupont` -> `Jean-Pierre Dupont`);
    other values as they are (the original crashed on them).
    """
    return _title(value)


def clean_address(value: Any) -> Any:
    """An address with its words capitalised, stripped, as in the original:
    `12 rue de la PAIX` -> `12 Rue De La Paix`, `  8 BD SAINT-MICHEL ` ->
    `8 Bd Saint-Michel`. Other values as they are (the original crashed on
    them); blank -> None.
    """
    return _title(value)


def clean_long_text_ORBIS(value: Any) -> Any:  # noqa: N802 (the name mappings use)
    """Free text exported from the ORBIS hospital system, made readable.

    Removes the control characters U+0000, U+0001, U+0003, U+000C and U+001A
    and the apostrophes, turns CR into LF, removes the formatting escapes
    `\\m0 \\m1 \\m2 \\m3 \\m8` and doubled backslashes; then removes a leading
    formatting header `\\f:20NN\\` or `\\f:12NNN\\` with the binary record
    bytes before it on its line, or, when there is no header, the first two
    characters when they are not both letters (the two bytes left of an ORBIS
    record header, as the original did). The text is not stripped.

    `\\m3THROMBECTOMIE realisee le\\m0 08/12/2020<CR>\\m1Operateur :\\m0 Dr XXX`
    -> `THROMBECTOMIE realisee le 08/12/2020<LF>Operateur : Dr XXX`.

    Better than the original: it removed every copy of the two leading
    characters and of the text before the header anywhere in the text, and
    wrote a form feed into any other `\\f`; here only the leading ones go and
    other text is left alone. A text shorter than two characters is kept
    (the original crashed). Other values are returned as they are; empty,
    `NaN`, `None` and `(null)` -> None.
    """
    if type(value) is not str:
        return value
    if is_empty(value):
        return None
    text = _ORBIS_NOISE.sub("", value).replace("\r", "\n")
    for escape in _ORBIS_ESCAPES:
        text = text.replace(escape, "")
    text = text.replace("\\\\", "")
    header = _ORBIS_HEADER.search(text)
    if header is not None:
        line_start = text.rfind("\n", 0, header.start()) + 1
        text = text[:line_start] + text[header.end() :]
    elif len(text) >= 2 and not (text[0].isalpha() and text[1].isalpha()):
        text = text[2:]
    return text or None


def zero_to_empty(value: Any) -> Any:
    """None for a zero; any other value as it is.

    The original knew the text `0`; here a zero number and any writing of
    zero (`0.0`, `0,00`, ` 00 `, `-0`) count too. Empty, `NaN`, `None` and
    `(null)` -> None, as in the original.
    """
    if type(value) is bool:
        return value
    if is_empty(value):
        return None
    if isinstance(value, _NUMBER_TYPES):
        return None if value == 0 else value
    if type(value) is str and _ZERO.fullmatch(value.strip()):
        return None
    return value


def code_to_empty(value: Any) -> Any:
    """None for the codes that mean "no value" in the original sources: `-1` and
    `(sans)` (French for "none"); any other value as it is.

    Better than the original: the number -1, any case of `(sans)` and
    surrounding spaces. Empty, `NaN`, `None` and `(null)` -> None, as in the
    original.
    """
    if type(value) is bool:
        return value
    if is_empty(value):
        return None
    if isinstance(value, _NUMBER_TYPES):
        return None if value == -1 else value
    if type(value) is str:
        text = value.strip()
        if text == "-1" or text.lower() == "(sans)":
            return None
    return value


# --- numbers ----------------------------------------------------------------------------


def clean_quantity(value: Any) -> int | float | decimal.Decimal | None:
    """The value if it is a number, else None (the original removed any input
    that is no FHIR decimal): `"150"` -> 150, `"-150.005"` -> -150.005,
    `"1e3"` -> 1000.0; `"12 mg"`, `"<5"`, `"5-10"`, `"abc"` -> None.

    Better than the original: surrounding spaces, a leading `+` or zeros and
    a decimal comma (`"12,5"` -> 12.5) are read; booleans, NaN and infinite
    numbers, which are no quantity, give None.
    """
    kind = type(value)
    if kind is int:
        return value
    if kind is float or kind is decimal.Decimal:
        return value if math.isfinite(value) else None
    if kind is not str or is_empty(value):
        return None
    text = value.strip()
    if not _NUMBER.fullmatch(text):
        return None
    text = text.replace(",", ".")
    if "." in text or "e" in text or "E" in text:
        return float(text)
    return int(text)


def clean_phone(value: Any) -> str | None:
    """The phone number found in the value, written in one way; None when
    there is none (as in the original).

    - five pairs of digits (`01 23 45 67 89`, `01.23.45.67.89`,
      `0123456789`) -> the pairs joined by spaces, as the original meant
      (its pattern was written as a quoted string and never matched);
    - a French number written internationally (`+33 1 23 45 67 89`,
      `0033 (0)1 23 45 67 89`) or with other groupings (`0 800 123 456`)
      -> `01 23 45 67 89`;
    - another international number (`+1 (555) 123-4567`, `0044 20 7946 0958`)
      -> E.164 `+15551234567`;
    - an integer of nine digits is a French number whose leading 0 was lost
      by a numeric column: 123456789 -> `01 23 45 67 89`.
    The first number in the text is taken (`tel: 01 23 45 67 89 (home)`).
    """
    if type(value) is int and value > 0:
        digits = str(value)
        text = "0" + digits if len(digits) == 9 else digits
    elif type(value) is str and not is_empty(value):
        text = value
    else:
        return None
    match = _PHONE.search(text)
    if match is None:
        return None
    digits = _NOT_DIGIT.sub("", match.group(0))
    if match.lastgroup == "french":
        national = digits[4:] if digits.startswith("0033") else digits[2:]
        if len(national) == 10:  # written with "(0)"
            national = national[1:]
        digits = "0" + national
    elif match.lastgroup == "international":
        return "+" + (digits[2:] if digits.startswith("00") else digits)
    return " ".join(digits[i : i + 2] for i in range(0, 10, 2))


# -- below: helpers ----------------------------------------------------------------------


def _word(value: Any) -> str | None:
    """Text in upper case, its spaces collapsed; None for what is no text or is empty."""
    if type(value) is not str or is_empty(value):
        return None
    return " ".join(value.split()).upper()


def _code_text(value: Any) -> str | None:
    """A code given as a number or as text, written as text: `1`, `" 1 "`, 1.0 -> `"1"`.

    None for booleans, empty values and anything else.
    """
    kind = type(value)
    if kind is str:
        return None if is_empty(value) else value.strip()
    if kind is int:
        return str(value)
    if (kind is float or kind is decimal.Decimal) and math.isfinite(value):
        return str(int(value)) if value == int(value) else str(value)
    return None


def _title(value: Any) -> Any:
    if type(value) is not str:
        return value
    text = value.strip()
    return text.title() if text else None


# -- below: tables and patterns ----------------------------------------------------------

_TERMINOLOGIES = frozenset(
    name.upper()
    for name in (
        "HL7",
        "UMLS",
        "LOINC",
        "ATC",
        "FINESS",
        "MedDRA",
        "CIM10",
        "RECIST",
        "OSIRIS",
        "ICDO3",
        "ICD-O-3",
    )
)
_CODE_PREFIX = re.compile(r"([A-Za-z0-9\-]+) *: *(.*)", re.DOTALL)

_GENDERS = {
    "m": "male",
    "hl7:m": "male",
    "male": "male",
    "hl7:male": "male",
    "f": "female",
    "hl7:f": "female",
    "female": "female",
    "hl7:female": "female",
}
_NUMERIC_GENDERS = {"1": "male", "2": "female"}

_MARITAL_STATUSES = {
    "MARRIED": "M",
    "SINGLE": "U",
    "WIDOWED": "W",
    "SEPARATED": "L",
    "DIVORCED": "D",
    "UNKNOWN": "UNK",
    "UNKNOWN (DEFAULT)": "UNK",
    **{code: code for code in ("A", "D", "I", "L", "M", "P", "S", "T", "U", "W", "UNK")},
}

_FAMILY_SITUATIONS = {
    "M": "Marié(e)",
    "C": "Célibataire",
    "V": "Veuvage",
    "D": "Divorcé(e)",
    "O": "Pacsé(e)",
}
_DECEASED = {"O": True, "N": False}
_PERMISSIONS = {"UMLS:C1298907": "permit", "UMLS:C1298908": "deny"}
_INTENTS = {"0": "plan", "1": "order"}
_PRIORITIES = {"1": "stat", "2": "asap", "3": "urgent"}
_STATUSES = {"0": "active", "1": "inactive"}
_BINARY = {"0": False, "1": True}
_BOOLEAN_WORDS = {"TRUE": True, "FALSE": False}

_ZERO = re.compile(r"[+-]?0+(?:[.,]0*)?")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?")

# ORBIS: control characters and apostrophes; formatting escapes and doubled
# backslashes; a header `\f:20NN\` or `\f:12NNN\` and the record bytes before it.
_ORBIS_NOISE = re.compile("[\x00\x01\x03\x0c\x1a']")
_ORBIS_ESCAPES = ("\\m0", "\\m1", "\\m2", "\\m3", "\\m8")
_ORBIS_HEADER = re.compile(r"\\f:(?:20\d\d|12\d{3})\\?")

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
