"""Source values Python cannot hold, kept per value instead of failing a whole query.

PostgreSQL accepts dates Python's `datetime` cannot represent (`infinity`, years
after 9999 or before 1), times of `24:00:00`, and `NaN` or infinite numbers; and a
`SQL_ASCII` database checks no encoding, so its text may be any bytes (which the
driver hands over undecoded: each text value is read here as UTF-8, else
unreadable). The
driver raises on the first such value it reads, which would stop the extraction
of a whole resource (every instance after it too). Instead each value the driver
cannot read becomes an `Unreadable` marker; the extraction then fails that one
instance, naming its primary key value and the column (`river.sql`), and the
rest of the resource goes on.

    tolerate_unreadable(psycopg_connection)   # done for every source connection

The marker says why the value cannot be read, never what it holds: a year
10000 may be a patient's mistyped birth date, and errors are shown to people who
may not see patient data. Only the special words `infinity` and `-infinity`,
which are no patient's data, are named.
"""

from __future__ import annotations

import math
from typing import Any

import psycopg
from psycopg.adapt import Loader
from psycopg.pq import Format


class Unreadable:
    """A value the driver could not turn into a Python value; `reason` says why."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Unreadable({self.reason!r})"


# PostgreSQL type name -> what a reader is told when a value cannot be held.
_OUT_OF_RANGE = {
    "date": "a date outside the years 1 to 9999, which Python cannot hold",
    "timestamp": "a timestamp outside the years 1 to 9999, which Python cannot hold",
    "timestamptz": "a timestamp outside the years 1 to 9999, which Python cannot hold",
    "time": "a time Python cannot hold (24:00:00 or later)",
    "timetz": "a time Python cannot hold (24:00:00 or later)",
}
_SPECIAL_WORDS = {b"infinity": "infinity", b"-infinity": "-infinity"}


def not_finite(value: float | Any) -> Unreadable:
    """The marker of a number that is NaN or infinite: JSON has no such number."""
    word = "NaN" if math.isnan(value) else "an infinite number"
    return Unreadable(f"{word}, which a FHIR number cannot hold")


# The text types whose values a SQL_ASCII database holds as bytes of no known encoding.
_TEXT_TYPES = ("text", "varchar", "bpchar", "name")
NOT_UTF8 = "text that is not UTF-8 (the source database is SQL_ASCII, which checks no encoding)"


def is_sql_ascii(connection: psycopg.Connection) -> bool:
    """Whether the database checks no encoding: its text may be any bytes, which the
    server hands over as they are whatever the client encoding."""
    return connection.info.parameter_status("server_encoding") == "SQL_ASCII"


def tolerate_unreadable(connection: psycopg.Connection) -> None:
    """Make the date and time loaders of a psycopg connection return `Unreadable`
    markers instead of raising (text format: what SQLAlchemy's cursors use); on a
    SQL_ASCII database, read text as UTF-8, a value that is not being `Unreadable`."""
    if is_sql_ascii(connection):
        for name in _TEXT_TYPES:
            info = connection.adapters.types.get(name)
            if info is not None:
                connection.adapters.register_loader(info.oid, _Utf8Text)
    for name, reason in _OUT_OF_RANGE.items():
        info = connection.adapters.types.get(name)
        if info is None:
            continue
        inner = connection.adapters.get_loader(info.oid, Format.TEXT)
        if inner is None:
            continue
        connection.adapters.register_loader(info.oid, _tolerant(inner, name, reason))


class _Utf8Text(Loader):
    def load(self, data: Any) -> Any:
        try:
            return bytes(data).decode()
        except UnicodeDecodeError:
            return Unreadable(NOT_UTF8)


def _tolerant(inner: type[Loader], type_name: str, reason: str) -> type[Loader]:
    class Tolerant(Loader):
        # The driver's own (C) loader does the work; this only catches its refusal.
        def __init__(self, oid: int, context: Any = None) -> None:
            super().__init__(oid, context)
            self._load = inner(oid, context).load

        def load(self, data: Any) -> Any:
            try:
                return self._load(data)
            except (psycopg.DataError, ValueError, OverflowError):
                word = _SPECIAL_WORDS.get(bytes(data).strip().lower())
                if word is not None:
                    return Unreadable(f"{type_name} {word}, which Python cannot hold")
                return Unreadable(reason)

    Tolerant.__name__ = f"Tolerant{inner.__name__}"
    return Tolerant
