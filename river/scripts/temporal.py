"""Dates, date-times, instants and times: the scripts that read them.

Source values reach these scripts as `datetime.datetime`, `datetime.date`,
`datetime.time` (from typed SQL columns) or as text. Text is read in these
forms (surrounding spaces ignored):

- ISO 8601, extended: `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, then optionally a time
  `[T or space]HH:MM[:SS[.fraction]]` and an offset (`Z`, `+02:00`, `+0200`,
  `+02`); `/` may stand for `-` (`2094/03/05`);
- ISO 8601, basic: `YYYYMM`, `YYYYMMDD`, `YYYYMMDD[T]HHMM[SS]`;
- day first, as French sources write dates: `DD/MM/YYYY`, `DD-MM-YYYY` or
  `DD.MM.YYYY`, optionally followed by `HH:MM[:SS]` (never month first);
- RFC 1123 / RFC 2822 (`Wed, 13 Mar 2075 00:00:00 GMT`).

A value in none of these forms, or naming an impossible date (`2020-02-30`),
raises `BadValue` (a ValueError) saying what is wrong and the forms expected, with
the value's shape but never the value (the original scripts gave such a value
back untouched, which no FHIR server accepts).
None, blank text and the texts `NaN`, `NaT`, `None` and `(null)` (which the
original took for empty) give None.

A date-time that carries no offset is read in the source's time zone (the
`SOURCE_TIMEZONE` setting): a fixed offset (`+02:00`) or an IANA zone name
(`Europe/Paris`, daylight saving time included; an ambiguous wall-clock time
takes the first of its two offsets, one that does not exist the offset in
force before the change). A value that carries an offset keeps it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import email.utils
import functools
import math
import re
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from river.errors import BadValue, shape_of
from river.scripts.cleaning import is_blank, is_empty

DEFAULT_TIMEZONE = "+02:00"

# Precision of a value read from text.
YEAR, MONTH, DAY, DATETIME = "year", "month", "day", "datetime"

_UTC = dt.UTC
_DATE_FORMS = (
    "YYYY, YYYY-MM, YYYY-MM-DD, YYYYMMDD or DD/MM/YYYY, optionally followed by a time "
    "HH:MM[:SS] and an offset"
)
_TIME_FORMS = "HH:MM[:SS], HHhMM, HHMM[SS], or a date-time"

_OFFSET = r"(?P<z>[Zz]|UTC|GMT|[+-]\d{2}(?::?\d{2})?)"
_EXTENDED = re.compile(
    r"(?P<y>\d{4})(?:(?P<sep>[-/])(?P<m>\d{1,2})(?:(?P=sep)(?P<d>\d{1,2})"
    r"(?:(?:[Tt]|\s+)(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:[.,](?P<f>\d+))?)?"
    r"\s*" + _OFFSET + r"?)?)?)?"
)
_BASIC = re.compile(
    r"(?P<y>\d{4})(?P<m>\d{2})(?:(?P<d>\d{2})"
    r"(?:[Tt]?(?P<H>\d{2})(?P<M>\d{2})(?P<S>\d{2})?(?:[.,](?P<f>\d+))?" + _OFFSET + r"?)?)?"
)
_DAY_FIRST = re.compile(
    r"(?P<d>\d{1,2})(?P<sep>[/.\-])(?P<m>\d{1,2})(?P=sep)(?P<y>\d{4})"
    r"(?:(?:[Tt]|\s+)(?P<H>\d{1,2})[:hH](?P<M>\d{2})(?::(?P<S>\d{2})(?:[.,](?P<f>\d+))?)?"
    r"\s*" + _OFFSET + r"?)?"
)
_TIME = re.compile(
    r"(?P<H>\d{1,2})(?:::?|\s)(?P<M>\d{2})(?:(?:::?|\s)(?P<S>\d{2})(?:[.,](?P<f>\d+))?)?"
    r"\s*" + _OFFSET + r"?"
)
_FRENCH_TIME = re.compile(r"(?P<H>\d{1,2})\s*[hH]\s*(?:(?P<M>\d{2})(?:\s*(?:min|m)?\s*)?)?")
_MOMENT_PATTERNS = (_EXTENDED, _BASIC, _DAY_FIRST)


def parse_timezone(name: str) -> dt.tzinfo:
    """The time zone a `SOURCE_TIMEZONE` value names; raises ValueError.

    A fixed UTC offset (`+02:00`, `-0530`, `+02`, `Z`, `UTC`) gives a fixed
    offset; anything else must be an IANA zone name (`Europe/Paris`).
    """
    text = name.strip()
    offset = _offset(text) if text else None
    if offset is not None:
        return offset
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(
            f"time zone {name!r} is neither a UTC offset such as +02:00 "
            "nor an IANA zone name such as Europe/Paris"
        ) from None


def read_moment(value: Any) -> tuple[str, dt.date]:
    """`value` read as (precision, date or datetime); raises ValueError.

    The precision is YEAR, MONTH, DAY (a `date`, the missing parts set to 1)
    or DATETIME (a `datetime`, naive unless the value carried an offset).
    """
    if isinstance(value, dt.datetime):
        return DATETIME, value
    if isinstance(value, dt.date):
        return DAY, value
    text = _text_of(value, "a date")
    try:
        moment = _moment_from_text(text)
    except ValueError as error:
        raise BadValue(f"cannot read {shape_of(value)} as a date: {_impossible(error)}") from None
    if moment is None:
        raise BadValue(f"cannot read {shape_of(value)} as a date; expected {_DATE_FORMS}")
    return moment


def clean_date(value: Any) -> str | None:
    """A FHIR date `YYYY-MM-DD`, as the original gave it: a year or a month
    alone is its first day (`2015` -> `2015-01-01`, `2015-02` -> `2015-02-01`).

    A date-time gives its own calendar date (no time zone conversion).
    """
    if type(value) is dt.datetime:
        return value.date().isoformat()
    if type(value) is dt.date:
        return value.isoformat()
    if is_empty(value):
        return None
    precision, moment = read_moment(value)
    if precision == DATETIME:
        return moment.date().isoformat()
    return moment.isoformat()


def clean_dateTime(value: Any, tz: dt.tzinfo | None = None) -> str | None:  # noqa: N802
    """A FHIR dateTime: `YYYY`, `YYYY-MM`, `YYYY-MM-DD` as the value has them,
    or a full date-time with an offset (`tz`, the source's zone, when it has none).

    Text that already is a FHIR date-time with an offset is kept as it is
    written (`2015-02-07T13:28:17Z`, `...17.123+05:00`), as the original did.
    """
    if type(value) is dt.datetime:
        return with_offset(value, tz)
    if type(value) is dt.date:
        return value.isoformat()
    if is_empty(value):
        return None
    written = as_written(value)
    if written is not None:
        return written
    precision, moment = read_moment(value)
    if precision == DATETIME:
        return with_offset(moment, tz)
    if precision == YEAR:
        return f"{moment.year:04d}"
    if precision == MONTH:
        return f"{moment.year:04d}-{moment.month:02d}"
    return moment.isoformat()


def clean_instant(value: Any, tz: dt.tzinfo | None = None) -> str | None:
    """A FHIR instant: always a full date-time with an offset.

    A partial value (`2015`, `2015-02`, `2015-02-07`) is its first moment, at
    midnight in `tz` (the source's zone). Text that already is a FHIR instant
    is kept as it is written (`2015-02-07T13:28:17Z`).
    """
    if is_empty(value):
        return None
    written = as_written(value)
    if written is not None:
        return written
    precision, moment = read_moment(value)
    if precision != DATETIME:
        moment = dt.datetime(moment.year, moment.month, moment.day)
    return with_offset(moment, tz)


def clean_epoch_dateTime(value: Any, tz: dt.tzinfo | None = None) -> str | None:  # noqa: N802
    """A FHIR dateTime from an epoch time, text or number: fewer than 12 digits
    are seconds, 12 or more milliseconds (`1330063200000` is 2012-02-24T06:00:00Z).

    The instant is written in the offset `tz` (the source's zone) gives it:
    `2012-02-24T08:00:00+02:00`, or `2012-02-24T07:00:00+01:00` in
    Europe/Paris. The original wrote the server's local time and labelled it
    `+02:00` whatever the true offset; here the instant is always the true one.
    A value that is no epoch time (`abcde`), or one out of the years 1-9999,
    gives None, as the original gave "". Better than the original: numbers
    (it crashed on them), surrounding spaces, and a fraction that does not
    count as digits (`1330063200.5` is seconds).
    """
    if is_empty(value):
        return None
    number = _epoch_number(value)
    if number is None:
        return None
    digits = len(str(abs(int(number))))
    unit = 1_000 if digits >= 12 else 1_000_000  # microseconds per unit
    try:
        moment = _EPOCH + dt.timedelta(microseconds=int(number * unit))
        local = moment.astimezone(tz or _DEFAULT_TZ)
    except (OverflowError, ValueError):
        return None
    return with_offset(local)


def clean_time(value: Any) -> str | None:
    """A FHIR time `HH:MM:SS` (fractions of a second and offsets dropped).

    Reads `time` and `datetime` objects, `HH:MM[:SS]`, `HH::MM::SS`,
    `HH MM SS`, French `14h30` / `14h`, `HHMM`, `HHMMSS`, an integer such as
    930 (09:30) or 143000, and date-times (`2015-02-07 13:28:17`,
    `201502071740`). A date alone (`2015-02-07`, `20150207`, a `date`) is
    midnight, `00:00:00`, as in the original. Anything else raises ValueError
    (the original gave `00:00:00` for any text it could not read).
    """
    if is_empty(value):
        return None
    try:
        moment = read_time(value)
    except ValueError:
        if _is_date(value):
            return "00:00:00"
        raise
    return f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"


def read_time(value: Any) -> dt.time:
    """`value` read as a time of day (with its offset, if it has one); raises ValueError."""
    if isinstance(value, dt.datetime):
        return value.timetz()
    if isinstance(value, dt.time):
        return value
    if isinstance(value, dt.date):
        raise BadValue("a date has no time of day")
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
        if not 0 <= seconds < 86400:
            raise BadValue("a duration outside 0 to 24 hours is not a time of day")
        return (dt.datetime.min + value).time()
    if type(value) is int and value >= 0:
        digits = str(value)
        text = (
            digits.zfill(4) if len(digits) <= 4 else digits.zfill(6) if len(digits) <= 6 else digits
        )
    else:
        text = _text_of(value, "a time")
    try:
        moment = _time_from_text(text)
    except ValueError as error:
        raise BadValue(f"cannot read {shape_of(value)} as a time: {_impossible(error)}") from None
    if moment is None:
        raise BadValue(f"cannot read {shape_of(value)} as a time; expected {_TIME_FORMS}")
    return moment


def merge_datetime(*values: Any, tz: dt.tzinfo | None = None) -> str | None:
    """A date and a time of day merged into one dateTime with an offset.

    `merge_datetime(date, time)`: the time's own offset if it has one, else
    `tz` (the source's zone). Without a time, the date alone as
    `clean_dateTime` gives it; without a date, None (a time alone is no
    dateTime). A date-time given as the date keeps only its calendar date.
    A date and a time written as text that join (`date` + `T` + `time`) into
    a FHIR date-time with an offset are kept as written, as in the original.
    """
    return _merge_date_and_time("merge_datetime", values, tz, clean_dateTime)


def merge_instant(*values: Any, tz: dt.tzinfo | None = None) -> str | None:
    """A date and a time of day merged into one FHIR instant, as `merge_datetime`
    does for a dateTime; a date alone is midnight in `tz` (the source's zone)
    (`clean_instant`). No value or more than two raise ValueError, as in the
    original.

    Better than the original: a time without seconds (`13:28`) and date and
    time objects are read (it gave `2015-02-07T13:28` back untouched, and
    crashed on objects).
    """
    if not values:
        raise BadValue("merge_instant takes a date and optionally a time, not 0 values")
    return _merge_date_and_time("merge_instant", values, tz, clean_instant)


def as_written(value: Any) -> str | None:
    """Text that already is a FHIR date-time with an offset, stripped, or None.

    FHIR's own pattern, with a calendar date that exists: `2015-02-07T13:28:17Z`
    and `2015-02-07T13:28:17.123+05:00` are kept as they are written.
    """
    if type(value) is not str:
        return None
    text = value.strip()
    if "T" not in text or _FHIR_DATETIME.fullmatch(text) is None:
        return None
    try:
        dt.date.fromisoformat(text[:10])
    except ValueError:
        return None
    return text


def with_offset(moment: dt.datetime, tz: dt.tzinfo | None = None) -> str:
    """`moment` in ISO 8601 with its offset, or the offset `tz` gives it when it has none.

    The offset is written `+HH:MM`, as FHIR wants it, even for the local mean
    times (`+00:09:21`) that IANA zones give dates before about 1900.
    """
    if moment.tzinfo is None:
        offset = (tz or _DEFAULT_TZ).utcoffset(moment)
        text = moment.isoformat()
    else:
        offset = moment.utcoffset()
        text = moment.replace(tzinfo=None).isoformat()
    suffix = _OFFSET_TEXTS.get(offset)
    if suffix is None:
        suffix = _OFFSET_TEXTS[offset] = _offset_text(offset)
    return text + suffix


# -- below: text reading helpers ---------------------------------------------------------


def _merge_date_and_time(
    name: str,
    values: tuple[Any, ...],
    tz: dt.tzinfo | None,
    date_alone: Callable[[Any, dt.tzinfo | None], str | None],
) -> str | None:
    """`values` (a date, then optionally a time) merged as one date-time with an
    offset; the date alone as `date_alone` gives it; no date, None.
    """
    if len(values) > 2:
        raise BadValue(f"{name} takes a date and a time, not {len(values)} values")
    date = values[0] if values else None
    time = values[1] if len(values) > 1 else None
    if is_empty(date):
        return None
    if is_blank(time):
        return date_alone(date, tz)
    if type(date) is str and type(time) is str:
        written = as_written(f"{date.strip()}T{time.strip()}")
        if written is not None:
            return written
    precision, moment = read_moment(date)
    if precision in (YEAR, MONTH):
        raise BadValue(f"the date is a {precision} alone, not a full date (YYYY-MM-DD)")
    day = moment.date() if isinstance(moment, dt.datetime) else moment
    clock = read_time(time)
    return with_offset(dt.datetime.combine(day, clock), tz)


def _is_date(value: Any) -> bool:
    """True for a date without a time of day: a `date`, or a value read as one."""
    if isinstance(value, dt.datetime):
        return False
    if isinstance(value, dt.date):
        return True
    try:
        return read_moment(value)[0] != DATETIME
    except ValueError:
        return False


def _epoch_number(value: Any) -> decimal.Decimal | None:
    """An epoch time as a Decimal (text or number); None for anything else."""
    kind = type(value)
    if kind is int:
        return decimal.Decimal(value)
    if kind is decimal.Decimal or kind is float:
        return decimal.Decimal(str(value)) if math.isfinite(value) else None
    if kind is str and _EPOCH_TEXT.fullmatch(value.strip()):
        return decimal.Decimal(value.strip())
    return None


def _text_of(value: Any, what: str) -> str:
    """The text to read for a value that is no date object; bool and float refused."""
    kind = type(value)
    if kind is str:
        return value.strip()
    if kind is int:
        return str(value)
    if isinstance(value, str):
        return value.strip()
    if (kind is decimal.Decimal or kind is float) and math.isfinite(value) and value == int(value):
        return str(int(value))
    raise BadValue(f"cannot read {shape_of(value)} as {what}")


# Python's reasons a date or time does not exist that quote no part of the value.
_PYTHON_REASON = re.compile(
    r"(month|hour|minute|second|microsecond) must be in \d+\.\.\d+|day is out of range for month"
)


def _impossible(error: ValueError) -> str:
    """Why a date or time written in a known form does not exist, without the value
    (Python's `year 10000 is out of range` quotes it)."""
    if isinstance(error, BadValue):
        return str(error)
    text = str(error)
    if _PYTHON_REASON.fullmatch(text):
        return text
    if text.startswith("year "):
        return "the year is out of range (1 to 9999)"
    return "no such date or time"


def _moment_from_text(text: str) -> tuple[str, dt.date] | None:
    # Fast paths: the exact forms SQL drivers and ISO writers give.
    length = len(text)
    if length == 10 and text[4] == "-" and text[7] == "-":
        try:
            return DAY, dt.date.fromisoformat(text)
        except ValueError:
            pass
    elif (
        length == 19
        and text[4] == "-"
        and text[7] == "-"
        and text[10] in " T"
        and text[13] == ":"
        and text[16] == ":"
    ):
        try:
            return DATETIME, dt.datetime.fromisoformat(text)
        except ValueError:
            pass
    for pattern in _MOMENT_PATTERNS:
        match = pattern.fullmatch(text)
        if match is not None:
            return _build_moment(match)
    if "," in text or "GMT" in text:
        return _rfc2822(text)
    return None


def _build_moment(match: re.Match[str]) -> tuple[str, dt.date]:
    year = int(match["y"])
    month = match["m"]
    if month is None:
        return YEAR, dt.date(year, 1, 1)
    month_number = int(month)
    day = match["d"]
    if day is None:
        return MONTH, dt.date(year, month_number, 1)
    hour = match["H"]
    if hour is None:
        return DAY, dt.date(year, month_number, int(day))
    seconds = match["S"]
    fraction = match["f"]
    return DATETIME, dt.datetime(
        year,
        month_number,
        int(day),
        int(hour),
        int(match["M"]),
        int(seconds) if seconds else 0,
        int(fraction[:6].ljust(6, "0")) if fraction else 0,
        tzinfo=_offset(match["z"]) if match["z"] else None,
    )


def _rfc2822(text: str) -> tuple[str, dt.date] | None:
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return DATETIME, moment


def _time_from_text(text: str) -> dt.time | None:
    if text.isdigit():
        if len(text) == 4:
            return dt.time(int(text[:2]), int(text[2:]))
        if len(text) == 6:
            return dt.time(int(text[:2]), int(text[2:4]), int(text[4:]))
    match = _TIME.fullmatch(text)
    if match is not None:
        seconds = match["S"]
        fraction = match["f"]
        zone = match["z"]
        return dt.time(
            int(match["H"]),
            int(match["M"]),
            int(seconds) if seconds else 0,
            int(fraction[:6].ljust(6, "0")) if fraction else 0,
            tzinfo=_offset(zone) if zone else None,
        )
    match = _FRENCH_TIME.fullmatch(text)
    if match is not None:
        return dt.time(int(match["H"]), int(match["M"] or 0))
    moment = _moment_from_text(text)
    if moment is not None and moment[0] == DATETIME:
        return moment[1].timetz()
    return None


_OFFSET_TEXT = re.compile(r"([+-])(\d{1,2})(?::?(\d{2}))?")


@functools.lru_cache(maxsize=64)
def _offset(text: str) -> dt.tzinfo | None:
    """The fixed offset `text` names (`Z`, `UTC`, `+02:00`, `-0530`, `+2`), or None."""
    if text in ("Z", "z", "UTC", "GMT", "utc"):
        return _UTC
    match = _OFFSET_TEXT.fullmatch(text)
    if match is None:
        return None
    sign, hours, minutes = match.groups()
    delta = dt.timedelta(hours=int(hours), minutes=int(minutes or 0))
    if delta >= dt.timedelta(hours=24) or int(minutes or 0) >= 60:
        raise BadValue("its UTC offset is out of range (under 24 hours, minutes under 60)")
    return dt.timezone(-delta if sign == "-" else delta)


def _offset_text(offset: dt.timedelta | None) -> str:
    seconds = int((offset or dt.timedelta()).total_seconds())
    sign = "-" if seconds < 0 else "+"
    hours, minutes = divmod(abs(seconds) // 60, 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


_OFFSET_TEXTS: dict[dt.timedelta | None, str] = {}
_DEFAULT_TZ = parse_timezone(DEFAULT_TIMEZONE)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)
_EPOCH_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# FHIR R4's pattern of dateTime.
_FHIR_DATETIME = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]"
    r"|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]"
    r"|1[0-3]):[0-5][0-9]|14:00)))?)?)?"
)
