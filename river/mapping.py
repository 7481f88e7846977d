"""Reading Pyrog mappings and analysing them into compiled plans.

    mappings = load_mappings("examples/mappings", scripts)
    plan = mappings.resource("cktlnp0f300300mmznmyqln70")

A Pyrog export (docs/mapping.md) is validated as a whole: every fault found is
listed in one `InvalidMapping`, each naming the resource, attribute and field.
A valid mapping becomes one `ResourcePlan` per resource (`river.plan`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
from sqlalchemy import URL

from river.errors import InvalidMapping, MappingFault, RiverError, UnknownResource
from river.plan import (
    Attribute,
    Column,
    Condition,
    Filter,
    InputGroup,
    Join,
    ResourcePlan,
    SqlInput,
    TableAlias,
    parse_path,
)
from river.scripts.registry import unknown_script_message

FILTER_RELATIONS = frozenset({"=", "<>", "<", "<=", ">", ">=", "IN", "BETWEEN", "LIKE"})
CONDITION_RELATIONS = frozenset({"EQ", "NEQ", "LT", "LE", "GT", "GE", "IN", "NULL", "NOTNULL"})
CONDITION_ACTIONS = frozenset({"INCLUDE", "EXCLUDE"})
_DRIVERS = {
    "POSTGRES": "postgresql+psycopg",
    "ORACLE": "oracle+oracledb",
    "MSSQL": "mssql+pyodbc",
    "SQLLITE": "sqlite",
}


class ScriptNames(Protocol):
    """What analysis needs of the script registry: which names exist."""

    def is_cleaning(self, name: str) -> bool: ...

    def is_merging(self, name: str) -> bool: ...


@dataclass(frozen=True)
class Credential:
    """Where the source database is, as the mapping says. The password never prints."""

    model: str
    host: str
    port: int | None
    database: str
    login: str
    password: str = field(repr=False)

    def url(self) -> URL:
        driver = _DRIVERS.get(self.model.upper())
        if driver is None:
            raise RiverError(
                f"unsupported database model {self.model!r}; known: {sorted(_DRIVERS)}"
            )
        if driver == "sqlite":
            return URL.create("sqlite", database=self.database)
        return URL.create(
            driver,
            username=self.login or None,
            password=self.password or None,
            host=self.host or None,
            port=self.port,
            database=self.database or None,
        )


@dataclass(frozen=True)
class Mapping:
    """One source's mappings: its credential and a plan per resource."""

    source_id: str
    source_name: str
    origin: str
    credential: Credential
    resources: dict[str, ResourcePlan]


class MappingSet:
    """Every loaded mapping, looked up by resource id."""

    def __init__(self, mappings: Iterable[Mapping]) -> None:
        self.mappings = list(mappings)
        self._by_resource: dict[str, tuple[Mapping, ResourcePlan]] = {}
        for mapping in self.mappings:
            for resource_id, plan in mapping.resources.items():
                if resource_id in self._by_resource:
                    other = self._by_resource[resource_id][0].origin
                    raise InvalidMapping(
                        mapping.origin,
                        [MappingFault(f"resource {resource_id}", f"also defined in {other}")],
                    )
                self._by_resource[resource_id] = (mapping, plan)

    def resource(self, resource_id: str) -> ResourcePlan:
        try:
            return self._by_resource[resource_id][1]
        except KeyError:
            raise UnknownResource(resource_id, self.resource_ids()) from None

    def mapping_of(self, resource_id: str) -> Mapping:
        self.resource(resource_id)
        return self._by_resource[resource_id][0]

    def resource_ids(self) -> list[str]:
        return list(self._by_resource)

    def __iter__(self) -> Iterator[ResourcePlan]:
        return (plan for _, plan in self._by_resource.values())

    def __len__(self) -> int:
        return len(self._by_resource)


def load_mappings(location: str | Path, scripts: ScriptNames) -> MappingSet:
    """Every Pyrog export at `location`: one `.json` file, or a folder of them."""
    path = Path(location)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.json") if p.is_file())
        if not files:
            raise RiverError(f"no mapping file (*.json) in folder {path}")
    elif path.is_file():
        files = [path]
    else:
        raise RiverError(f"mapping file or folder not found: {path}")
    return MappingSet(read_export(file, scripts) for file in files)


def read_export(path: str | Path, scripts: ScriptNames) -> Mapping:
    """One Pyrog export file, validated and analysed."""
    try:
        document = orjson.loads(Path(path).read_bytes())
    except OSError as error:
        raise RiverError(f"cannot read mapping file {path}: {error.strerror}") from None
    except orjson.JSONDecodeError as error:
        raise RiverError(f"mapping file {path} is not valid JSON: {error}") from None
    return analyse(document, str(path), scripts)


