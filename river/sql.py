"""Extraction: one SQL query per resource, streamed and grouped by primary key.

    source = SourceDatabase(url)
    for record in source.records(plan, primary_key_values=None):
        ...  # record.primary_key_value, record.columns: label -> [value per row]

The query selects the primary key and every column the plan reads, joins each
chain once (LEFT OUTER), applies the filters and an optional primary key list,
and orders by primary key so that a server-side cursor can be read in chunks
and grouped on the fly: memory does not grow with the table. Values come out
as JSON types (dates as ISO 8601 text), the same whether a record is
transformed in-process or after a trip through Kafka.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import InterfaceError, NoSuchTableError, OperationalError, SQLAlchemyError

from river.errors import InvalidValue, SourceError, SourceUnavailable, shape_of
from river.plan import ResourcePlan, SqlInput
from river.secrets import mask_url_password
from river.unreadable import Unreadable, is_sql_ascii, not_finite, tolerate_unreadable

Columns = dict[str, list[Any]]
# Primary key values per query: an IN list is one bound parameter a value, and
# drivers cap them (PostgreSQL's protocol at 65,535); a retry may name more.
KEYS_PER_QUERY = 10_000


@dataclass(frozen=True, slots=True)
class Record:
    """The rows of one instance: every label holds one value per joined row."""

    primary_key_value: Any
    columns: Columns
    # Values the driver could not read ("column admissions.dischtime: a timestamp
    # ..."): such an instance fails, named, and the others go on.
    unreadable: tuple[str, ...] = ()


class SourceDatabase:
    """A source database reached through SQLAlchemy; table metadata is read once."""

    def __init__(self, url: str | URL, chunk_size: int = 5000) -> None:
        self.url = sa.make_url(url) if isinstance(url, str) else url
        if self.url.drivername == "postgresql":
            self.url = self.url.set(drivername="postgresql+psycopg")
        self.chunk_size = chunk_size
        self.engine: Engine = sa.create_engine(self.url, pool_pre_ping=True)
        if self.url.get_driver_name() == "psycopg":
            # Before SQLAlchemy's own first queries too (first_connect), which read
            # text: a SQL_ASCII database's text comes undecoded (river.unreadable).
            for event in ("first_connect", "connect"):
                sa.event.listen(self.engine, event, _tolerate_unreadable, insert=True)
        self._tables: dict[tuple[str, str], sa.Table] = {}
        self._sql_ascii: bool | None = None

    @property
    def where(self) -> str:
        """The database as a user names it, password hidden."""
        return self.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    def table(self, owner: str, name: str) -> sa.Table:
        key = (owner, name)
        if key not in self._tables:
            try:
                self._tables[key] = sa.Table(
                    name, sa.MetaData(), schema=owner, autoload_with=self.engine
                )
            except NoSuchTableError:
                raise SourceError(
                    f"table {owner}.{name} does not exist in the source database"
                ) from None
            except SQLAlchemyError as error:
                raise self.unreachable(error) from None
        return self._tables[key]

    def unreachable(self, error: Exception) -> SourceError:
        # The driver's first line: what failed, not the statement or its parameters.
        # libpq may quote the connection string it was given: its password is masked.
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        reason = mask_url_password(reason, self.url)
        message = f"cannot query the source database {self.where}: {reason}"
        # A lost connection is worth retrying; a wrong query is not.
        if isinstance(error, OperationalError | InterfaceError):
            return SourceUnavailable(message)
        return SourceError(message)

    def query(
        self, plan: ResourcePlan, primary_key_values: Iterable[Any] | None = None
    ) -> sa.Select:
        """The one SELECT of a resource, ordered by primary key."""
        if plan.unreachable:
            raise SourceError("; ".join(plan.unreachable))
        try:
            return _build_query(self, plan, primary_key_values)
        except SourceError as error:
            raise type(error)(f"resource {plan.resource_id}: {error}") from None

    def records(
        self, plan: ResourcePlan, primary_key_values: Iterable[Any] | None = None
    ) -> Iterator[Record]:
        """Stream the instances of `plan`, grouped by primary key, in chunks."""
        queries = list(self._queries(plan, primary_key_values))  # a bad table is named here
        labels = [column.label for column in plan.columns]
        names = [f"{c.column.table}.{c.column.column}" for c in plan.columns]
        converters = [self._converter(plan, column) for column in plan.columns]
        for query in queries:
            try:
                with self.engine.connect() as connection:
                    result = connection.execution_options(
                        stream_results=True, yield_per=self.chunk_size
                    ).execute(query)
                    yield from _group(result, labels, names, converters)
            except SQLAlchemyError as error:
                raise self.unreachable(error) from None

    def count(self, plan: ResourcePlan, primary_key_values: Iterable[Any] | None = None) -> int:
        """How many instances the resource has after filters: the batch size."""
        total = 0
        for query in self._queries(plan, primary_key_values):
            pk = query.selected_columns[0]
            distinct_keys = query.with_only_columns(pk).order_by(None).distinct().subquery()
            counting = sa.select(sa.func.count()).select_from(distinct_keys)
            try:
                with self.engine.connect() as connection:
                    total += int(connection.execute(counting).scalar_one())
            except SQLAlchemyError as error:
                raise self.unreachable(error) from None
        return total

    def first_keys(self, plan: ResourcePlan, limit: int) -> list[Any]:
        """The first `limit` primary key values of the resource (after its filters), in
        order: what a mapping author browses in the console's preview."""
        query = self.query(plan)
        pk = query.selected_columns[0]
        keys = query.with_only_columns(pk).distinct().limit(limit)
        try:
            with self.engine.connect() as connection:
                return [_to_json(key) for key in connection.execute(keys).scalars()]
        except SQLAlchemyError as error:
            raise self.unreachable(error) from None

    def read_keys(self, plan: ResourcePlan, primary_key_values: Iterable[Any]) -> list[Any]:
        """The values read as the primary key column's type, strictly: InvalidValue
        names the first that cannot be (`1.5` or `1.0e999` for an integer key)."""
        try:
            joined, tables = _joined(self, plan)
            pk = _column(tables[plan.primary_key.alias], plan.primary_key.column.column)
        except SourceError as error:
            raise type(error)(f"resource {plan.resource_id}: {error}") from None
        read = []
        for n, value in enumerate(primary_key_values):
            try:
                read.append(read_as(pk, value, show=True))
            except InvalidValue as error:
                raise InvalidValue(f"primary key value {n + 1}: {error}") from None
        return read

    def _queries(
        self, plan: ResourcePlan, primary_key_values: Iterable[Any] | None
    ) -> Iterator[sa.Select]:
        """The query of the whole resource, or one per chunk of distinct keys."""
        if primary_key_values is None:
            yield self.query(plan)
            return
        keys = list(dict.fromkeys(self.read_keys(plan, primary_key_values)))
        if not keys:
            yield self.query(plan, [])
        for start in range(0, len(keys), KEYS_PER_QUERY):
            yield self.query(plan, keys[start : start + KEYS_PER_QUERY])

    def keys_reaching(
        self, plan: ResourcePlan, owner: str, table: str, rows: Iterable[dict[str, Any]]
    ) -> list[Any]:
        """Primary key values of the instances whose joins reach one of `rows` of
        owner.table (a changed row, before or after the change): one query.

        Filters are not applied: the instances found are extracted again through
        the normal path, which applies them."""
        rows = list(rows)
        aliases = [a for a in plan.aliases[1:] if (a.owner, a.table) == (owner, table)]
        if not aliases or not rows:
            return []
        try:
            joined, tables = _joined(self, plan)
            pk = _column(tables[plan.primary_key.alias], plan.primary_key.column.column)
            conditions = []
            for alias in aliases:
                column = _column(tables[alias.name], alias.on_right)
                values = [
                    row[alias.on_right] for row in rows if row.get(alias.on_right) is not None
                ]
                if values:  # a changed row's values: never quoted (river/errors.py)
                    conditions.append(column.in_([read_as(column, v) for v in values]))
            if not conditions:
                return []
            keys = sa.select(pk).select_from(joined).where(sa.or_(*conditions)).distinct()
        except SourceError as error:
            raise type(error)(f"resource {plan.resource_id}: {error}") from None
        try:
            with self.engine.connect() as connection:
                return [_to_json(key) for key in connection.execute(keys).scalars()]
        except SQLAlchemyError as error:
            raise self.unreachable(error) from None

    def _converter(self, plan: ResourcePlan, column: SqlInput) -> Callable[[Any], Any] | None:
        alias = next(a for a in plan.aliases if a.name == column.alias)
        sql_type = self.table(alias.owner, alias.table).c[column.column.column].type
        convert = _json_converter(sql_type)
        if convert is None and self.sql_ascii:
            # Its text may be unreadable (river.unreadable): each value is looked at.
            return _as_read
        return convert

    @property
    def sql_ascii(self) -> bool:
        """Whether the source is a PostgreSQL database of encoding SQL_ASCII."""
        if self._sql_ascii is None:
            if self.url.get_driver_name() != "psycopg":
                self._sql_ascii = False
            else:
                with self.engine.connect() as connection:
                    self._sql_ascii = is_sql_ascii(connection.connection.dbapi_connection)
        return self._sql_ascii


