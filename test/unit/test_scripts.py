"""Cleaning and merging scripts (docs/mapping.md, Scripts) and the script registry."""

from __future__ import annotations

import datetime as dt
import re
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from river.concept_maps import ConceptMaps
from river.errors import BadValue, InvalidMapping
from river.plan import InputGroup, ResourcePlan
from river.scripts import (
    ScriptLoadError,
    ScriptRegistry,
    UnknownScript,
    cleaning_script,
    merging_script,
    parse_timezone,
)
from river.scripts.registry import unknown_script_message
from river.transform import ResourceTransformer
from test.unit.mapping_builder import ExportBuilder

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
    "binary_to_bool_2",
    "clean_address",
    "clean_codes",
    "clean_date",
    "clean_dateTime",
    "clean_epoch_dateTime",
    "clean_instant",
    "clean_long_text_ORBIS",
    "clean_phone",
    "clean_quantity",
    "clean_time",
    "code_to_empty",
    "make_title",
    "map_2_true",
    "map_deceased",
    "map_family_situation",
    "map_gender",
    "map_gender_numeric",
    "map_intent",
    "map_marital_status",
    "map_permission",
    "map_priority",
    "map_status",
    "string_to_bool",
    "strip",
    "zero_to_empty",
]
BUILTIN_MERGING = [
    "merge_concat",
    "merge_concat_without_separator",
    "merge_datetime",
    "merge_insee",
    "merge_instant",
    "merge_status",
    "select_first_not_empty",
    "select_max",
    "select_min",
]
# The original's 34 scripts (select_max and select_min are FHIR River's own).
ORIGINAL_SCRIPTS = sorted(set(BUILTIN_CLEANING + BUILTIN_MERGING) - {"select_max", "select_min"})
# Mapping scripts whose original gave a code for a missing value.
CODE_FOR_EMPTY = {
    "map_marital_status": "UNK",
    "map_gender_numeric": "unknown",
    "map_status": "unknown",
    "map_priority": "routine",
    "map_intent": "proposal",
}
# Scripts that took the texts NaN, NaT, None and (null) for empty, as the original did.
EMPTY_TEXT_AWARE = [
    "binary_to_bool_1",
    "clean_codes",
    "clean_date",
    "clean_dateTime",
    "clean_epoch_dateTime",
    "clean_instant",
    "clean_long_text_ORBIS",
    "clean_phone",
    "clean_quantity",
    "clean_time",
    "code_to_empty",
    "map_2_true",
    "map_gender",
    "map_marital_status",
    "map_intent",
    "map_permission",
    "zero_to_empty",
]


def test_the_registry_has_every_script_mapping_md_names() -> None:
    assert SCRIPTS.names("cleaning") == BUILTIN_CLEANING
    assert SCRIPTS.names("merging") == BUILTIN_MERGING
    assert SCRIPTS.names() == sorted(BUILTIN_CLEANING + BUILTIN_MERGING)
    assert len(ORIGINAL_SCRIPTS) == 34
    assert all(SCRIPTS.is_cleaning(name) for name in BUILTIN_CLEANING)
    assert all(SCRIPTS.is_merging(name) for name in BUILTIN_MERGING)
    assert not SCRIPTS.is_cleaning("merge_concat")
    assert not SCRIPTS.is_merging("clean_date")


@pytest.mark.parametrize("name", BUILTIN_CLEANING)
@pytest.mark.parametrize("empty", [None, "", "   ", "\t\n"])
def test_cleaning_scripts_give_none_for_empty_values(name: str, empty: object) -> None:
    assert clean(name, empty) == CODE_FOR_EMPTY.get(name)


@pytest.mark.parametrize("name", EMPTY_TEXT_AWARE)
@pytest.mark.parametrize("empty", ["NaN", "NaT", "None", "(null)", " NaN "])
def test_the_texts_the_original_took_for_empty(name: str, empty: str) -> None:
    assert clean(name, empty) == CODE_FOR_EMPTY.get(name)


