"""Cleaning and merging scripts (MAPPING.md, Scripts) and the script registry."""

from __future__ import annotations

import datetime as dt
import re
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from river.scripts import (
    ScriptLoadError,
    ScriptRegistry,
    UnknownScript,
    cleaning_script,
    merging_script,
    parse_timezone,
)

SCRIPTS = ScriptRegistry.default()
PARIS = ScriptRegistry.default("Europe/Paris")

# FHIR R4 regular expressions of the primitive types.
FHIR_DATE = re.compile(r"([0-9]{4})(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?")
FHIR_DATETIME = re.compile(
    r"([0-9]{4})(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]"
    r":([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?"
)
FHIR_INSTANT = re.compile(
    r"([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T([01][0-9]|2[0-3]):[0-5][0-9]"
    r":([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
)
FHIR_TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?")


def clean(name: str, value: object, scripts: ScriptRegistry = SCRIPTS) -> object:
    return scripts.cleaning(name)(value)


def merge(name: str, *values: object, scripts: ScriptRegistry = SCRIPTS) -> object:
    return scripts.merging(name)(*values)


# --- every script -----------------------------------------------------------------------

BUILTIN_CLEANING = [
    "binary_to_bool_1",
    "clean_codes",
    "clean_date",
    "clean_dateTime",
    "clean_instant",
    "clean_phone",
    "clean_quantity",
    "clean_time",
    "code_to_empty",
    "make_title",
    "map_gender",
    "map_marital_status",
    "string_to_bool",
    "strip",
    "zero_to_empty",
]
BUILTIN_MERGING = [
    "merge_concat",
    "merge_concat_without_separator",
    "merge_datetime",
    "select_first_not_empty",
    "select_max",
    "select_min",
]


def test_the_registry_has_every_script_mapping_md_names() -> None:
    assert SCRIPTS.names("cleaning") == BUILTIN_CLEANING
    assert SCRIPTS.names("merging") == BUILTIN_MERGING
    assert SCRIPTS.names() == sorted(BUILTIN_CLEANING + BUILTIN_MERGING)
    assert all(SCRIPTS.is_cleaning(name) for name in BUILTIN_CLEANING)
    assert all(SCRIPTS.is_merging(name) for name in BUILTIN_MERGING)
    assert not SCRIPTS.is_cleaning("merge_concat")
    assert not SCRIPTS.is_merging("clean_date")


@pytest.mark.parametrize("name", BUILTIN_CLEANING)
@pytest.mark.parametrize("empty", [None, "", "   ", "\t\n"])
def test_cleaning_scripts_give_none_for_empty_values(name: str, empty: object) -> None:
    assert clean(name, empty) is None


@pytest.mark.parametrize("name", BUILTIN_MERGING)
def test_merging_scripts_give_none_when_every_value_is_empty(name: str) -> None:
    assert merge(name) is None
    assert merge(name, None) is None
    assert merge(name, None, "") is None


