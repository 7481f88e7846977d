"""Values read as their column's type, strictly (river.sql.read_as): a key a user
types must select its own row or be refused, never be rounded into another's."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest
import sqlalchemy as sa

from river.errors import InvalidValue
from river.sql import read_as

TABLE = sa.Table(
    "t",
    sa.MetaData(),
    sa.Column("small", sa.SmallInteger),
    sa.Column("int", sa.Integer),
    sa.Column("big", sa.BigInteger),
    sa.Column("num", sa.Numeric),
    sa.Column("real", sa.Float),
    sa.Column("text", sa.Text),
    sa.Column("day", sa.Date),
    sa.Column("moment", sa.DateTime),
)


@pytest.mark.parametrize(
    ("column", "value", "read"),
    [
        ("int", "10006", 10006),
        ("int", 10006, 10006),
        ("int", " -42 ", -42),
        ("int", "10006.0", 10006),  # a whole number written as a decimal is that number
        ("int", 2**31 - 1, 2**31 - 1),
        ("big", str(2**40), 2**40),
        ("num", "1.5", decimal.Decimal("1.5")),
        ("num", 3, 3),
        ("real", "2.25", 2.25),
        ("text", "abc", "abc"),
        ("text", 42, "42"),  # a JSON number for a text key
        ("day", "2012-02-24", dt.date(2012, 2, 24)),
        ("moment", "2012-02-24T06:00:00", dt.datetime(2012, 2, 24, 6)),
    ],
)
def test_a_value_of_the_column_type_is_read_as_it(column, value, read):
    assert read_as(TABLE.c[column], value) == read
    assert type(read_as(TABLE.c[column], value)) is type(read)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("int", "1.0e999"),
        ("int", "1.5"),
        ("int", "1000000.5"),  # was read as 1000000: another patient
        ("int", "abc"),
        ("int", "1_000"),  # Python's int() takes it; SQL does not
        ("int", ""),
        ("int", 1.5),
        ("int", True),
        ("int", 2**31),  # beyond PostgreSQL's integer
        ("small", 40_000),
        ("big", 2**63),
        ("num", "NaN"),
        ("num", "Infinity"),
        ("num", "one"),
        ("real", float("inf")),
        ("real", "nan"),
        ("day", "2012-13-01"),
        ("moment", "yesterday"),
    ],
)
def test_a_value_not_of_the_column_type_is_refused_naming_column_and_type(column, value):
    with pytest.raises(InvalidValue) as raised:
        read_as(TABLE.c[column], value)
    message = str(raised.value)
    assert f"column {column} (" in message
    assert "cannot be read as the type" in message
    # A source value (a changed row's) is given by its shape, never quoted.
    assert message.startswith(("a ", "an ", "NaN ")), message


def test_a_value_shown_is_the_one_given_a_long_one_shortened():
    # A primary key value a user gave, or a mapping's filter text, is quoted.
    with pytest.raises(InvalidValue, match=r"^'1\.5' cannot be read as the type of column int"):
        read_as(TABLE.c["int"], "1.5", show=True)
    with pytest.raises(InvalidValue) as raised:
        read_as(TABLE.c["int"], "9" * 30 + "x" * 1000, show=True)
    assert len(str(raised.value)) < 150
