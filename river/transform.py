"""Transformation: one extracted record -> one FHIR resource, as the mapping means.

    transformer = ResourceTransformer(plan, scripts, concept_maps)
    outcome = transformer.transform(record)   # outcome.resource or outcome.error

The plan is bound once into a tree of small closures (input groups, scripts,
casts, concept maps) shaped like the resource; each record only runs it.
Arrays follow MAPPING.md (Building the document): an array element under
which values from a one-to-many join stand is repeated once per joined row,
at the shallowest array that holds them directly.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from river.concept_maps import ConceptMaps
from river.errors import InstanceError, InvalidMapping, MappingFault
from river.identity import (
    RESOURCE_TAG_SYSTEM,
    SOURCE_TAG_SYSTEM,
    fhir_id,
    key_text,
    logical_reference_of,
)
from river.plan import Attribute, InputGroup, ResourcePlan, SqlInput
from river.values import cast_for, condition_test

Columns = dict[str, list[Any]]


class Scripts(Protocol):
    def cleaning(self, name: str) -> Callable[[Any], Any]: ...

    def merging(self, name: str) -> Callable[..., Any]: ...


@dataclass(slots=True)
class Outcome:
    """What became of one instance: a resource, or the error that stopped it."""

    resource_id: str
    primary_key_value: Any
    resource: dict[str, Any] | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


class ResourceTransformer:
    """The compiled transformation of one mapping resource."""

    def __init__(self, plan: ResourcePlan, scripts: Scripts, concept_maps: ConceptMaps) -> None:
        self.plan = plan
        self._tree = _build_tree(plan, scripts, concept_maps)
        self._pk_label = plan.primary_key.label
        self._reference_paths = [tuple(step.name for step in path) for path in plan.reference_paths]
        tags = [
            {"system": SOURCE_TAG_SYSTEM, "code": plan.source_id},
            {"system": RESOURCE_TAG_SYSTEM, "code": plan.resource_id},
        ]
        self._meta: dict[str, Any] = {"tag": tags}
        if plan.profile_url:
            self._meta["profile"] = [plan.profile_url]

    def transform(self, columns: Columns, now: str | None = None) -> Outcome:
        """The resource of one record (label -> one value per joined row)."""
        plan = self.plan
        key = columns[self._pk_label][0]
        outcome = Outcome(plan.resource_id, key)
        context = _Context(columns, len(columns[self._pk_label]), outcome.warnings)
        try:
            body = self._tree.build(context, None if context.n_rows > 1 else 0) or {}
        except InstanceError as error:
            outcome.error = str(error)
            return outcome
        resource: dict[str, Any] = {
            "resourceType": plan.resource_type,
            "id": fhir_id(plan.logical_reference, key),
        }
        meta = {**self._meta, "lastUpdated": now or timestamp()}
        mapped_meta = body.pop("meta", None)
        if mapped_meta:
            meta = _merge_meta(mapped_meta, meta)
        resource["meta"] = meta
        resource.update(body)
        for path in self._reference_paths:
            _resolve_references(resource, path)
        outcome.resource = resource
        return outcome


def timestamp() -> str:
    """The instant of a transformation, as `meta.lastUpdated` takes it."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class _Context:
    __slots__ = ("columns", "n_rows", "warnings")

    def __init__(self, columns: Columns, n_rows: int, warnings: list[str]) -> None:
        self.columns = columns
        self.n_rows = n_rows
        self.warnings = warnings


# --- binding the plan --------------------------------------------------------

Reader = Callable[[_Context, int], Any]


def _bind_input(
    sql: SqlInput,
    attribute: Attribute,
    cast: Callable[[Any], Any] | None,
    scripts: Scripts,
    concept_maps: ConceptMaps,
) -> Reader:
    """One SQL input: cleaning script, cast, then concept map (MAPPING.md order)."""
    label = sql.label
    clean = scripts.cleaning(sql.script) if sql.script else None
    codes = concept_maps.get(sql.concept_map_id) if sql.concept_map_id else None
    path, script, map_id = attribute.path, sql.script, sql.concept_map_id
    if clean is None and codes is None and cast is not None:

        def read_cast(context: _Context, row: int) -> Any:
            value = context.columns[label][row]
            try:
                return cast(value)
            except (ValueError, TypeError) as error:
                raise InstanceError(f"cannot cast {value!r}: {error}", path) from None

        return read_cast

    def read(context: _Context, row: int) -> Any:
        value = context.columns[label][row]
        if clean is not None:
            try:
                value = clean(value)
            except Exception as error:  # a script is user code: any failure is the instance's
                raise InstanceError(f"script {script} failed on {value!r}: {error}", path) from None
        if cast is not None:
            try:
                value = cast(value)
            except (ValueError, TypeError) as error:
                raise InstanceError(f"cannot cast {value!r}: {error}", path) from None
        if codes is not None and value is not None:
            mapped = codes.get(value)
            if mapped is None:
                context.warnings.append(
                    f"attribute {path}: code {value!r} is not in ConceptMap {map_id}; kept as it is"
                )
            else:
                value = mapped
        return value

    return read