# --- clean_date -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2094-03-05", "2094-03-05"),
        ("2094-03-05 00:00:00", "2094-03-05"),
        ("2094-03-05T00:00:00", "2094-03-05"),
        ("2015-02-07T13:28:17+05:00", "2015-02-07"),  # its own calendar date
        ("2015-02-07T23:28:17-05:00", "2015-02-07"),
        ("2015-02-07 13:28", "2015-02-07"),
        ("2015-02-07T13:28:17.123Z", "2015-02-07"),
        ("  2094-03-05 ", "2094-03-05"),
        ("2020", "2020"),
        ("2020-03", "2020-03"),
        ("2020-3", "2020-03"),
        ("202003", "2020-03"),
        ("20200305", "2020-03-05"),
        ("201502071740", "2015-02-07"),
        ("2094/03/05", "2094-03-05"),
        ("05/03/2094", "2094-03-05"),  # day first, as French sources write it
        ("5/3/2094", "2094-03-05"),
        ("05-03-2094", "2094-03-05"),
        ("05.03.2094 14:30", "2094-03-05"),
        ("Wed, 13 Mar 2075 00:00:00 GMT", "2075-03-13"),
        (dt.date(2094, 3, 5), "2094-03-05"),
        (dt.datetime(2094, 3, 5, 23, 59), "2094-03-05"),
        (dt.datetime(2094, 3, 5, 1, tzinfo=dt.timezone(dt.timedelta(hours=-5))), "2094-03-05"),
        (2020, "2020"),
        (20200305, "2020-03-05"),
        (Decimal("20200305"), "2020-03-05"),
        (1800, "1800"),
    ],
)
def test_clean_date(value: object, expected: str) -> None:
    result = clean("clean_date", value)
    assert result == expected
    assert FHIR_DATE.fullmatch(result)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "cannot read 'abc' as a date; expected YYYY, YYYY-MM, YYYY-MM-DD"),
        ("2020-13-01", "cannot read '2020-13-01' as a date: month must be in 1..12"),
        ("2020-02-30", "cannot read '2020-02-30' as a date: day is out of range for month"),
        ("03/25/2020", "cannot read '03/25/2020' as a date: month must be in 1..12"),
        ("2020-00", "cannot read '2020-00' as a date: month must be in 1..12"),
        ("2020030", "cannot read '2020030' as a date; expected"),
        ("0000", "cannot read '0000' as a date"),
        ("2020-03-05 25:00", "cannot read '2020-03-05 25:00' as a date: hour must be in 0..23"),
        ("2020-03-05 12:00+25:00", "offset '+25:00' is out of range"),
        ("yesterday", "expected YYYY"),
        (True, "cannot read True (bool) as a date"),
        (3.5, "cannot read 3.5 (float) as a date"),
        (dt.time(12), "cannot read datetime.time(12, 0) (time) as a date"),
        ([2020], "cannot read [2020] (list) as a date"),
    ],
)
def test_clean_date_refuses_what_it_cannot_read(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        clean("clean_date", value)


# --- clean_dateTime and clean_instant ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2164-10-23 21:09:00", "2164-10-23T21:09:00+02:00"),
        ("2164-10-23T21:09:00", "2164-10-23T21:09:00+02:00"),
        ("2164-10-23 21:09", "2164-10-23T21:09:00+02:00"),
        ("2015-02-07T13:28:17+05:00", "2015-02-07T13:28:17+05:00"),  # its offset is kept
        ("2015-02-07T13:28:17-05:00", "2015-02-07T13:28:17-05:00"),
        ("2015-02-07T13:28:17+0530", "2015-02-07T13:28:17+05:30"),
        ("2015-02-07T13:28:17Z", "2015-02-07T13:28:17+00:00"),
        ("2015-02-07 13:28:17.5", "2015-02-07T13:28:17.500000+02:00"),
        ("201502071740", "2015-02-07T17:40:00+02:00"),
        ("20150207T174003", "2015-02-07T17:40:03+02:00"),
        ("05/03/2094 14:30", "2094-03-05T14:30:00+02:00"),
        ("Wed, 13 Mar 2075 00:00:00 GMT", "2075-03-13T00:00:00+00:00"),
        # A date alone stays a date: FHIR dateTime allows it.
        ("2015", "2015"),
        ("2015-02", "2015-02"),
        ("201502", "2015-02"),
        ("2015-02-07", "2015-02-07"),
        ("20150207", "2015-02-07"),
        ("2094-03-05 00:00:00", "2094-03-05T00:00:00+02:00"),
        (dt.datetime(2164, 10, 23, 21, 9), "2164-10-23T21:09:00+02:00"),
        (dt.datetime(2164, 10, 23, 21, 9, 5, 250000), "2164-10-23T21:09:05.250000+02:00"),
        (
            dt.datetime(2164, 10, 23, 21, 9, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
            "2164-10-23T21:09:00-03:00",
        ),
        (dt.datetime(2164, 10, 23, 21, 9, tzinfo=dt.UTC), "2164-10-23T21:09:00+00:00"),
        (dt.date(2094, 3, 5), "2094-03-05"),
    ],
)
def test_clean_datetime(value: object, expected: str) -> None:
    result = clean("clean_dateTime", value)
    assert result == expected
    assert FHIR_DATETIME.fullmatch(result)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2015", "2015-01-01T00:00:00+02:00"),
        ("2015-02", "2015-02-01T00:00:00+02:00"),
        ("201502", "2015-02-01T00:00:00+02:00"),
        ("2015-02-07", "2015-02-07T00:00:00+02:00"),
        ("20150207", "2015-02-07T00:00:00+02:00"),
        ("2015-02-07 13:28:17", "2015-02-07T13:28:17+02:00"),
        ("2015-02-07T13:28:17", "2015-02-07T13:28:17+02:00"),
        ("2015-02-07T13:28:17+05:00", "2015-02-07T13:28:17+05:00"),
        ("2015-02-07T13:28:17-05:00", "2015-02-07T13:28:17-05:00"),
        ("Wed, 13 Mar 2075 00:00:00 GMT", "2075-03-13T00:00:00+00:00"),
        ("201502071740", "2015-02-07T17:40:00+02:00"),
        (dt.date(2094, 3, 5), "2094-03-05T00:00:00+02:00"),
        (dt.datetime(2164, 10, 23, 21, 9), "2164-10-23T21:09:00+02:00"),
    ],
)
def test_clean_instant(value: object, expected: str) -> None:
    result = clean("clean_instant", value)
    assert result == expected
    assert FHIR_INSTANT.fullmatch(result)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["clean_dateTime", "clean_instant"])
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not a date", "cannot read 'not a date' as a date; expected"),
        ("2020-02-30T10:00:00", "day is out of range for month"),
        (False, "cannot read False (bool) as a date"),
        (dt.time(10, 30), "(time) as a date"),
    ],
)
def test_datetime_scripts_refuse_what_they_cannot_read(
    name: str, value: object, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        clean(name, value)


# --- time zones -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timezone", "value", "expected"),
    [
        ("+02:00", "2020-01-15 10:00:00", "2020-01-15T10:00:00+02:00"),
        ("+02:00", "2020-07-15 10:00:00", "2020-07-15T10:00:00+02:00"),
        ("-05:30", "2020-07-15 10:00:00", "2020-07-15T10:00:00-05:30"),
        ("+0100", "2020-07-15 10:00:00", "2020-07-15T10:00:00+01:00"),
        ("+01", "2020-07-15 10:00:00", "2020-07-15T10:00:00+01:00"),
        ("Z", "2020-07-15 10:00:00", "2020-07-15T10:00:00+00:00"),
        ("UTC", "2020-07-15 10:00:00", "2020-07-15T10:00:00+00:00"),
        # Europe/Paris: +01:00 in winter, +02:00 in summer.
        ("Europe/Paris", "2020-01-15 10:00:00", "2020-01-15T10:00:00+01:00"),
        ("Europe/Paris", "2020-07-15 10:00:00", "2020-07-15T10:00:00+02:00"),
        ("Europe/Paris", "2020-03-29 01:59:59", "2020-03-29T01:59:59+01:00"),
        ("Europe/Paris", "2020-03-29 03:00:00", "2020-03-29T03:00:00+02:00"),
        # 02:30 does not exist that night: the offset in force before the change.
        ("Europe/Paris", "2020-03-29 02:30:00", "2020-03-29T02:30:00+01:00"),
        # 02:30 happens twice on 25 October 2020: the first one (summer time).
        ("Europe/Paris", "2020-10-25 02:30:00", "2020-10-25T02:30:00+02:00"),
        ("Europe/Paris", "2020-10-25 03:30:00", "2020-10-25T03:30:00+01:00"),
        # MIMIC's shifted years are past the zone's table: the rule still applies.
        ("Europe/Paris", "2164-01-23 21:09:00", "2164-01-23T21:09:00+01:00"),
        ("Europe/Paris", "2164-10-23 21:09:00", "2164-10-23T21:09:00+02:00"),
        # Before 1911 Paris used its mean time (+00:09:21): minutes only, for FHIR.
        ("Europe/Paris", "1800-01-01 00:00:00", "1800-01-01T00:00:00+00:09"),
        ("America/New_York", "2020-01-15 10:00:00", "2020-01-15T10:00:00-05:00"),
        ("America/New_York", "2020-07-15 10:00:00", "2020-07-15T10:00:00-04:00"),
        ("Asia/Kolkata", "2020-07-15 10:00:00", "2020-07-15T10:00:00+05:30"),
        # A value with its own offset keeps it, whatever the source's zone.
        ("Europe/Paris", "2020-01-15T10:00:00-03:00", "2020-01-15T10:00:00-03:00"),
        # A date stays a date.
        ("Europe/Paris", "2020-01-15", "2020-01-15"),
    ],
)
def test_clean_datetime_in_the_source_time_zone(timezone: str, value: str, expected: str) -> None:
    scripts = ScriptRegistry.default(timezone)
    result = clean("clean_dateTime", value, scripts)
    assert result == expected
    assert FHIR_DATETIME.fullmatch(result)  # type: ignore[arg-type]