@pytest.mark.parametrize("name", sorted(set(BUILTIN_MERGING) - {"merge_status", "merge_instant"}))
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
        # A year or a month alone is its first day, as the original gave it.
        ("2020", "2020-01-01"),
        ("2020-03", "2020-03-01"),
        ("2020-3", "2020-03-01"),
        ("202003", "2020-03-01"),
        ("20200305", "2020-03-05"),
        ("2015-02-07T13:28:17+0500", "2015-02-07"),
        ("0010-04-30", "0010-04-30"),
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
        (2020, "2020-01-01"),
        (20200305, "2020-03-05"),
        (Decimal("20200305"), "2020-03-05"),
        (1800, "1800-01-01"),
    ],
)
def test_clean_date(value: object, expected: str) -> None:
    result = clean("clean_date", value)
    assert result == expected
    assert FHIR_DATE.fullmatch(result)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "cannot read a text of 3 characters as a date; expected YYYY, YYYY-MM, YYYY-MM-DD"),
        ("2020-13-01", "cannot read a text of 10 characters as a date: month must be in 1..12"),
        (
            "2020-02-30",
            "cannot read a text of 10 characters as a date: day is out of range for month",
        ),
        ("03/25/2020", "cannot read a text of 10 characters as a date: month must be in 1..12"),
        ("2020-00", "cannot read a text of 7 characters as a date: month must be in 1..12"),
        ("2020030", "cannot read a text of 7 characters as a date; expected"),
        ("0000", "as a date: the year is out of range (1 to 9999)"),
        ("2020-03-05 25:00", "a text of 16 characters as a date: hour must be in 0..23"),
        ("2020-03-05 12:00+25:00", "as a date: its UTC offset is out of range"),
        ("yesterday", "expected YYYY"),
        (True, "cannot read a boolean as a date"),
        (3.5, "cannot read a decimal number as a date"),
        (dt.time(12), "cannot read a time of day as a date"),
        ([2020], "cannot read a list of 1 value as a date"),
    ],
)
def test_clean_date_refuses_what_it_cannot_read(value: object, message: str) -> None:
    with pytest.raises(BadValue, match=re.escape(message)) as refused:
        clean("clean_date", value)
    assert repr(value) not in str(refused.value)  # the value's shape, never the value


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
        # A FHIR date-time with an offset is kept as it is written, as the original did.
        ("2015-02-07T13:28:17Z", "2015-02-07T13:28:17Z"),
        ("2015-02-07T13:28:17.123+05:00", "2015-02-07T13:28:17.123+05:00"),
        (" 2015-02-07T13:28:17-00:00 ", "2015-02-07T13:28:17-00:00"),
        ("2015-02-07T13:28:17+0500", "2015-02-07T13:28:17+05:00"),
        ("2015-02-07T13:28:17.5Z", "2015-02-07T13:28:17.5Z"),
        ("2015-02-07 13:28:17.5", "2015-02-07T13:28:17.500000+02:00"),
        ("0010-04-30", "0010-04-30"),
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
        ("2015-02-07T13:28:17Z", "2015-02-07T13:28:17Z"),  # an instant already: kept
        ("2015-02-07T13:28:17.123+05:00", "2015-02-07T13:28:17.123+05:00"),
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
        ("not a date", "cannot read a text of 10 characters as a date; expected"),
        ("2020-02-30T10:00:00", "day is out of range for month"),
        ("2020-02-30T10:00:00+02:00", "day is out of range for month"),
        (False, "cannot read a boolean as a date"),
        (dt.time(10, 30), "cannot read a time of day as a date"),
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
        # A date alone is midnight, as the original gave it.
        ("2015-02-07", "00:00:00"),
        ("20150207", "00:00:00"),
        ("2015-02", "00:00:00"),
        (dt.date(2015, 2, 7), "00:00:00"),
        (20150207, "00:00:00"),
    ],
)
def test_clean_time(value: object, expected: str) -> None:
    result = clean("clean_time", value)
    assert result == expected
    assert FHIR_TIME.fullmatch(result)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("25:00", "cannot read a text of 5 characters as a time: hour must be in 0..23"),
        ("12:61", "minute must be in 0..59"),
        ("noon", "cannot read a text of 4 characters as a time; expected HH:MM[:SS]"),
        ("2020-02-30", "cannot read a text of 10 characters as a time"),  # no date: not midnight
        ("inconnu", "cannot read a text of 7 characters as a time"),
        (dt.timedelta(days=1, hours=1), "a duration outside 0 to 24 hours is not a time of day"),
        (-5, "cannot read a whole number of 1 digit as a time"),
        (12.5, "cannot read a decimal number as a time"),
        (True, "cannot read a boolean as a time"),
    ],
)
def test_clean_time_refuses_what_it_cannot_read(value: object, message: str) -> None:
    with pytest.raises(BadValue, match=re.escape(message)) as refused:
        clean("clean_time", value)
    assert repr(value) not in str(refused.value)  # the value's shape, never the value


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
        (("2015-02-07", "noon"), "cannot read a text of 4 characters as a time"),
        (("someday", "13:00"), "cannot read a text of 7 characters as a date"),
        (("2015-02", "13:00"), "the date is a month alone, not a full date"),
        (("2015-02-07", "13:00", "extra"), "merge_datetime takes a date and a time, not 3 values"),
    ],
)
def test_merge_datetime_refuses_what_it_cannot_read(
    values: tuple[object, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        merge("merge_datetime", *values)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (("2015-02-07", "13:28:17Z"), "2015-02-07T13:28:17Z"),  # a FHIR date-time: as written
        (("2015-02-07", "13:28:17.25+05:00"), "2015-02-07T13:28:17.25+05:00"),
        (("2015-02-07 ", " 13:28:17"), "2015-02-07T13:28:17+02:00"),
        (("NaN", "13:28:17"), None),
    ],
)
def test_merge_datetime_as_the_original_wrote_it(
    values: tuple[object, ...], expected: str | None
) -> None:
    assert merge("merge_datetime", *values) == expected