def _bind_group(
    group: InputGroup, attribute: Attribute, scripts: Scripts, concept_maps: ConceptMaps
) -> tuple[Callable[[_Context, int], bool], Reader]:
    cast = cast_for(attribute.fhir_type)
    path = attribute.path
    tests = []
    for condition in group.conditions:
        read = _bind_input(condition.input, attribute, None, scripts, concept_maps)
        tests.append((condition.include, condition_test(condition.relation, condition.value), read))

    def holds(context: _Context, row: int) -> bool:
        for include, test, read in tests:  # noqa: SIM110 (a loop is faster per row)
            if test(read(context, row)) is not include:
                return False
        return True

    if group.merging_script:
        merge = scripts.merging(group.merging_script)
        name = group.merging_script
        # Inputs reach a merging script cleaned and mapped but not cast: the
        # script decides the form, and its result is cast.
        readers = [
            _bind_input(sql, attribute, None, scripts, concept_maps) for sql in group.sql_inputs
        ]
        statics = group.static_values

        def merged(context: _Context, row: int) -> Any:
            values = [read(context, row) for read in readers]
            try:
                value = merge(*values, *statics)
            except Exception as error:  # user code
                raise InstanceError(
                    f"script {name} failed on {values + list(statics)!r}: {error}", path
                ) from None
            try:
                return cast(value)
            except (ValueError, TypeError) as error:
                raise InstanceError(f"cannot cast {value!r}: {error}", path) from None

        value_of: Reader = merged
    elif group.sql_inputs:
        value_of = _bind_input(group.sql_inputs[0], attribute, cast, scripts, concept_maps)
    elif group.static_values:
        value_of = _constant(group.static_values[0], cast, path)
    else:
        value_of = _constant(None, cast, path)
    return (holds if tests else _always), value_of


def _always(context: _Context, row: int) -> bool:
    return True


def _constant(text: str | None, cast: Callable[[Any], Any], path: str) -> Reader:
    try:
        value = cast(text)
    except (ValueError, TypeError) as error:
        message = f"static value {text!r} cannot be cast: {error}"

        def fail(context: _Context, row: int) -> Any:
            raise InstanceError(message, path)

        return fail
    return lambda context, row: value


# --- the tree ------------------------------------------------------------------


class _Leaf:
    """An attribute: the first input group whose conditions hold gives its value."""

    __slots__ = ("attribute", "groups", "per_row", "direct_per_row")

    def __init__(self, attribute: Attribute, scripts: Scripts, concept_maps: ConceptMaps) -> None:
        self.attribute = attribute
        self.groups = [_bind_group(g, attribute, scripts, concept_maps) for g in attribute.groups]
        self.per_row = attribute.per_row
        self.direct_per_row = attribute.per_row

    def value(self, context: _Context, row: int) -> Any:
        for holds, value_of in self.groups:
            if holds(context, row):
                return value_of(context, row)
        return None

    def build(self, context: _Context, row: int | None) -> Any:
        if row is not None:
            return self.value(context, row)
        # Several rows and no array to spread them over: they must agree.
        values = []
        for k in range(context.n_rows):
            value = self.value(context, k)
            if not _empty(value) and value not in values:
                values.append(value)
        if len(values) > 1:
            raise InstanceError(
                f"receives {len(values)} different values from a one-to-many join "
                f"({', '.join(map(repr, values[:5]))}) but is not in an array",
                self.attribute.path,
            )
        return values[0] if values else None


class _Object:
    """An element with children: leaves, objects, or arrays of them."""

    __slots__ = ("fields", "per_row", "direct_per_row")

    def __init__(self) -> None:
        self.fields: dict[str, _Leaf | _Object | _Array] = {}
        self.per_row = False  # some per-row leaf stands below
        self.direct_per_row = False  # ... and not inside a deeper array

    def build(self, context: _Context, row: int | None) -> dict[str, Any] | None:
        result: dict[str, Any] = {}
        for name, child in self.fields.items():
            value = child.build(context, row)
            if not _empty(value):
                result[name] = value
        return result or None