def analyse(export: Any, origin: str, scripts: ScriptNames) -> Mapping:
    """Validate a Pyrog export (already parsed) and compile a plan per resource."""
    return _Analysis(export, origin, scripts).run()


class _Analysis:
    """One pass over an export, gathering every fault before deciding."""

    def __init__(self, export: Any, origin: str, scripts: ScriptNames) -> None:
        self.export = export
        self.origin = origin
        self.scripts = scripts
        self.faults: list[MappingFault] = []
        self.columns: dict[str, Column] = {}
        self.owners: dict[str, str] = {}

    def fault(self, where: str, message: str) -> None:
        self.faults.append(MappingFault(where, message))

    def run(self) -> Mapping:
        export = self.export
        if not isinstance(export, dict):
            raise InvalidMapping(self.origin, [MappingFault("", "the file is not a JSON object")])
        credential = self._credential(export.get("credential"))
        plans: dict[str, ResourcePlan] = {}
        resources = export.get("resources")
        if not isinstance(resources, list):
            self.fault("", "field `resources` must be a list")
            resources = []
        source_id = str(export.get("id") or export.get("name") or "")
        source_name = str(export.get("name") or "")
        for index, resource in enumerate(resources):
            plan = self._resource(resource, index, source_id, source_name)
            if plan is not None:
                if plan.resource_id in plans:
                    self.fault(f"resource {plan.resource_id}", "the id is used by two resources")
                plans[plan.resource_id] = plan
        if self.faults:
            raise InvalidMapping(self.origin, self.faults)
        assert credential is not None
        return Mapping(source_id, source_name, self.origin, credential, plans)

    def _credential(self, raw: Any) -> Credential | None:
        if not isinstance(raw, dict):
            self.fault("credential", "missing or not an object")
            return None
        for owner in raw.get("owners") or []:
            owner_id, name = owner.get("id"), owner.get("name")
            if not owner_id or not name:
                self.fault("credential.owners", f"an owner lacks its id or name: {owner_id!r}")
                continue
            self.owners[owner_id] = name
            for column in owner.get("columns") or []:
                if column.get("id") and column.get("table") and column.get("column"):
                    self.columns[column["id"]] = Column(name, column["table"], column["column"])
                else:
                    self.fault(f"credential.owners[{name}]", f"incomplete column {column!r}")
        port = raw.get("port")
        return Credential(
            model=str(raw.get("model") or "POSTGRES"),
            host=str(raw.get("host") or ""),
            port=int(port) if port not in (None, "") else None,
            database=str(raw.get("database") or ""),
            login=str(raw.get("login") or ""),
            password=str(raw.get("password") or ""),
        )

    def _resource(
        self, raw: Any, index: int, source_id: str, source_name: str
    ) -> ResourcePlan | None:
        if not isinstance(raw, dict):
            self.fault(f"resources[{index}]", "not an object")
            return None
        resource_id = str(raw.get("id") or raw.get("label") or f"#{index}")
        label = raw.get("label")
        where = f"resource {resource_id}"
        if label and label != resource_id:
            where += f" ({label})"
        errors_before = len(self.faults)

        definition = raw.get("definition") or {}
        resource_type = definition.get("type") or raw.get("definition_id")
        if not resource_type:
            self.fault(where, "field `definition.type` is missing: which FHIR resource is this?")
        profile_url = None
        if definition.get("kind") == "resource" and definition.get("derivation") == "constraint":
            profile_url = definition.get("url")

        try:
            logical_reference = uuid.UUID(str(raw.get("logical_reference")))
        except ValueError:
            self.fault(
                where, f"field `logical_reference` is not a UUID: {raw.get('logical_reference')!r}"
            )
            logical_reference = uuid.UUID(int=0)

        owner = self.owners.get(raw.get("primary_key_owner") or "")
        if owner is None:
            self.fault(
                where, f"field `primary_key_owner`: unknown owner {raw.get('primary_key_owner')!r}"
            )
        pk_table, pk_column = raw.get("primary_key_table"), raw.get("primary_key_column")
        if not pk_table or not pk_column:
            self.fault(
                where,
                "missing primary key: `primary_key_table` and `primary_key_column` are required",
            )
        if len(self.faults) > errors_before:
            # Without a primary table nothing below can be resolved.
            self._check_rest(raw, where)
            return None

        primary = TableAlias(name=pk_table, owner=owner, table=pk_table)
        builder = _InputBuilder(self, primary)
        primary_key = builder.primary_key(Column(owner, pk_table, pk_column))

        filters = []
        for i, raw_filter in enumerate(raw.get("filters") or []):
            fwhere = f"{where}, filters[{i}]"
            relation = raw_filter.get("relation")
            if relation not in FILTER_RELATIONS:
                self.fault(fwhere, f"field `relation`: unknown relation {relation!r}")
            sql_input = builder.sql_input(
                raw_filter.get("sql_input"), f"{fwhere}, field sql_input", select=False
            )
            value = raw_filter.get("value")
            if value is None:
                self.fault(fwhere, "field `value` is missing")
            if sql_input and relation in FILTER_RELATIONS and value is not None:
                filters.append(Filter(relation, str(value), sql_input))

        attributes = []
        reference_paths = []
        for i, raw_attribute in enumerate(raw.get("attributes") or []):
            attribute = self._attribute(raw_attribute, i, where, builder)
            if attribute is None:
                continue
            if attribute.fhir_type == "Reference":
                reference_paths.append(attribute.steps)
            if attribute.groups:
                attributes.append(attribute)
        if len(self.faults) > errors_before:
            return None
        concept_maps = frozenset(
            sql.concept_map_id
            for attribute in attributes
            for group in attribute.groups
            for sql in group.sql_inputs
            if sql.concept_map_id
        )
        return ResourcePlan(
            resource_id=resource_id,
            label=str(raw.get("label") or ""),
            source_id=source_id,
            source_name=source_name,
            resource_type=resource_type,
            definition_id=str(raw.get("definition_id") or resource_type),
            profile_url=profile_url,
            logical_reference=logical_reference,
            primary_key=primary_key,
            aliases=builder.aliases(),
            columns=builder.selected(),
            filters=tuple(filters),
            attributes=tuple(attributes),
            reference_paths=tuple(reference_paths),
            concept_map_ids=concept_maps,
            unreachable=tuple(builder.unreachable),
        )

    def _check_rest(self, raw: dict, where: str) -> None:
        """Report unknown column ids even when the resource cannot be compiled."""
        for i, attribute in enumerate(raw.get("attributes") or []):
            for group in attribute.get("input_groups") or []:
                for j, sql in enumerate(group.get("sql_inputs") or []):
                    if sql.get("column") not in self.columns:
                        self.fault(
                            f"{where}, attribute {attribute.get('path') or i}, input group "
                            f"{group.get('id', '')}, field sql_inputs[{j}].column",
                            f"unknown column id {sql.get('column')!r}",
                        )

    def _attribute(
        self, raw: Any, index: int, where: str, builder: _InputBuilder
    ) -> Attribute | None:
        path = raw.get("path") if isinstance(raw, dict) else None
        awhere = f"{where}, attribute {path or f'#{index}'}"
        try:
            steps = parse_path(path or "")
        except ValueError as error:
            self.fault(awhere, f"field `path`: {error}")
            return None
        fhir_type = raw.get("definition_id")
        if not fhir_type:
            self.fault(awhere, "field `definition_id` (the FHIR type) is missing")
            return None
        groups = []
        for raw_group in raw.get("input_groups") or []:
            group = self._group(raw_group, awhere, builder)
            if group is not None:
                groups.append(group)
        per_row = any(
            sql.per_row
            for group in groups
            for sql in (*group.sql_inputs, *(c.input for c in group.conditions))
        )
        return Attribute(
            path=path,
            steps=steps,
            fhir_type=fhir_type,
            slice_name=raw.get("slice_name") or "",
            groups=tuple(groups),
            per_row=per_row,
        )

    def _group(self, raw: dict, awhere: str, builder: _InputBuilder) -> InputGroup | None:
        gwhere = f"{awhere}, input group {raw.get('id', '')}".rstrip()
        merging = raw.get("merging_script") or None
        if merging and not self.scripts.is_merging(merging):
            self.fault(
                gwhere, f"field `merging_script`: {unknown_script_message(merging, 'merging')}"
            )
        statics = tuple(str(s.get("value", "")) for s in raw.get("static_inputs") or [])
        sql_inputs = []
        for j, raw_sql in enumerate(raw.get("sql_inputs") or []):
            sql = builder.sql_input(raw_sql, f"{gwhere}, field sql_inputs[{j}]")
            if sql is not None:
                sql_inputs.append(sql)
        if not merging and len(statics) > 1:
            self.fault(
                gwhere, f"{len(statics)} static inputs and no merging script to combine them"
            )
        if not merging and len(raw.get("sql_inputs") or []) > 1:
            self.fault(
                gwhere,
                f"{len(raw['sql_inputs'])} SQL inputs and no merging script to combine them",
            )
        conditions = []
        for j, raw_condition in enumerate(raw.get("conditions") or []):
            cwhere = f"{gwhere}, field conditions[{j}]"
            action, relation = raw_condition.get("action"), raw_condition.get("relation")
            if action not in CONDITION_ACTIONS:
                self.fault(cwhere, f"unknown action {action!r} (INCLUDE or EXCLUDE)")
            if relation not in CONDITION_RELATIONS:
                self.fault(cwhere, f"unknown relation {relation!r}")
            sql = builder.sql_input(raw_condition.get("sql_input"), f"{cwhere}.sql_input")
            if sql and action in CONDITION_ACTIONS and relation in CONDITION_RELATIONS:
                value = raw_condition.get("value")
                conditions.append(
                    Condition(
                        action == "INCLUDE", relation, "" if value is None else str(value), sql
                    )
                )
        return InputGroup(
            id=str(raw.get("id", "")),
            merging_script=merging,
            static_values=statics,
            sql_inputs=tuple(sql_inputs),
            conditions=tuple(conditions),
        )