# --- merge_instant ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (("2015-02-07", "13:28:17"), "2015-02-07T13:28:17+02:00"),  # the original's test
        (("2015-02-07", "13:28"), "2015-02-07T13:28:00+02:00"),
        (("2015-02-07", "13:28:17-05:00"), "2015-02-07T13:28:17-05:00"),
        (("2015-02-07", "13:28:17Z"), "2015-02-07T13:28:17Z"),
        (("07/02/2015", "13h28"), "2015-02-07T13:28:00+02:00"),
        ((dt.date(2015, 2, 7), dt.time(13, 28, 17)), "2015-02-07T13:28:17+02:00"),
        ((dt.datetime(2015, 2, 7), 815), "2015-02-07T08:15:00+02:00"),
        # A date alone is midnight; a date-time alone is itself.
        (("2015-02-07",), "2015-02-07T00:00:00+02:00"),
        (("2015-02-07", None), "2015-02-07T00:00:00+02:00"),
        (("2015-02-07", "  "), "2015-02-07T00:00:00+02:00"),
        (("2015-02",), "2015-02-01T00:00:00+02:00"),
        (("2015-02-07 10:00:00",), "2015-02-07T10:00:00+02:00"),
        ((dt.date(2015, 2, 7),), "2015-02-07T00:00:00+02:00"),
        # Without a date: nothing.
        ((None, "13:28:17"), None),
        (("", "13:28:17"), None),
        ((None,), None),
    ],
)
def test_merge_instant(values: tuple[object, ...], expected: str | None) -> None:
    result = merge("merge_instant", *values)
    assert result == expected
    assert result is None or FHIR_INSTANT.fullmatch(result)


def test_merge_instant_in_a_named_zone() -> None:
    assert merge("merge_instant", "2020-01-15", scripts=PARIS) == "2020-01-15T00:00:00+01:00"
    assert merge("merge_instant", "2020-07-15", "08:00", scripts=PARIS) == (
        "2020-07-15T08:00:00+02:00"
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ((), "merge_instant takes a date and optionally a time, not 0 values"),
        (("11111", "2222", "3333"), "merge_instant takes a date and a time, not 3 values"),
        (("2015-02-07", "noon"), "cannot read a text of 4 characters as a time"),
        (("someday",), "cannot read a text of 7 characters as a date"),
        (("2015-02", "13:00"), "the date is a month alone, not a full date"),
    ],
)
def test_merge_instant_refuses_what_it_cannot_read(
    values: tuple[object, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        merge("merge_instant", *values)


# --- clean_epoch_dateTime ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Fewer than 12 digits: seconds; 12 or more: milliseconds. The true instant,
        # in the source's offset (+02:00 by default).
        ("1330063200000", "2012-02-24T08:00:00+02:00"),
        ("1330063200", "2012-02-24T08:00:00+02:00"),
        ("40246871", "1971-04-11T21:41:11+02:00"),
        ("1330695360000", "2012-03-02T15:36:00+02:00"),
        (1330063200000, "2012-02-24T08:00:00+02:00"),
        (1330063200, "2012-02-24T08:00:00+02:00"),
        (Decimal("1330063200000"), "2012-02-24T08:00:00+02:00"),
        (1330063200.0, "2012-02-24T08:00:00+02:00"),
        (" 1330063200000 ", "2012-02-24T08:00:00+02:00"),
        ("1330063200123", "2012-02-24T08:00:00.123000+02:00"),
        ("1330063200.5", "2012-02-24T08:00:00.500000+02:00"),  # the fraction is no digit
        ("1e3", "1970-01-01T02:16:40+02:00"),
        ("0", "1970-01-01T02:00:00+02:00"),
        ("-86400", "1969-12-31T02:00:00+02:00"),
        ("99999999999", "5138-11-16T11:46:39+02:00"),  # 11 digits: still seconds
        ("100000000000", "1973-03-03T11:46:40+02:00"),  # 12 digits: milliseconds
    ],
)
def test_clean_epoch_datetime(value: object, expected: str) -> None:
    result = clean("clean_epoch_dateTime", value)
    assert result == expected
    assert FHIR_DATETIME.fullmatch(result)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("timezone", "expected"),
    [
        ("Europe/Paris", "2012-02-24T07:00:00+01:00"),  # winter
        ("UTC", "2012-02-24T06:00:00+00:00"),
        ("America/New_York", "2012-02-24T01:00:00-05:00"),
        ("-03:00", "2012-02-24T03:00:00-03:00"),
    ],
)
def test_clean_epoch_datetime_in_the_source_time_zone(timezone: str, expected: str) -> None:
    scripts = ScriptRegistry.default(timezone)
    assert clean("clean_epoch_dateTime", "1330063200000", scripts) == expected
    assert clean("clean_epoch_dateTime", "1341093600", PARIS) == "2012-07-01T00:00:00+02:00"


