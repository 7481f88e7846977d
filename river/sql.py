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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import InterfaceError, NoSuchTableError, OperationalError, SQLAlchemyError

from river.errors import SourceError, SourceUnavailable
from river.plan import ResourcePlan, SqlInput

Columns = dict[str, list[Any]]


@dataclass(frozen=True, slots=True)
class Record:
    """The rows of one instance: every label holds one value per joined row."""

    primary_key_value: Any
    columns: Columns


class SourceDatabase:
    """A source database reached through SQLAlchemy; table metadata is read once."""

    def __init__(self, url: str | URL, chunk_size: int = 5000) -> None:
        self.url = sa.make_url(url) if isinstance(url, str) else url
        if self.url.drivername == "postgresql":
            self.url = self.url.set(drivername="postgresql+psycopg")
        self.chunk_size = chunk_size
        self.engine: Engine = sa.create_engine(self.url, pool_pre_ping=True)
        self._tables: dict[tuple[str, str], sa.Table] = {}

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
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
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
        query = self.query(plan, primary_key_values)
        labels = [column.label for column in plan.columns]
        converters = [self._converter(plan, column) for column in plan.columns]
        try:
            with self.engine.connect() as connection:
                result = connection.execution_options(
                    stream_results=True, yield_per=self.chunk_size
                ).execute(query)
                yield from _group(result, labels, converters)
        except SQLAlchemyError as error:
            raise self.unreachable(error) from None

    def count(self, plan: ResourcePlan, primary_key_values: Iterable[Any] | None = None) -> int:
        """How many instances the resource has after filters: the batch size."""
        query = self.query(plan, primary_key_values)
        pk = query.selected_columns[0]
        distinct_keys = query.with_only_columns(pk).order_by(None).distinct().subquery()
        counting = sa.select(sa.func.count()).select_from(distinct_keys)
        try:
            with self.engine.connect() as connection:
                return int(connection.execute(counting).scalar_one())
        except SQLAlchemyError as error:
            raise self.unreachable(error) from None

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
                if values:
                    conditions.append(column.in_([_coerce(column, v) for v in values]))
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
        return _json_converter(sql_type)


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
        values = [_coerce(pk, value) for value in primary_key_values]
        query = query.where(pk.in_(values))
    return query.order_by(pk)


def _column(table: sa.FromClause, name: str) -> sa.ColumnElement:
    try:
        return table.c[name]
    except KeyError:
        original = getattr(table, "original", table)
        raise SourceError(f"column {name} does not exist in table {original.fullname}") from None


def _filter_clause(column: sa.ColumnElement, relation: str, value: str) -> sa.ColumnElement:
    if relation == "IN":
        return column.in_([_coerce(column, v.strip()) for v in value.split(",")])
    if relation == "BETWEEN":
        low, _, high = value.partition(",")
        return column.between(_coerce(column, low.strip()), _coerce(column, high.strip()))
    if relation == "LIKE":
        return column.like(value)
    coerced = _coerce(column, value)
    return {
        "=": column == coerced,
        "<>": column != coerced,
        "<": column < coerced,
        "<=": column <= coerced,
        ">": column > coerced,
        ">=": column >= coerced,
    }[relation]


def _coerce(column: sa.ColumnElement, value: Any) -> Any:
    """A value written as text in a mapping, read as the column's type."""
    if not isinstance(value, str):
        return value
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return value
    try:
        if python_type is bool:
            return value.strip().lower() in ("1", "true", "t", "yes")
        if python_type is int:
            return int(float(value)) if "." in value else int(value)
        if python_type in (float, decimal.Decimal):
            return python_type(value)
        if python_type is dt.datetime:
            return dt.datetime.fromisoformat(value)
        if python_type is dt.date:
            return dt.date.fromisoformat(value[:10])
    except ValueError:
        raise SourceError(
            f"value {value!r} cannot be read as the type of column {column.name} ({column.type})"
        ) from None
    return value


def _json_converter(sql_type: sa.types.TypeEngine) -> Callable[[Any], Any] | None:
    """How values of a column become JSON types; None when they already are."""
    try:
        python_type = sql_type.python_type
    except NotImplementedError:
        return _to_json
    if python_type in (str, int, float, bool):
        return None
    return _to_json


def _to_json(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return str(value)


def _group(
    rows: Iterable[sa.Row], labels: list[str], converters: list[Callable[[Any], Any] | None]
) -> Iterator[Record]:
    """Consecutive rows of one primary key (the query orders by it) make one record."""
    converted = [(i, f) for i, f in enumerate(converters) if f is not None]
    current: Any = object()
    columns: Columns = {}
    for row in rows:
        values = list(row)
        for i, convert in converted:
            values[i] = convert(values[i])
        key = values[0]
        if key != current:
            if columns:
                yield Record(current, columns)
            current = key
            columns = {label: [value] for label, value in zip(labels, values, strict=True)}
        else:
            for label, value in zip(labels, values, strict=True):
                columns[label].append(value)
    if columns:
        yield Record(current, columns)