def test_clean_instant_in_a_named_zone_follows_daylight_saving_time() -> None:
    assert clean("clean_instant", "2020-01-15", PARIS) == "2020-01-15T00:00:00+01:00"
    assert clean("clean_instant", "2020-07-15", PARIS) == "2020-07-15T00:00:00+02:00"
    assert clean("clean_instant", dt.datetime(2020, 7, 15, 8), PARIS) == "2020-07-15T08:00:00+02:00"


def test_merge_datetime_in_a_named_zone_follows_daylight_saving_time() -> None:
    assert merge("merge_datetime", "2020-01-15", "08:00", scripts=PARIS) == (
        "2020-01-15T08:00:00+01:00"
    )
    assert merge("merge_datetime", "2020-07-15", "08:00", scripts=PARIS) == (
        "2020-07-15T08:00:00+02:00"
    )


def test_the_default_time_zone_is_plus_two_hours() -> None:
    assert SCRIPTS.timezone.utcoffset(None) == dt.timedelta(hours=2)
    assert clean("clean_dateTime", "2020-01-15 10:00:00") == "2020-01-15T10:00:00+02:00"


def test_registries_keep_their_own_time_zone() -> None:
    utc = ScriptRegistry.default("UTC")
    assert clean("clean_dateTime", "2020-01-15 10:00:00", utc) == "2020-01-15T10:00:00+00:00"
    assert clean("clean_dateTime", "2020-01-15 10:00:00", PARIS) == "2020-01-15T10:00:00+01:00"
    assert clean("clean_dateTime", "2020-01-15 10:00:00") == "2020-01-15T10:00:00+02:00"


@pytest.mark.parametrize("timezone", ["Mars/Olympus", "+25:00", "2 hours", "+02:61", ""])
def test_a_wrong_time_zone_is_refused(timezone: str) -> None:
    with pytest.raises(ValueError, match="time zone|offset"):
        ScriptRegistry.default(timezone)


def test_parse_timezone() -> None:
    assert parse_timezone("+02:00") == dt.timezone(dt.timedelta(hours=2))
    assert parse_timezone(" -0330 ") == dt.timezone(-dt.timedelta(hours=3, minutes=30))
    assert parse_timezone("Z") == dt.UTC
    assert str(parse_timezone("Europe/Paris")) == "Europe/Paris"