@pytest.mark.parametrize(
    "value", ["abcde", "12:00", "1.2.3", "1e400", True, dt.date(2020, 1, 1), float("inf"), 10**20]
)
def test_clean_epoch_datetime_gives_nothing_for_what_is_no_epoch_time(value: object) -> None:
    assert clean("clean_epoch_dateTime", value) is None


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
    "value", ["inconnu", "01 23 45", "0123456789012", 12.5, True, dt.date(2020, 1, 1), "NaN"]
)
def test_clean_phone_gives_nothing_when_there_is_no_phone(value: object) -> None:
    assert clean("clean_phone", value) is None  # the original gave ""


# --- clean_quantity ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # The original's tests.
        ("150", 150),
        ("150.005", 150.005),
        ("-150", -150),
        ("-150.005", -150.005),
        (150, 150),
        (150.005, 150.005),
        (-150, -150),
        (-150.005, -150.005),
        ("1e3", 1000.0),
        ("0", 0),
        # Other spellings of a number.
        ("+3", 3),
        (" 7 ", 7),
        ("007", 7),
        ("12,5", 12.5),
        (".5", 0.5),
        ("2.5E-3", 0.0025),
        (Decimal("2.50"), Decimal("2.50")),
        (0, 0),
    ],
)
def test_clean_quantity(value: object, expected: object) -> None:
    result = clean("clean_quantity", value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    "value",
    [
        # No FHIR decimal: the original removed them, and so does this script.
        "12,5 mg",
        "80 %",
        "abc",
        "<5",
        "5-10",
        "1.2.3",
        "1,234.5",
        "mg 12",
        "05/03/2094",
        "12 rue de la Paix",
        float("nan"),
        Decimal("Infinity"),
        True,
        dt.date(2020, 1, 1),
    ],
)
def test_clean_quantity_gives_nothing_for_what_is_no_number(value: object) -> None:
    assert clean("clean_quantity", value) is None


# --- codes, genders, marital status -----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # The original's tests.
        ("HL7:M", "M"),
        ("HL7 :M", "M"),
        ("ICD-O-3:testing", "testing"),
        ("ThisIsATest", "ThisIsATest"),
        ("UnvalidCode:KeepCode", "UnvalidCode:KeepCode"),
        ("OSIRIS:OsirisCode", "OsirisCode"),
        ("OSIRIS     :    OsirisCode", "OsirisCode"),
        ("RECIST     :    RECISTCODE", "RECISTCODE"),
        # Every prefix it knows.
        ("HL7:male", "male"),
        ("UMLS:C1298907", "C1298907"),
        ("LOINC:1234-5", "1234-5"),
        ("ATC:N02BE01", "N02BE01"),
        ("FINESS:750712184", "750712184"),
        ("MedDRA:10019211", "10019211"),
        ("CIM10 : I10", "I10"),
        ("ICDO3:8140/3", "8140/3"),
        ("ICD-O-3:8140/3", "8140/3"),
        ("HL7:M:X", "M:X"),  # only the first prefix goes
        # Any other word before a colon is part of the code.
        ("urn:oid:1.2.3", "urn:oid:1.2.3"),
        ("ICD10:A01", "ICD10:A01"),
        ("SNOMED:123:456", "SNOMED:123:456"),
        ("http://loinc.org", "http://loinc.org"),
        ("123:456", "123:456"),
        # Better than the original: case, spaces, non-text values.
        ("hl7:male", "male"),
        ("Loinc:1234-5", "1234-5"),
        (" HL7:F ", "F"),
        (" A01 ", "A01"),
        ("HL7:", None),  # the original gave ""
        (401, 401),
        (Decimal("4.01"), Decimal("4.01")),
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
        ("HL7:male", "male"),
        ("hl7: m", "unknown"),
        (1, "unknown"),
        (True, "unknown"),
    ],
)
def test_map_gender(value: object, expected: str) -> None:
    assert clean("map_gender", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # The original's table, every marital status of MIMIC-III.
        ("MARRIED", "M"),
        ("SINGLE", "U"),
        ("WIDOWED", "W"),
        ("SEPARATED", "L"),
        ("DIVORCED", "D"),
        ("UNKNOWN", "UNK"),
        ("UNKNOWN (DEFAULT)", "UNK"),
        ("LIFE PARTNER", "UNK"),  # not in the original's table
        # Other spellings of these words.
        ("married", "M"),
        (" Widowed ", "W"),
        ("single", "U"),
        ("unknown  (default)", "UNK"),
        # Codes of the value set are kept; anything else is unknown.
        ("M", "M"),
        ("S", "S"),
        ("U", "U"),
        ("T", "T"),
        ("w", "W"),
        ("UNK", "UNK"),
        ("ENGAGED", "UNK"),
        ("MARRIED?", "UNK"),
        (3, "UNK"),
        (None, "UNK"),
        ("", "UNK"),
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


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", True),
        ("1", False),
        (" 0 ", True),
        (0, True),
        (1, False),
        (1.0, False),
        (Decimal("0"), True),
    ],
)
def test_binary_to_bool_2_is_the_reverse_of_binary_to_bool_1(value: object, expected: bool) -> None:
    assert clean("binary_to_bool_2", value) is expected
    assert clean("binary_to_bool_1", value) is (not expected)


OTHER_VALUES = [2, -1, "2", "yes", "true", "01x", "00", 0.5, True, dt.date(2020, 1, 1), "NaN"]


@pytest.mark.parametrize("value", OTHER_VALUES)
def test_binary_to_bool_scripts_give_nothing_for_other_values(value: object) -> None:
    # As the original did; binary_to_bool_1 keeps a boolean.
    assert clean("binary_to_bool_1", value) is (value if type(value) is bool else None)
    assert clean("binary_to_bool_2", value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # The original's words.
        ("True", True),
        ("true", True),
        ("TRUE", True),
        ("False", False),
        ("false", False),
        ("FALSE", False),
        # Other spellings of them, and booleans.
        (" true ", True),
        ("tRuE", True),
        ("False\n", False),
        (True, True),
        (False, False),
    ],
)
def test_string_to_bool(value: object, expected: bool) -> None:
    assert clean("string_to_bool", value) is expected


@pytest.mark.parametrize(
    "value",
    ["maybe", "yes", "no", "t", "f", "1", "0", "oui", "truee", 1, 0, 0.5, dt.date(2020, 1, 1)],
)
def test_string_to_bool_gives_nothing_for_other_values(value: object) -> None:
    assert clean("string_to_bool", value) is None  # as the original did


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2, True),
        ("2", True),
        (" 2 ", True),
        (2.0, True),
        (Decimal("2"), True),
        (1, None),
        ("1", None),
        (3, None),
        ("deux", None),
        ("22", None),
        (True, None),
        (2.5, None),
    ],
)
def test_map_2_true(value: object, expected: bool | None) -> None:
    assert clean("map_2_true", value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("O", True),
        ("N", False),
        ("o", True),
        (" n ", False),
        ("Oui", None),
        ("Y", None),
        ("0", None),
        (1, None),
        (True, None),
    ],
)
def test_map_deceased(value: object, expected: bool | None) -> None:
    assert clean("map_deceased", value) is expected