def _joined(
    source: SourceDatabase, plan: ResourcePlan
) -> tuple[sa.FromClause, dict[str, sa.FromClause]]:
    """The primary table LEFT OUTER JOINed to every alias of the plan, each once."""
    aliases: dict[str, sa.FromClause] = {}
    joined: sa.FromClause | None = None
    for alias in plan.aliases:
        table = source.table(alias.owner, alias.table).alias(alias.name)
        aliases[alias.name] = table
        if joined is None:
            joined = table
            continue
        parent = aliases[alias.parent]
        on = _column(parent, alias.on_left) == _column(table, alias.on_right)
        joined = joined.outerjoin(table, on)
    assert joined is not None
    return joined, aliases


def _build_query(
    source: SourceDatabase, plan: ResourcePlan, primary_key_values: Iterable[Any] | None
) -> sa.Select:
    joined, aliases = _joined(source, plan)

    def column_of(sql: SqlInput) -> sa.ColumnElement:
        return _column(aliases[sql.alias], sql.column.column)

    pk = column_of(plan.primary_key)
    selected = [column_of(sql).label(sql.label) for sql in plan.columns]
    query = sa.select(*selected).select_from(joined)
    for filter_ in plan.filters:
        query = query.where(
            _filter_clause(column_of(filter_.input), filter_.relation, filter_.value)
        )
    if primary_key_values is not None:
        values = [read_as(pk, value) for value in primary_key_values]
        query = query.where(pk.in_(values))
    return query.order_by(pk)