# --- clean_time -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20:15:00", "20:15:00"),
        ("20:15:00.003", "20:15:00"),
        ("9:05", "09:05:00"),
        ("20:15", "20:15:00"),
        ("20150207174003", "17:40:03"),
        ("201502071740", "17:40:00"),
        ("2015-02-07 13:28:17", "13:28:17"),
        ("2015-02-07T13:28:17", "13:28:17"),
        ("2015-02-07T13:28:17+05:00", "13:28:17"),
        ("2015-02-07T13:28:17-05:00", "13:28:17"),
        ("Wed, 13 Mar 2075 13:28:17 GMT", "13:28:17"),
        ("13:28:17-05:00", "13:28:17"),
        ("13:28:17Z", "13:28:17"),
        ("20::15::02", "20:15:02"),
        ("20 15 02", "20:15:02"),
        ("201502", "20:15:02"),
        ("2015", "20:15:00"),
        ("14h30", "14:30:00"),
        ("14h", "14:00:00"),
        (" 14 h 30 ", "14:30:00"),
        (930, "09:30:00"),
        (1430, "14:30:00"),
        (0, "00:00:00"),
        (143005, "14:30:05"),
        (dt.time(9, 5, 3, 999), "09:05:03"),
        (dt.time(9, 5, tzinfo=dt.UTC), "09:05:00"),
        (dt.datetime(2020, 1, 1, 23, 59, 59), "23:59:59"),
        (dt.timedelta(hours=3, minutes=4, seconds=5), "03:04:05"),
    ],
)
def test_clean_time(value: object, expected: str) -> None:
    result = clean("clean_time", value)
    assert result == expected
    assert FHIR_TIME.fullmatch(result)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("25:00", "cannot read '25:00' as a time: hour must be in 0..23"),
        ("12:61", "minute must be in 0..59"),
        ("noon", "cannot read 'noon' as a time; expected HH:MM[:SS]"),
        ("2015-02-07", "cannot read '2015-02-07' as a time"),  # a date has no time
        ("20150207", "cannot read '20150207' as a time"),
        (dt.date(2015, 2, 7), "datetime.date(2015, 2, 7) is a date, it has no time of day"),
        (dt.timedelta(days=1, hours=1), "is not a time of day"),
        (-5, "cannot read -5 as a time"),
        (12.5, "cannot read 12.5 (float) as a time"),
        (True, "cannot read True (bool) as a time"),
    ],
)
def test_clean_time_refuses_what_it_cannot_read(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        clean("clean_time", value)


# --- merge_datetime ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (("2015-02-07", "13:28:17"), "2015-02-07T13:28:17+02:00"),
        (("2015-02-07", "13:28"), "2015-02-07T13:28:00+02:00"),
        (("2015-02-07", "13:28:17-05:00"), "2015-02-07T13:28:17-05:00"),
        (("20150207", "1328"), "2015-02-07T13:28:00+02:00"),
        (("07/02/2015", "13h28"), "2015-02-07T13:28:00+02:00"),
        ((dt.date(2015, 2, 7), dt.time(13, 28, 17)), "2015-02-07T13:28:17+02:00"),
        # A timestamp column holding a date at midnight gives its date only.
        ((dt.datetime(2015, 2, 7), dt.time(13, 28)), "2015-02-07T13:28:00+02:00"),
        ((dt.date(2015, 2, 7), dt.datetime(2000, 1, 1, 8, 15)), "2015-02-07T08:15:00+02:00"),
        ((dt.date(2015, 2, 7), dt.timedelta(hours=8, minutes=15)), "2015-02-07T08:15:00+02:00"),
        ((dt.date(2015, 2, 7), 815), "2015-02-07T08:15:00+02:00"),
        # Without a time: the date as clean_dateTime gives it.
        (("2015-02-07", None), "2015-02-07"),
        (("2015-02-07", ""), "2015-02-07"),
        (("2015-02-07 10:00:00",), "2015-02-07T10:00:00+02:00"),
        ((dt.datetime(2015, 2, 7, 10),), "2015-02-07T10:00:00+02:00"),
        # Without a date: nothing.
        ((None, "13:28:17"), None),
        (("", "13:28:17"), None),
        ((), None),
    ],
)
def test_merge_datetime(values: tuple[object, ...], expected: str | None) -> None:
    assert merge("merge_datetime", *values) == expected


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (("2015-02-07", "noon"), "cannot read 'noon' as a time"),
        (("someday", "13:00"), "cannot read 'someday' as a date"),
        (("2015-02", "13:00"), "'2015-02' is not a full date"),
        (("2015-02-07", "13:00", "extra"), "merge_datetime takes a date and a time, not 3 values"),
    ],
)
def test_merge_datetime_refuses_what_it_cannot_read(
    values: tuple[object, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        merge("merge_datetime", *values)


# --- clean_phone ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("01 23 45 67 89", "01 23 45 67 89"),
        ("01.23.45.67.89", "01 23 45 67 89"),
        ("01-23-45-67-89", "01 23 45 67 89"),
        ("0123456789", "01 23 45 67 89"),
        ("01 23 45 67 89 ", "01 23 45 67 89"),
        ("0 800 123 456", "08 00 12 34 56"),
        ("+33 1 23 45 67 89", "01 23 45 67 89"),
        ("+33123456789", "01 23 45 67 89"),
        ("+33 (0)6 12 34 56 78", "06 12 34 56 78"),
        ("0033 6 12 34 56 78", "06 12 34 56 78"),
        ("0033 (0)1 23 45 67 89", "01 23 45 67 89"),
        ("tel: 06-12-34-56-78 (perso)", "06 12 34 56 78"),
        ("06 12 34 56 78 / 01 23 45 67 89", "06 12 34 56 78"),  # the first one
        ("12 34 56 78 90", "12 34 56 78 90"),  # five pairs, as the original did
        ("+1 (555) 123-4567", "+15551234567"),
        ("+44 20 7946 0958", "+442079460958"),
        ("0044 20 7946 0958", "+442079460958"),
        (123456789, "01 23 45 67 89"),  # a numeric column lost the leading 0
        (612345678, "06 12 34 56 78"),
        (1234567890, "12 34 56 78 90"),
    ],
)
def test_clean_phone(value: object, expected: str) -> None:
    assert clean("clean_phone", value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("inconnu", "no phone number in 'inconnu'"),
        ("01 23 45", "no phone number in '01 23 45'"),
        ("0123456789012", "no phone number in '0123456789012'"),
        (12.5, "cannot read 12.5 (float) as a phone"),
        (True, "cannot read True (bool) as a phone"),
    ],
)
def test_clean_phone_refuses_what_it_cannot_read(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        clean("clean_phone", value)


# --- clean_quantity ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("150", 150),
        ("150.005", 150.005),
        ("-150", -150),
        ("-150.005", -150.005),
        ("+3", 3),
        ("12,5 mg", 12.5),
        ("12.5mg/l", 12.5),
        ("37,2 °C", 37.2),
        ("80 %", 80),
        (" 7 ", 7),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("2.5E-3 g", 0.0025),
        (150, 150),
        (150.005, 150.005),
        (-150, -150),
        (Decimal("2.50"), Decimal("2.50")),
        (0, 0),
    ],
)
def test_clean_quantity(value: object, expected: object) -> None:
    result = clean("clean_quantity", value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "cannot read 'abc' as a number"),
        ("<5", "cannot read '<5' as a number"),
        ("5-10", "cannot read '5-10' as a number"),
        ("1.2.3", "cannot read '1.2.3' as a number"),
        ("1,234.5", "cannot read '1,234.5' as a number"),
        ("mg 12", "cannot read 'mg 12' as a number"),
        (float("nan"), "nan is not a finite number"),
        (Decimal("Infinity"), "is not a finite number"),
        (True, "cannot read True (bool) as a number"),
        (dt.date(2020, 1, 1), "(date) as a number"),
    ],
)
def test_clean_quantity_refuses_what_it_cannot_read(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        clean("clean_quantity", value)


# --- codes, genders, marital status -----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ICD10:A01", "A01"),
        ("HL7:male", "male"),
        ("LOINC:1234-5", "1234-5"),
        ("ICD-O-3:8140/3", "8140/3"),
        ("CIM10 : I10", "I10"),
        ("SNOMED:123:456", "123:456"),  # only the first prefix goes
        ("A01", "A01"),
        (" A01 ", "A01"),
        ("http://loinc.org", "http://loinc.org"),  # a URL is no prefixed code
        ("123:456", "123:456"),  # a prefix starts with a letter
        ("ICD10:", "ICD10:"),  # nothing after the prefix: kept
        (401, 401),
    ],
)
def test_clean_codes(value: object, expected: object) -> None:
    assert clean("clean_codes", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("M", "male"),
        ("F", "female"),
        ("m", "male"),
        ("f", "female"),
        (" F ", "female"),
        ("HL7:M", "male"),
        ("HL7:F", "female"),
        ("hl7:f", "female"),
        ("male", "male"),
        ("Female", "female"),
        ("U", "unknown"),
        ("X", "unknown"),
        ("other", "unknown"),
        ("not-a-valid-gender", "unknown"),
        (1, "unknown"),
        (True, "unknown"),
    ],
)
def test_map_gender(value: object, expected: str) -> None:
    assert clean("map_gender", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Every marital status of the MIMIC-III demo.
        ("MARRIED", "M"),
        ("SINGLE", "S"),
        ("WIDOWED", "W"),
        ("DIVORCED", "D"),
        ("SEPARATED", "L"),
        ("UNKNOWN (DEFAULT)", "UNK"),
        # MIMIC-III's other value, and other spellings.
        ("LIFE PARTNER", "T"),
        ("life  partner", "T"),
        ("UNKNOWN", "UNK"),
        ("married", "M"),
        (" Widowed ", "W"),
        # Codes of the value set are kept; anything else is unknown.
        ("M", "M"),
        ("U", "U"),
        ("UNK", "UNK"),
        ("ENGAGED", "UNK"),
        (3, "UNK"),
    ],
)
def test_map_marital_status(value: object, expected: str) -> None:
    assert clean("map_marital_status", value) == expected