# --- codes of requests, statuses, genders, family situations -----------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, "male"),
        (2, "female"),
        ("1", "male"),
        (" 2 ", "female"),
        (1.0, "male"),
        (Decimal("2"), "female"),
        (0, "unknown"),
        (3, "unknown"),
        ("M", "unknown"),
        ("01", "unknown"),
        (True, "unknown"),
        (None, "unknown"),  # as the original gave it
        ("", "unknown"),
    ],
)
def test_map_gender_numeric(value: object, expected: str) -> None:
    assert clean("map_gender_numeric", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "plan"),
        (1, "order"),
        ("0", "plan"),
        (" 1 ", "order"),
        (1.0, "order"),
        (None, "proposal"),
        ("", "proposal"),
        ("  ", "proposal"),
        ("NaN", "proposal"),
        (2, None),
        ("plan", None),
        (True, None),
    ],
)
def test_map_intent(value: object, expected: str | None) -> None:
    assert clean("map_intent", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("UMLS:C1298907", "permit"),
        ("UMLS:C1298908", "deny"),
        (" umls:c1298907 ", "permit"),
        ("C1298907", None),
        ("UMLS:C0000000", None),
        ("yes", None),
        (1, None),
    ],
)
def test_map_permission(value: object, expected: str | None) -> None:
    assert clean("map_permission", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # The original's tests.
        ("0", "routine"),
        (0, "routine"),
        ("1", "stat"),
        (1, "stat"),
        ("2", "asap"),
        (2, "asap"),
        ("3", "urgent"),
        (3, "urgent"),
        ("50", "routine"),
        (50, "routine"),
        ("-1", "routine"),
        (-1, "routine"),
        # Anything else, empty included.
        ("4", "routine"),
        (None, "routine"),
        ("", "routine"),
        ("stat", "routine"),
        (True, "routine"),
        # Better than the original: spaces, a float that is 1.
        (" 1 ", "stat"),
        (1.0, "stat"),
        (Decimal("3"), "urgent"),
    ],
)
def test_map_priority(value: object, expected: str) -> None:
    assert clean("map_priority", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "active"),
        (1, "inactive"),
        ("0", "active"),
        (" 1 ", "inactive"),
        (0.0, "active"),
        (2, "unknown"),
        ("active", "unknown"),
        (None, "unknown"),  # as the original gave it
        ("", "unknown"),
    ],
)
def test_map_status(value: object, expected: str) -> None:
    assert clean("map_status", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("M", "Marié(e)"),
        ("C", "Célibataire"),
        ("V", "Veuvage"),
        ("D", "Divorcé(e)"),
        ("O", "Pacsé(e)"),
        (" m ", "Marié(e)"),
        ("o", "Pacsé(e)"),
        # Anything else is returned as it is.
        ("X", "X"),
        ("Marié", "Marié"),
        (" X ", " X "),
        (3, 3),
        ("NaN", "NaN"),
        (None, None),
    ],
)
def test_map_family_situation(value: object, expected: object) -> None:
    assert clean("map_family_situation", value) == expected


# --- text -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("  Jean  ", "Jean"),
        ("Jean", "Jean"),
        ("\tJean Dupont\n", "Jean Dupont"),
        ("NaN", None),  # as the original gave it
        (" NaN ", None),
        ("None", "None"),  # the original knew NaN only
        (12, 12),
        (dt.date(2020, 1, 1), dt.date(2020, 1, 1)),
    ],
)
def test_strip(value: object, expected: object) -> None:
    assert clean("strip", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (" my text  ", "My Text"),  # the original's test
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
        ("12 rue de la PAIX", "12 Rue De La Paix"),
        ("  8 BD SAINT-MICHEL ", "8 Bd Saint-Michel"),
        ("3 avenue d'ITALIE", "3 Avenue D'Italie"),
        ("12bis rue haute", "12Bis Rue Haute"),  # str.title, as the original
        ("\t1 place  du marché\n", "1 Place  Du Marché"),
        (75013, 75013),
    ],
)
def test_clean_address(value: object, expected: object) -> None:
    assert clean("clean_address", value) == expected