def _column(table: sa.FromClause, name: str) -> sa.ColumnElement:
    try:
        return table.c[name]
    except KeyError:
        original = getattr(table, "original", table)
        raise SourceError(f"column {name} does not exist in table {original.fullname}") from None


def _filter_clause(column: sa.ColumnElement, relation: str, value: str) -> sa.ColumnElement:
    # The mapping's text, not a source value: quoted when it cannot be read.
    if relation == "IN":
        return column.in_([read_as(column, v.strip(), show=True) for v in value.split(",")])
    if relation == "BETWEEN":
        low, _, high = value.partition(",")
        return column.between(
            read_as(column, low.strip(), show=True), read_as(column, high.strip(), show=True)
        )
    if relation == "LIKE":
        return column.like(value)
    coerced = read_as(column, value, show=True)
    return {
        "=": column == coerced,
        "<>": column != coerced,
        "<": column < coerced,
        "<=": column <= coerced,
        ">": column > coerced,
        ">=": column >= coerced,
    }[relation]


_WHOLE_NUMBER = re.compile(r"\s*[+-]?\d+(\.0*)?\s*")
# Bounds of the integer types, so that a key too large for the column is refused
# here, in a sentence, rather than by the database in the middle of a batch.
_INTEGER_BITS = ((sa.SmallInteger, 16), (sa.BigInteger, 64), (sa.Integer, 32))