# --- booleans ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, False),
        (1, True),
        ("0", False),
        ("1", True),
        (" 1 ", True),
        (0.0, False),
        (1.0, True),
        (Decimal("1"), True),
        (True, True),
        (False, False),
    ],
)
def test_binary_to_bool_1(value: object, expected: bool) -> None:
    assert clean("binary_to_bool_1", value) is expected


@pytest.mark.parametrize("value", [2, -1, "2", "yes", "true", "01x", 0.5, dt.date(2020, 1, 1)])
def test_binary_to_bool_1_refuses_other_values(value: object) -> None:
    with pytest.raises(ValueError, match=re.escape(f"{value!r} is neither 0 nor 1")):
        clean("binary_to_bool_1", value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("false", False),
        ("False", False),
        ("FALSE", False),
        ("yes", True),
        ("no", False),
        ("Y", True),
        ("n", False),
        ("t", True),
        ("f", False),
        ("1", True),
        ("0", False),
        ("on", True),
        ("off", False),
        ("oui", True),
        ("non", False),
        ("vrai", True),
        ("faux", False),
        (" true ", True),
        (1, True),
        (0, False),
        (True, True),
        (False, False),
    ],
)
def test_string_to_bool(value: object, expected: bool) -> None:
    assert clean("string_to_bool", value) is expected