ORBIS_CASES = [
    # The original's tests.
    (
        "\x01\x00,\x12\x01\x00$\x12\\f:12152\\\rChers Confrère,\rChers Amis,\r\rVotre patiente, "
        "\\m1Madame XXX, née le 11/02/1945 (70 ans) \\m0a été hospitée ce matin.",
        "\nChers Confrère,\nChers Amis,\n\nVotre patiente, Madame XXX, née le 11/02/1945 "
        "(70 ans) a été hospitée ce matin.",
    ),
    (
        "\\m3THROMBECTOMIE realisee le\\m0 08/12/2020\r\\m1Operateur :\\m0 Dr XXX\r\r-",
        "THROMBECTOMIE realisee le 08/12/2020\nOperateur : Dr XXX\n\n-",
    ),
    (
        "\x01\x00P\x00\x01\x00H\x00\r\r\r*** voir RS GLOBAL sur courrier suivant *** Merci\r\r\x00",
        "PH\n\n\n*** voir RS GLOBAL sur courrier suivant *** Merci\n\n",
    ),
    (",$\\f:12152\\\rChers Confrère,", "\nChers Confrère,"),
    (
        "\x01\x00f\x03\x01\x00^\x03\\m3THROMBECTOMIE réalisée le\\m0 08/12/2020\r\\m1Opérateur :"
        "\\m0 Dr",
        "THROMBECTOMIE réalisée le 08/12/2020\nOpérateur : Dr",
    ),
    ("\x01\x00_\x00\x01\x00g\x00Opérateur(s) : DUFFAS", "Opérateur(s) : DUFFAS"),
    ("\x01\x00_\x00\x01\x00!\x00Opérateur(s) : DUFFAS", "Opérateur(s) : DUFFAS"),
    ("\x01\x00d\x00\x01\x00,\x00Opérateur(s) : DUFFAS", "Opérateur(s) : DUFFAS"),
    ("\x01\x00}'\x01\x00u'\\f:2030\\Cher Confrère", "Cher Confrère"),
    # Other characters and escapes it removes.
    ("Le patient\x1a va\x0c bien\\m2\\m8", "Le patient va bien"),
    ("Le C:\\\\dossier l'état", "Le C:dossier létat"),
    ("Compte rendu\r\\f:2031\\Texte", "Compte rendu\nTexte"),  # a header on a later line
    # Better than the original: only the leading characters go, nothing else.
    ("20 mg le 20/12/2020", " mg le 20/12/2020"),
    ("A", "A"),
    ("x\\fs20 texte", "fs20 texte"),
]


@pytest.mark.parametrize(("value", "expected"), ORBIS_CASES)
def test_clean_long_text_orbis(value: str, expected: str) -> None:
    assert clean("clean_long_text_ORBIS", value) == expected


@pytest.mark.parametrize(("value", "expected"), [("\x00\x01", None), ("''", None), (12, 12)])
def test_clean_long_text_orbis_odd_values(value: object, expected: object) -> None:
    assert clean("clean_long_text_ORBIS", value) == expected


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

NOW = dt.datetime(2020, 1, 2, 3, 4, 5, 6)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (("Jean", "Dupont"), "Jean Dupont"),
        ((10006, "(4)"), "10006 (4)"),
        ((10006, 9467), "10006 9467"),
        (("Jean", None, "Dupont"), "Jean Dupont"),
        (("Jean", "", "  ", "Dupont"), "Jean Dupont"),  # the original doubled the space
        # As the original wrote them (str): its tests.
        ((True,), "True"),
        ((True, False), "True False"),
        (("a", NOW), "a 2020-01-02 03:04:05.000006"),
        (("testing", dt.date(2020, 5, 17)), "testing 2020-05-17"),
        ((1, 2, 3), "1 2 3"),
        (("a", "b", "ab"), "a b ab"),
        ((12.0, 12.5, Decimal("3.0"), Decimal("2.50")), "12 12.5 3.0 2.50"),
        ((dt.time(5, 6),), "05:06:00"),
        (("NaN", "x"), "NaN x"),
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
        ((True,), "True"),
        ((True, False), "TrueFalse"),
        (("a", NOW, dt.date(2020, 5, 17), True), "a2020-01-02 03:04:05.0000062020-05-17True"),
    ],
)
def test_merge_concat_without_separator(values: tuple[object, ...], expected: str) -> None:
    assert merge("merge_concat_without_separator", *values) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((None, "", "  ", "b", "c"), "b"),
        (("a", "b"), "a"),
        (("NaN", "None", "(null)", "NaT", "x"), "x"),  # empty, as in the original
        ((None, 0), 0),  # 0 is a value
        ((None, False), False),
        ((None, dt.date(2020, 1, 1)), dt.date(2020, 1, 1)),
    ],
)
def test_select_first_not_empty(values: tuple[object, ...], expected: object) -> None:
    assert merge("select_first_not_empty", *values) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (("75056", "69123"), "75056"),
        (("", "69123"), "69123"),
        ((None, " 69123 "), "69123"),
        ((" 01001 ", "75056"), "01001"),
        (("NaN", "2A004"), "2A004"),
        (("(null)", None), None),
        ((None, None), None),
        (("", "  "), None),
        (("75056",), "75056"),
        ((75056, "69123"), "75056"),
    ],
)
def test_merge_insee(values: tuple[object, ...], expected: str | None) -> None:
    assert merge("merge_insee", *values) == expected