class _Array:
    """`name[i]` elements in index order; `expands` says which repeat per joined row."""

    __slots__ = ("elements", "ordered", "per_row", "direct_per_row")

    def __init__(self) -> None:
        self.elements: dict[int, _Leaf | _Object] = {}
        self.ordered: list[tuple[_Leaf | _Object, bool]] = []
        self.per_row = False
        self.direct_per_row = False  # an array is never "direct" for its parent

    def build(self, context: _Context, row: int | None) -> list[Any] | None:
        items: list[Any] = []
        for element, expands in self.ordered:
            if expands and row is None:
                for k in range(context.n_rows):
                    _append(items, element.build(context, k))
            else:
                _append(items, element.build(context, row))
        if len(items) > 1:
            return _unique(items)
        return items or None


def _build_tree(plan: ResourcePlan, scripts: Scripts, concept_maps: ConceptMaps) -> _Object:
    root = _Object()
    faults = []
    for attribute in plan.attributes:
        try:
            _place(root, attribute, _Leaf(attribute, scripts, concept_maps))
        except ValueError as error:
            faults.append(
                MappingFault(f"resource {plan.resource_id}, attribute {attribute.path}", str(error))
            )
    if faults:
        raise InvalidMapping(plan.resource_id, faults)
    _mark(root)
    return root


def _place(root: _Object, attribute: Attribute, leaf: _Leaf) -> None:
    node: _Object = root
    last = len(attribute.steps) - 1
    for depth, step in enumerate(attribute.steps):
        is_leaf = depth == last
        container: dict[Any, Any]
        if step.index is None:
            container, key = node.fields, step.name
        else:
            array = node.fields.setdefault(step.name, _Array())
            if not isinstance(array, _Array):
                raise ValueError(f"{step.name} is used both as an array and as a single element")
            container, key = array.elements, step.index
        existing = container.get(key)
        if is_leaf:
            if existing is not None:
                raise ValueError(f"{step} already has a value or children from another attribute")
            container[key] = leaf
            return
        if existing is None:
            existing = container[key] = _Object()
        elif not isinstance(existing, _Object):
            raise ValueError(f"{step} is a value of another attribute and cannot have children")
        node = existing


def _mark(node: _Leaf | _Object | _Array) -> None:
    """Compute per-row flags bottom up; array elements holding per-row leaves directly expand."""
    if isinstance(node, _Leaf):
        return
    if isinstance(node, _Array):
        for index in sorted(node.elements):
            element = node.elements[index]
            _mark(element)
            node.ordered.append((element, element.direct_per_row))
            node.per_row = node.per_row or element.per_row
        return
    for child in node.fields.values():
        _mark(child)
        node.per_row = node.per_row or child.per_row
        node.direct_per_row = node.direct_per_row or child.direct_per_row


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == {} or value == []


def _append(items: list[Any], value: Any) -> None:
    if not _empty(value):
        items.append(value)


def _unique(items: list[Any]) -> list[Any]:
    """Identical objects in one array are kept once (MAPPING.md)."""
    seen: set[Any] = set()
    unique = []
    for item in items:
        key = (
            orjson.dumps(item, option=orjson.OPT_SORT_KEYS)
            if isinstance(item, dict | list)
            else (type(item), item)
        )
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


def _merge_meta(mapped: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    merged = {**mapped, **ours}
    for key in ("tag", "profile"):
        if key in mapped and key in ours:
            merged[key] = _unique([*mapped[key], *ours[key]])
    return merged


def _resolve_references(node: Any, path: tuple[str, ...]) -> None:
    """Give logical references their `reference` (MAPPING.md, References)."""
    if isinstance(node, list):
        for item in node:
            _resolve_references(item, path)
        return
    if not isinstance(node, dict):
        return
    if path:
        _resolve_references(node.get(path[0]), path[1:])
        return
    identifier = node.get("identifier")
    if not isinstance(identifier, dict) or "type" not in node or "value" not in identifier:
        return
    target: uuid.UUID | None = logical_reference_of(identifier.get("system"))
    if target is not None:
        node["reference"] = f"{node['type']}/{fhir_id(target, key_text(identifier['value']))}"