@pytest.mark.parametrize("value", ["maybe", "2", "truee", 2, 0.5, dt.date(2020, 1, 1)])
def test_string_to_bool_refuses_other_values(value: object) -> None:
    with pytest.raises(ValueError, match=re.escape(f"{value!r} is not a boolean")):
        clean("string_to_bool", value)


# --- text -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("  Jean  ", "Jean"),
        ("Jean", "Jean"),
        ("\tJean Dupont\n", "Jean Dupont"),
        (12, 12),
        (dt.date(2020, 1, 1), dt.date(2020, 1, 1)),
    ],
)
def test_strip(value: object, expected: object) -> None:
    assert clean("strip", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("jean dupont", "Jean Dupont"),
        ("JEAN DUPONT", "Jean Dupont"),
        ("  jean-pierre  ", "Jean-Pierre"),
        ("o'neil", "O'Neil"),
        ("élodie", "Élodie"),
        ("CATHOLIC", "Catholic"),
        (12, 12),
    ],
)
def test_make_title(value: object, expected: object) -> None:
    assert clean("make_title", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, None),
        (0.0, None),
        (Decimal("0.00"), None),
        ("0", None),
        (" 0 ", None),
        ("00", None),
        ("0.0", None),
        ("0,00", None),
        ("-0", None),
        (1, 1),
        ("10", "10"),
        ("0.5", "0.5"),
        ("abc", "abc"),
        (False, False),  # a boolean is no zero
    ],
)
def test_zero_to_empty(value: object, expected: object) -> None:
    assert clean("zero_to_empty", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("-1", None),
        (" -1 ", None),
        (-1, None),
        (Decimal("-1"), None),
        ("(sans)", None),
        ("(SANS)", None),
        ("-2", "-2"),
        ("1", "1"),
        (0, 0),
        ("sans", "sans"),
        ("A01", "A01"),
        (True, True),
    ],
)
def test_code_to_empty(value: object, expected: object) -> None:
    assert clean("code_to_empty", value) == expected


# --- merging scripts --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (("Jean", "Dupont"), "Jean Dupont"),
        ((10006, "(4)"), "10006 (4)"),
        ((10006, 9467), "10006 9467"),
        (("Jean", None, "Dupont"), "Jean Dupont"),
        (("Jean", "", "  ", "Dupont"), "Jean Dupont"),
        ((12.0, 12.5, Decimal("3.0"), Decimal("2.50")), "12 12.5 3 2.50"),
        ((True, False), "true false"),
        (
            (dt.date(2020, 1, 2), dt.datetime(2020, 1, 2, 3, 4), dt.time(5, 6)),
            "2020-01-02 2020-01-02T03:04:00 05:06:00",
        ),
        (("test",), "test"),
        ((" a ", "b"), " a  b"),  # values are not stripped
    ],
)
def test_merge_concat(values: tuple[object, ...], expected: str) -> None:
    assert merge("merge_concat", *values) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (("AB", "12"), "AB12"),
        (("AB", None, 12.0, "", "C"), "AB12C"),
        ((1, 2, 3), "123"),
        ((True,), "true"),
    ],
)
def test_merge_concat_without_separator(values: tuple[object, ...], expected: str) -> None:
    assert merge("merge_concat_without_separator", *values) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((None, "", "  ", "b", "c"), "b"),
        (("a", "b"), "a"),
        ((None, 0), 0),  # 0 is a value
        ((None, False), False),
        ((None, dt.date(2020, 1, 1)), dt.date(2020, 1, 1)),
    ],
)
def test_select_first_not_empty(values: tuple[object, ...], expected: object) -> None:
    assert merge("select_first_not_empty", *values) == expected


@pytest.mark.parametrize(
    ("values", "largest", "smallest"),
    [
        ((1, 2, 3), 3, 1),
        (("a", "b", "ab"), "b", "a"),
        ((3, None, 1), 3, 1),
        ((5,), 5, 5),
        ((3, "10"), "10", 3),  # a static value compares as a number
        ((2.5, Decimal("2.6"), 1), Decimal("2.6"), 1),
        (("9", "10"), "10", "9"),
        ((dt.date(2020, 1, 1), dt.date(2019, 5, 1)), dt.date(2020, 1, 1), dt.date(2019, 5, 1)),
        ((dt.date(2020, 1, 1), "2019-05-01"), dt.date(2020, 1, 1), "2019-05-01"),
        (
            (dt.datetime(2020, 1, 1, 10), dt.date(2020, 1, 1)),
            dt.datetime(2020, 1, 1, 10),
            dt.date(2020, 1, 1),
        ),
        (("b", 3), "b", 3),  # mixed: compared as text
    ],
)
def test_select_max_and_min(values: tuple[object, ...], largest: object, smallest: object) -> None:
    assert merge("select_max", *values) == largest
    assert merge("select_min", *values) == smallest


# --- the registry -----------------------------------------------------------------------


def test_an_unknown_script_is_a_lookup_error_naming_it() -> None:
    with pytest.raises(UnknownScript) as caught:
        SCRIPTS.cleaning("clean_dat")
    assert isinstance(caught.value, LookupError)
    assert caught.value.name == "clean_dat"
    assert caught.value.kind == "cleaning"
    assert str(caught.value) == "unknown cleaning script 'clean_dat' (did you mean 'clean_date'?)"


def test_an_unknown_merging_script() -> None:
    with pytest.raises(UnknownScript, match=r"^unknown merging script 'frobnicate'$"):
        SCRIPTS.merging("frobnicate")


def test_a_script_of_the_other_kind_is_unknown_and_said_so() -> None:
    with pytest.raises(
        UnknownScript, match=r"unknown cleaning script 'merge_concat' \('merge_concat' is a merging"
    ):
        SCRIPTS.cleaning("merge_concat")
    with pytest.raises(UnknownScript, match="'clean_date' is a cleaning script"):
        SCRIPTS.merging("clean_date")


def test_unknown_script_can_be_built_with_a_name_and_a_kind() -> None:
    error = UnknownScript("x", "merging")
    assert str(error) == "unknown merging script 'x'"


def test_a_registry_from_plain_tables() -> None:
    scripts = ScriptRegistry(cleaning={"upper": str.upper}, merging={"first": lambda *v: v[0]})
    assert scripts.cleaning("upper")("a") == "A"
    assert scripts.merging("first")(1, 2) == 1
    assert scripts.names() == ["first", "upper"]
    assert not scripts.is_cleaning("clean_date")


def test_no_extra_location_means_built_ins_only() -> None:
    assert ScriptRegistry.default(extra="").names() == SCRIPTS.names()
    assert ScriptRegistry.default(extra=None).names() == SCRIPTS.names()


# --- user scripts -----------------------------------------------------------------------