def test_merge_insee_takes_two_values() -> None:
    with pytest.raises(ValueError, match="merge_insee takes two values, not 3"):
        merge("merge_insee", "1", "2", "3")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((0, 1), "active"),
        ((1, 1), "revoked"),
        ((0, 0), "on hold"),
        ((1, 0), "revoked"),
        (("0", " 1 "), "active"),
        ((0.0, Decimal("0")), "on hold"),
        ((None, 1), "unknown"),
        ((0, ""), "unknown"),
        (("NaN", 1), "unknown"),
        ((None, None), "unknown"),
        # The first pair that decides: an unknown value leaves it to the next pair.
        ((0, 2, 0, 1), "active"),
        ((0, 1, 1, 1), "active"),
        ((0, 2, None, 1), "unknown"),
        ((0, 2), None),
        ((0, "x"), None),
        ((True, 1), "revoked"),  # a boolean flag, as the original compared it with 1
        ((False, True), "active"),
        ((), None),
    ],
)
def test_merge_status(values: tuple[object, ...], expected: str | None) -> None:
    assert merge("merge_status", *values) == expected


@pytest.mark.parametrize("values", [(1,), (0, 1, 1)])
def test_merge_status_takes_pairs(values: tuple[object, ...]) -> None:
    with pytest.raises(ValueError, match="merge_status takes"):
        merge("merge_status", *values)


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


@pytest.mark.parametrize("kind", ["cleaning", "merging"])
def test_if_valid_is_no_script_and_the_refusal_says_why(kind: str) -> None:
    lookup = SCRIPTS.cleaning if kind == "cleaning" else SCRIPTS.merging
    with pytest.raises(UnknownScript) as caught:
        lookup("if_valid")
    message = str(caught.value)
    assert message.startswith(f"unknown {kind} script 'if_valid' (if_valid is not a one-value")
    assert "built a cleaning script from two functions" in message
    assert "user script" in message
    assert unknown_script_message("if_valid", kind) == message
    assert not SCRIPTS.is_cleaning("if_valid") and not SCRIPTS.is_merging("if_valid")


def test_a_user_may_write_an_if_valid_script_of_their_own(tmp_path: Path) -> None:
    file = write(
        tmp_path / "valid.py",
        """
        from river.scripts import cleaning_script

        @cleaning_script
        def if_valid(value):
            return None if value is None else "Hello"
        """,
    )
    scripts = ScriptRegistry.default(extra=str(file))
    assert scripts.cleaning("if_valid")("holà") == "Hello"


def test_river_check_accepts_a_mapping_naming_each_of_the_original_scripts() -> None:
    # What `river check` does: analyse the mapping, then bind its scripts.
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    for n, name in enumerate(ORIGINAL_SCRIPTS):
        if name in BUILTIN_CLEANING:
            group = export.group(sql=[export.input("patients", f"c{n}", script=name)])
        else:
            group = export.group(
                sql=[export.input("patients", f"a{n}"), export.input("patients", f"b{n}")],
                merging=name,
            )
        patient.attribute(f"identifier[{n}].value", "string", group)
    mapping = export.analyse()
    plan = mapping.resources[patient.id]
    named = {sql.script for g in _groups(plan) for sql in g.sql_inputs if sql.script}
    named |= {g.merging_script for g in _groups(plan) if g.merging_script}
    assert named == set(ORIGINAL_SCRIPTS)
    transformer = ResourceTransformer(plan, SCRIPTS, ConceptMaps())
    columns = {sql.label: [None] for sql in plan.columns}
    outcome = transformer.transform({**columns, "patients.subject_id": [1]}, NOW.isoformat())
    assert outcome.error is None, outcome.error
    values = {i["value"] for i in outcome.resource["identifier"]}
    assert {"UNK", "unknown", "routine", "proposal"} <= values  # codes for a missing value


def test_river_check_refuses_if_valid_saying_why() -> None:
    export = ExportBuilder()
    patient = export.resource("Patient", "patients", "subject_id")
    patient.attribute(
        "gender",
        "code",
        export.group(sql=[export.input("patients", "gender", script="if_valid")]),
    )
    with pytest.raises(InvalidMapping) as caught:
        export.analyse()
    assert "unknown cleaning script 'if_valid' (if_valid is not a one-value script" in str(
        caught.value
    )


def _groups(plan: ResourcePlan) -> list[InputGroup]:
    return [group for attribute in plan.attributes for group in attribute.groups]


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