class _InputBuilder:
    """Resolves SQL inputs of one resource to table aliases, each join chain made once."""

    def __init__(self, analysis: _Analysis, primary: TableAlias) -> None:
        self.analysis = analysis
        self.primary = primary
        self._aliases: dict[tuple[Join, ...], TableAlias] = {(): primary}
        self._names = {primary.name}
        self._selected: dict[str, SqlInput] = {}
        self.unreachable: list[str] = []

    def aliases(self) -> tuple[TableAlias, ...]:
        return tuple(self._aliases.values())

    def selected(self) -> tuple[SqlInput, ...]:
        return tuple(self._selected.values())

    def primary_key(self, column: Column) -> SqlInput:
        sql = SqlInput(f"{self.primary.name}.{column.column}", column, self.primary.name)
        self._selected[sql.label] = sql
        return sql

    def sql_input(self, raw: Any, where: str, select: bool = True) -> SqlInput | None:
        """The input resolved to its alias; `select` adds its column to the query's."""
        analysis = self.analysis
        if not isinstance(raw, dict):
            analysis.fault(where, "missing SQL input")
            return None
        column = analysis.columns.get(raw.get("column") or "")
        if column is None:
            analysis.fault(f"{where}.column", f"unknown column id {raw.get('column')!r}")
        script = raw.get("script") or None
        if script and not analysis.scripts.is_cleaning(script):
            analysis.fault(f"{where}.script", unknown_script_message(script, "cleaning"))
        chain: list[TableAlias] = [self.primary]
        joins: list[Join] = []
        for k, raw_join in enumerate(raw.get("joins") or []):
            left = analysis.columns.get(raw_join.get("left") or "")
            right = analysis.columns.get(raw_join.get("right") or "")
            jwhere = f"{where}.joins[{k}]"
            if left is None or right is None:
                side = "left" if left is None else "right"
                analysis.fault(f"{jwhere}.{side}", f"unknown column id {raw_join.get(side)!r}")
                return None
            parent = _find(chain, left)
            if parent is None and _find(chain, right) is not None:
                left, right = right, left  # written the other way round
                parent = _find(chain, left)
            if parent is None:
                analysis.fault(
                    jwhere,
                    f"the join starts from {left.table}.{left.column}, a table not reached yet "
                    f"(the chain is at {chain[-1].table})",
                )
                return None
            joins.append(Join(left, right))
            chain.append(self._alias(tuple(joins), parent, left, right))
        if column is None:
            return None
        alias = _find(chain, column)
        if alias is None:
            # Valid as a mapping (Pyrog exports it), but no query can read it:
            # extraction refuses the resource with this message.
            self.unreachable.append(
                f"{where.split(', field')[0]}: column {column.table}.{column.column} is neither "
                f"in the primary table {self.primary.table} nor reached by the input's joins"
            )
            alias = TableAlias(name=column.table, owner=column.owner, table=column.table)
        sql = SqlInput(
            label=f"{alias.name}.{column.column}",
            column=column,
            alias=alias.name,
            script=script,
            concept_map_id=raw.get("concept_map_id") or None,
            per_row=alias is not self.primary,
        )
        if select:
            self._selected.setdefault(
                sql.label, SqlInput(sql.label, column, alias.name, per_row=sql.per_row)
            )
        return sql

    def _alias(
        self, chain: tuple[Join, ...], parent: TableAlias, left: Column, right: Column
    ) -> TableAlias:
        alias = self._aliases.get(chain)
        if alias is None:
            name, n = right.table, 2
            while name in self._names:
                name, n = f"{right.table}_{n}", n + 1
            self._names.add(name)
            alias = TableAlias(
                name=name,
                owner=right.owner,
                table=right.table,
                chain=chain,
                parent=parent.name,
                on_left=left.column,
                on_right=right.column,
            )
            self._aliases[chain] = alias
        return alias


def _find(chain: list[TableAlias], column: Column) -> TableAlias | None:
    for alias in reversed(chain):
        if alias.owner == column.owner and alias.table == column.table:
            return alias
    return None