def write(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


WARD_SCRIPTS = """
    from river.scripts import cleaning_script, merging_script

    @cleaning_script
    def map_ward(value):
        return None if value is None else "ward-" + str(value).strip().lower()

    @merging_script(name="join_commas")
    def join_with_commas(*values):
        return ", ".join(str(v) for v in values if v is not None)

    def helper(value):  # not a script: no decorator
        return value
"""


def test_user_scripts_from_a_file(tmp_path: Path) -> None:
    file = write(tmp_path / "wards.py", WARD_SCRIPTS)
    scripts = ScriptRegistry.default(extra=str(file))
    assert scripts.cleaning("map_ward")(" A12 ") == "ward-a12"
    assert scripts.merging("join_commas")("a", None, "b") == "a, b"
    assert not scripts.is_cleaning("helper")
    assert not scripts.is_merging("join_with_commas")
    # The built-ins are still there, bound to the time zone.
    assert scripts.cleaning("clean_date")("2020-01-02 10:00:00") == "2020-01-02"
    assert set(BUILTIN_CLEANING) < set(scripts.names("cleaning"))


def test_user_scripts_from_an_importable_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "hospital_scripts_pkg"
    package.mkdir()
    write(package / "__init__.py", "")
    write(package / "wards.py", WARD_SCRIPTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        scripts = ScriptRegistry.default(extra="hospital_scripts_pkg.wards")
        assert scripts.cleaning("map_ward")("B") == "ward-b"
        assert scripts.is_merging("join_commas")
    finally:
        for name in [n for n in sys.modules if n.startswith("hospital_scripts_pkg")]:
            del sys.modules[name]


def test_user_scripts_from_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "scripts"
    folder.mkdir()
    write(folder / "wards.py", WARD_SCRIPTS)
    write(
        folder / "_codes.py",  # a helper: loaded only by those that import it
        """
        PREFIX = "X-"
        """,
    )
    write(
        folder / "codes.py",
        """
        from _codes import PREFIX
        from river.scripts import cleaning_script

        @cleaning_script
        def prefix_code(value):
            return None if value is None else PREFIX + value
        """,
    )
    write(folder / "notes.txt", "not python")
    scripts = ScriptRegistry.default("Europe/Paris", extra=str(folder))
    assert scripts.cleaning("prefix_code")("12") == "X-12"
    assert scripts.cleaning("map_ward")("c") == "ward-c"
    assert scripts.is_merging("join_commas")
    assert scripts.cleaning("clean_dateTime")("2020-01-15 10:00:00") == "2020-01-15T10:00:00+01:00"


def test_a_user_script_replaces_a_built_in_only_when_it_says_so(tmp_path: Path) -> None:
    silent = write(
        tmp_path / "silent.py",
        """
        from river.scripts import cleaning_script

        @cleaning_script
        def clean_phone(value):
            return value
        """,
    )
    with pytest.raises(ScriptLoadError) as caught:
        ScriptRegistry.default(extra=str(silent))
    message = str(caught.value)
    assert str(silent) in message
    assert "cleaning script 'clean_phone' has the name of a built-in script" in message
    assert "@cleaning_script(override=True)" in message

    explicit = write(
        tmp_path / "explicit.py",
        """
        from river.scripts import cleaning_script

        @cleaning_script(override=True)
        def clean_phone(value):
            return None  # drop phones instead of failing on them
        """,
    )
    scripts = ScriptRegistry.default(extra=str(explicit))
    assert scripts.cleaning("clean_phone")("inconnu") is None
    assert SCRIPTS.cleaning("clean_phone")("01 23 45 67 89") == "01 23 45 67 89"  # untouched


def test_a_user_merging_script_may_replace_a_built_in_under_another_function_name(
    tmp_path: Path,
) -> None:
    file = write(
        tmp_path / "concat.py",
        """
        from river.scripts import merging_script

        @merging_script(name="merge_concat", override=True)
        def concat_with_dashes(*values):
            return "-".join(str(v) for v in values if v is not None)
        """,
    )
    scripts = ScriptRegistry.default(extra=str(file))
    assert scripts.merging("merge_concat")(1, None, "a") == "1-a"


def test_one_function_may_be_both_kinds_of_script(tmp_path: Path) -> None:
    file = write(
        tmp_path / "both.py",
        """
        from river.scripts import cleaning_script, merging_script

        @cleaning_script(name="shout")
        @merging_script(name="shout_all")
        def shout(*values):
            return " ".join(str(v).upper() for v in values)
        """,
    )
    scripts = ScriptRegistry.default(extra=str(file))
    assert scripts.cleaning("shout")("a") == "A"
    assert scripts.merging("shout_all")("a", "b") == "A B"


def test_two_user_files_cannot_define_the_same_script(tmp_path: Path) -> None:
    folder = tmp_path / "scripts"
    folder.mkdir()
    source = """
        from river.scripts import cleaning_script

        @cleaning_script
        def map_ward(value):
            return value
    """
    write(folder / "a.py", source)
    write(folder / "b.py", source)
    with pytest.raises(ScriptLoadError) as caught:
        ScriptRegistry.default(extra=str(folder))
    message = str(caught.value)
    assert str(folder / "b.py") in message
    assert f"cleaning script 'map_ward' is also defined in {folder / 'a.py'}" in message


def test_a_script_imported_from_a_neighbour_is_not_a_duplicate(tmp_path: Path) -> None:
    folder = tmp_path / "scripts"
    folder.mkdir()
    write(folder / "wards.py", WARD_SCRIPTS)
    write(
        folder / "more.py",
        """
        from river.scripts import cleaning_script
        from wards import map_ward  # noqa: F401, the same function

        @cleaning_script
        def other(value):
            return value
        """,
    )
    scripts = ScriptRegistry.default(extra=str(folder))
    assert scripts.is_cleaning("map_ward")
    assert scripts.is_cleaning("other")


def test_a_broken_user_file_names_the_file_and_the_line(tmp_path: Path) -> None:
    file = write(
        tmp_path / "broken.py",
        """
        from river.scripts import cleaning_script

        TABLE = {"a": 1}
        VALUE = TABLE["missing"]
        """,
    )
    with pytest.raises(ScriptLoadError) as caught:
        ScriptRegistry.default(extra=str(file))
    assert str(caught.value) == f"user scripts {file}: KeyError: 'missing' (line 5)"
    assert caught.value.location == str(file)
    assert isinstance(caught.value.__cause__, KeyError)


def test_a_user_file_with_a_syntax_error(tmp_path: Path) -> None:
    file = write(tmp_path / "typo.py", "def clean(value)\n    return value\n")
    with pytest.raises(ScriptLoadError) as caught:
        ScriptRegistry.default(extra=str(file))
    message = str(caught.value)
    assert message.startswith(f"user scripts {file}: SyntaxError: ")
    assert "line 1" in message


def test_a_broken_file_in_a_folder_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "scripts"
    folder.mkdir()
    write(folder / "good.py", WARD_SCRIPTS)
    write(folder / "bad.py", "import no_such_module_for_river_tests\n")
    with pytest.raises(
        ScriptLoadError,
        match=re.escape(f"user scripts {folder / 'bad.py'}: ModuleNotFoundError: No module named"),
    ):
        ScriptRegistry.default(extra=str(folder))


def test_a_broken_importable_module_is_named_with_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = write(tmp_path / "river_test_broken_module.py", "raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(ScriptLoadError) as caught:
            ScriptRegistry.default(extra="river_test_broken_module")
    finally:
        sys.modules.pop("river_test_broken_module", None)
    assert str(caught.value) == (
        f"user scripts river_test_broken_module ({file}): RuntimeError: boom (line 1)"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("no_such_river_scripts_module", "no such module, file or folder"),
        ("/no/such/folder", "user scripts /no/such/folder: no such file or folder"),
        ("missing.py", "user scripts missing.py: no such file or folder"),
    ],
)
def test_a_missing_location_is_refused(extra: str, message: str) -> None:
    with pytest.raises(ScriptLoadError, match=re.escape(message)):
        ScriptRegistry.default(extra=extra)


def test_a_location_without_scripts_is_refused(tmp_path: Path) -> None:
    file = write(tmp_path / "plain.py", "def helper(value):\n    return value\n")
    with pytest.raises(ScriptLoadError, match="no script found: mark functions with @cleaning"):
        ScriptRegistry.default(extra=str(file))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ScriptLoadError, match="the folder holds no .py file"):
        ScriptRegistry.default(extra=str(empty))


def test_a_cleaning_script_must_take_one_value(tmp_path: Path) -> None:
    file = write(
        tmp_path / "two.py",
        """
        from river.scripts import cleaning_script

        @cleaning_script
        def combine(a, b):
            return a
        """,
    )
    with pytest.raises(ScriptLoadError) as caught:
        ScriptRegistry.default(extra=str(file))
    assert str(caught.value) == (
        f"user scripts {file}: cleaning script 'combine' (combine) must take exactly one value"
    )


def test_the_decorators_return_the_function_itself() -> None:
    def plain(value: object) -> object:
        return value

    assert cleaning_script(plain) is plain
    assert merging_script(name="other")(plain) is plain
    with pytest.raises(TypeError, match="non-empty string"):
        cleaning_script(name="")(plain)