def read_as(column: sa.ColumnElement, value: Any, show: bool = False) -> Any:
    """A value (written as text in a mapping, or a key given by a user or a source
    change) read as the column's type, strictly: a value that is not exactly one
    of the type's (`1.5` or `1.0e999` for an integer) raises InvalidValue, never
    rounded into another row's key. Its message quotes the value when `show` (a
    primary key value, the mapping's text), else gives its shape (a source value)."""
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return value
    where = f"column {column.name} ({column.type})"
    try:
        if python_type is int:
            return _read_integer(column, value)
        if python_type in (float, decimal.Decimal):
            number = python_type(value) if isinstance(value, str) else value
            if isinstance(number, float | decimal.Decimal) and not math.isfinite(number):
                raise ValueError
            return number
        if python_type is str:  # a number given for a text key is that text
            return value if isinstance(value, str) else str(value)
        if not isinstance(value, str):
            return value
        if python_type is bool:
            return value.strip().lower() in ("1", "true", "t", "yes")
        if python_type is dt.datetime:
            return dt.datetime.fromisoformat(value)
        if python_type is dt.date:
            return dt.date.fromisoformat(value[:10])
    except (ValueError, ArithmeticError):
        if show:
            shown = repr(value if len(str(value)) <= 40 else f"{str(value)[:40]}...")
        else:
            shown = shape_of(value)
        raise InvalidValue(f"{shown} cannot be read as the type of {where}") from None
    return value


def _read_integer(column: sa.ColumnElement, value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _WHOLE_NUMBER.fullmatch(value):
        number = int(value.strip().split(".")[0])
    else:
        raise ValueError
    bits = next((b for kind, b in _INTEGER_BITS if isinstance(column.type, kind)), None)
    if bits is not None and not -(2 ** (bits - 1)) <= number < 2 ** (bits - 1):
        raise ValueError
    return number


def _json_converter(sql_type: sa.types.TypeEngine) -> Callable[[Any], Any] | None:
    """How values of a column become JSON types; None when they already are."""
    try:
        python_type = sql_type.python_type
    except NotImplementedError:
        return _to_json
    if python_type is float:
        return _finite
    if python_type in (str, int, bool):
        return None
    return _to_json


def _as_read(value: Any) -> Any:
    return value


def _finite(value: Any) -> Any:
    if type(value) is float and not math.isfinite(value):
        return not_finite(value)
    return value


def _to_json(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return not_finite(value)
        number = float(value)
        if not math.isfinite(number):  # beyond a double: 1e400
            return Unreadable("a number too large for a FHIR number")
        return int(value) if value == value.to_integral_value() else number
    if isinstance(value, Unreadable):
        return value
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return str(value)


def _group(
    rows: Iterable[sa.Row],
    labels: list[str],
    names: list[str],
    converters: list[Callable[[Any], Any] | None],
) -> Iterator[Record]:
    """Consecutive rows of one primary key (the query orders by it) make one record;
    a value the driver could not read (`names` says where) is noted on its record,
    and stands there as null."""
    converted = [(i, f) for i, f in enumerate(converters) if f is not None]
    current: Any = object()
    columns: Columns = {}
    unreadable: list[str] = []
    for row in rows:
        values = list(row)
        problems = None
        for i, convert in converted:
            value = convert(values[i])
            if type(value) is Unreadable:
                problems = (problems or []) + [f"column {names[i]}: {value.reason}"]
                value = None
            values[i] = value
        key = values[0]
        if key != current:
            if columns:
                yield Record(current, columns, tuple(unreadable))
                if unreadable:
                    unreadable = []
            current = key
            columns = {label: [value] for label, value in zip(labels, values, strict=True)}
        else:
            for label, value in zip(labels, values, strict=True):
                columns[label].append(value)
        if problems:
            unreadable.extend(p for p in problems if p not in unreadable)
    if columns:
        yield Record(current, columns, tuple(unreadable))


def _tolerate_unreadable(dbapi_connection: Any, record: Any) -> None:
    tolerate_unreadable(dbapi_connection)
