"""The resource tree of a plan: attributes bound to closures, and the general builder.

`build_tree` turns a `ResourcePlan` into nested `Object`, `Array` and `Leaf`
nodes shaped like the resource; each leaf's input groups are bound once to
closures (scripts, casts, concept maps, conditions). `Node.compile()` gives a
builder `(context, row) -> value` that handles every case of docs/mapping.md,
one-to-many joins included; `river.fastpath` compiles the same tree to
straight-line code for the common single-row record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from river.concept_maps import ConceptMaps
from river.errors import BadValue, InstanceError, InvalidMapping, MappingFault, shape_of, shapes_of
from river.plan import Attribute, InputGroup, ResourcePlan, SqlInput
from river.values import cast_for, condition_test

Columns = dict[str, list[Any]]


class Scripts(Protocol):
    def cleaning(self, name: str) -> Callable[[Any], Any]: ...

    def merging(self, name: str) -> Callable[..., Any]: ...


class Context:
    __slots__ = ("columns", "n_rows", "warnings")

    def __init__(self, columns: Columns, n_rows: int, warnings: list[str]) -> None:
        self.columns = columns
        self.n_rows = n_rows
        self.warnings = warnings


# --- binding the plan: inputs and groups become closures ----------------------
# A closure takes (context, row): `row` is the joined row to read, or None when
# the rows are not spread over an array; inputs of the primary table always
# read row 0 (their value is the same on every row).

Build = Callable[[Context, int | None], Any]


def _bind_input(
    sql: SqlInput,
    attribute: Attribute,
    cast: Callable[[Any], Any] | None,
    scripts: Scripts,
    concept_maps: ConceptMaps,
) -> Build:
    """One SQL input: cleaning script, cast, then concept map (docs/mapping.md's order)."""
    label = sql.label
    per_row = sql.per_row
    clean = scripts.cleaning(sql.script) if sql.script else None
    codes = concept_maps.get(sql.concept_map_id) if sql.concept_map_id else None
    path, script, map_id = attribute.path, sql.script, sql.concept_map_id
    column = f"{sql.column.table}.{sql.column.column}"
    fhir_type = attribute.fhir_type
    if clean is None and codes is None and cast is not None:

        def read_cast(context: Context, row: int | None) -> Any:
            value = context.columns[label][row if per_row else 0]
            try:
                return cast(value)
            except (ValueError, TypeError) as error:
                raise cast_error(value, fhir_type, error, path) from None

        return read_cast

    def read(context: Context, row: int | None) -> Any:
        value = context.columns[label][row if per_row else 0]
        if clean is not None:
            try:
                value = clean(value)
            except Exception as error:  # a script is user code: any failure is the instance's
                raise InstanceError(
                    script_failure(f"script {script}", f"column {column}", value, error), path
                ) from None
        if cast is not None:
            try:
                value = cast(value)
            except (ValueError, TypeError) as error:
                raise cast_error(value, fhir_type, error, path) from None
        if codes is not None and value is not None:
            mapped = codes.get(value)
            if mapped is None:
                context.warnings.append(
                    f"attribute {path}: a code of column {column} ({shape_of(value)}) is not"
                    f" in ConceptMap {map_id}; kept as it is"
                )
            else:
                value = mapped
        return value

    return read


def _bind_group(
    group: InputGroup, attribute: Attribute, scripts: Scripts, concept_maps: ConceptMaps
) -> tuple[Callable[[Context, int | None], bool] | None, Build]:
    """(conditions test or None, value) of one input group."""
    cast = cast_for(attribute.fhir_type)
    path, fhir_type = attribute.path, attribute.fhir_type
    tests = []
    for condition in group.conditions:
        read = _bind_input(condition.input, attribute, None, scripts, concept_maps)
        tests.append((condition.include, condition_test(condition.relation, condition.value), read))

    def holds(context: Context, row: int | None) -> bool:
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

        def merged(context: Context, row: int | None) -> Any:
            values = [read(context, row) for read in readers]
            try:
                value = merge(*values, *statics)
            except Exception as error:  # user code
                raise InstanceError(
                    script_failure(f"merging script {name}", "", values + list(statics), error),
                    path,
                ) from None
            try:
                return cast(value)
            except (ValueError, TypeError) as error:
                raise cast_error(value, fhir_type, error, path) from None

        value_of: Build = merged
    elif group.sql_inputs:
        value_of = _bind_input(group.sql_inputs[0], attribute, cast, scripts, concept_maps)
    else:
        value_of = _constant(group.static_values[0] if group.static_values else None, cast, path)
    return (holds if tests else None), value_of


def script_failure(script: str, column: str, value: Any, error: Exception) -> str:
    """Why a script failed, as users may see it: a BadValue's message (worded without
    the value), else the value's shape and the exception's type alone, whose message
    may quote the value. `value` is a merging script's list of arguments."""
    if isinstance(error, BadValue):
        return f"{script} failed{f' on {column}' if column else ''}: {error}"
    shape = f"{column}, {shape_of(value)}" if column else shapes_of(value)
    return (
        f"{script} failed on {shape}: {type(error).__name__}"
        " (its message is not shown: it may quote the value)"
    )


def cast_error(value: Any, fhir_type: str, error: Exception, path: str) -> InstanceError:
    """A value the attribute's type cannot take, described by its shape."""
    reason = str(error) if isinstance(error, BadValue) else type(error).__name__
    return InstanceError(f"cannot cast {shape_of(value)} to {fhir_type}: {reason}", path)


def _constant(text: str | None, cast: Callable[[Any], Any], path: str) -> Build:
    try:
        value = cast(text)
    except (ValueError, TypeError) as error:
        message = f"static value {text!r} cannot be cast: {error}"

        def fail(context: Context, row: int | None) -> Any:
            raise InstanceError(message, path)

        return fail
    return lambda context, row: value


# --- the tree: built once per resource, compiled to closures -------------------


@dataclass(frozen=True, slots=True)
class LeafShape:
    """What a leaf needs, for code that inlines it (`river.fastpath`).

    kind "constant": always `value`; "column": `cast(clean(columns[label][row]))`;
    "general": anything else (conditions, several groups, merging, concept map).
    """

    kind: str
    value: Any = None
    label: str = ""
    clean: Callable[[Any], Any] | None = None
    cast: Callable[[Any], Any] | None = None


class Leaf:
    """An attribute: the first input group whose conditions hold gives its value."""

    def __init__(self, attribute: Attribute, scripts: Scripts, concept_maps: ConceptMaps) -> None:
        self.attribute = attribute
        self.groups = [_bind_group(g, attribute, scripts, concept_maps) for g in attribute.groups]
        self.per_row = self.direct_per_row = attribute.per_row
        self.shape = _shape(attribute, scripts)

    def compile(self) -> Build:
        groups = self.groups
        if len(groups) == 1 and groups[0][0] is None:
            value = groups[0][1]  # the common case: one group, no condition
        else:

            def value(context: Context, row: int | None) -> Any:
                for holds, value_of in groups:
                    if holds is None or holds(context, row):
                        return value_of(context, row)
                return None

        if not self.per_row:
            return value
        path = self.attribute.path

        def per_row(context: Context, row: int | None) -> Any:
            if row is not None:
                return value(context, row)
            # Several rows and no array to spread them over: they must agree.
            values: list[Any] = []
            for k in range(context.n_rows):
                v = value(context, k)
                if v is not None and v != "" and v not in values:
                    values.append(v)
            if len(values) > 1:
                raise InstanceError(
                    f"receives {len(values)} different values from a one-to-many join "
                    "but is not in an array",
                    path,
                )
            return values[0] if values else None

        return per_row


def _shape(attribute: Attribute, scripts: Scripts) -> LeafShape:
    general = LeafShape("general")
    if len(attribute.groups) != 1:
        return general
    (group,) = attribute.groups
    if group.conditions or group.merging_script:
        return general
    cast = cast_for(attribute.fhir_type)
    if not group.sql_inputs:
        try:
            return LeafShape(
                "constant", cast(group.static_values[0] if group.static_values else None)
            )
        except (ValueError, TypeError):
            return general  # the general builder reports it per instance
    (sql,) = group.sql_inputs
    if sql.concept_map_id:
        return general
    clean = scripts.cleaning(sql.script) if sql.script else None
    return LeafShape("column", label=sql.label, clean=clean, cast=cast)


class Object:
    """An element with children: leaves, objects, or arrays of them."""

    def __init__(self) -> None:
        self.fields: dict[str, Leaf | Object | Array] = {}
        self.per_row = False  # some per-row leaf stands below
        self.direct_per_row = False  # ... and not inside a deeper array

    def compile(self) -> Build:
        children = [(name, child.compile()) for name, child in self.fields.items()]

        def build(context: Context, row: int | None) -> dict[str, Any] | None:
            result = {}
            for name, child in children:
                value = child(context, row)
                if value is not None and value != "" and value != {} and value != []:
                    result[name] = value
            return result or None

        return build


class Array:
    """`name[i]` elements in index order; some repeat once per joined row."""

    def __init__(self) -> None:
        self.elements: dict[int, Leaf | Object] = {}
        self.per_row = False
        self.direct_per_row = False  # an array is never "direct" for its parent

    def compile(self) -> Build:
        # An element expands when per-row leaves stand in it directly (docs/mapping.md).
        elements = [
            (self.elements[i].compile(), self.elements[i].direct_per_row)
            for i in sorted(self.elements)
        ]

        def build(context: Context, row: int | None) -> list[Any] | None:
            items: list[Any] = []
            for element, expands in elements:
                if expands and row is None:
                    for k in range(context.n_rows):
                        value = element(context, k)
                        if value is not None and value != "" and value != {} and value != []:
                            items.append(value)
                else:
                    value = element(context, row)
                    if value is not None and value != "" and value != {} and value != []:
                        items.append(value)
            if len(items) > 1:
                return unique(items)
            return items or None

        return build


def build_tree(plan: ResourcePlan, scripts: Scripts, concept_maps: ConceptMaps) -> Object:
    root = Object()
    faults = []
    for attribute in plan.attributes:
        try:
            _place(root, attribute, Leaf(attribute, scripts, concept_maps))
        except ValueError as error:
            where = f"resource {plan.resource_id}, attribute {attribute.path}"
            faults.append(MappingFault(where, str(error)))
    if faults:
        raise InvalidMapping(plan.resource_id, faults)
    _mark(root)
    return root


def _place(root: Object, attribute: Attribute, leaf: Leaf) -> None:
    node: Object = root
    last = len(attribute.steps) - 1
    for depth, step in enumerate(attribute.steps):
        container: dict[Any, Any]
        if step.index is None:
            container, key = node.fields, step.name
        else:
            array = node.fields.setdefault(step.name, Array())
            if not isinstance(array, Array):
                raise ValueError(f"{step.name} is used both as an array and as a single element")
            container, key = array.elements, step.index
        existing = container.get(key)
        if depth == last:
            if existing is not None:
                raise ValueError(f"{step} already has a value or children from another attribute")
            container[key] = leaf
            return
        if existing is None:
            existing = container[key] = Object()
        elif not isinstance(existing, Object):
            raise ValueError(f"{step} is a value of another attribute and cannot have children")
        node = existing


def _mark(node: Leaf | Object | Array) -> None:
    """Per-row flags, bottom up: which elements hold per-row leaves, directly or not."""
    if isinstance(node, Leaf):
        return
    children = node.elements.values() if isinstance(node, Array) else node.fields.values()
    for child in children:
        _mark(child)
        node.per_row = node.per_row or child.per_row
        if isinstance(node, Object):
            node.direct_per_row = node.direct_per_row or child.direct_per_row


def unique(items: list[Any]) -> list[Any]:
    """Identical objects in one array are kept once (docs/mapping.md)."""
    seen: set[Any] = set()
    unique = []
    for item in items:
        if isinstance(item, dict | list):
            key: Any = orjson.dumps(item, option=orjson.OPT_SORT_KEYS)
        else:
            key = (type(item), item)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique
