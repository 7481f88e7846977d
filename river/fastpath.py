"""The fast path: a resource tree compiled to straight-line Python.

Most records have a single row (no one-to-many join matched twice). For them
the whole tree of `river.tree` is written out as one Python function, with
constants folded, plain column reads inlined and references set in place, so
that a record runs without a call per node. It is built from the same tree
and the same bound closures as the general builder, and gives the same
resource; anything unusual (a script that raises, a failed cast) makes the
caller run the general builder, which reports the error precisely.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from river.identity import resolve_reference
from river.plan import Step
from river.tree import Array, Columns, Context, Leaf, Object, unique
from river.values import to_string

FastBuild = Callable[[Columns, list[str], dict[str, Any]], dict[str, Any]]


def compile_fast_path(root: Object, reference_paths: tuple[tuple[Step, ...], ...]) -> FastBuild:
    """The single-row builder of `root`: (columns, warnings, head) -> resource.

    `head` (resourceType, id, meta) is filled with the resource's elements.
    """
    emitter = _Emitter(_reference_nodes(root, reference_paths))
    emitter.object(root, "head")
    preamble = ["    context = Context(columns, 1, warnings)"] if emitter.needs_context else []
    lines = ["def build(columns, warnings, head):", *preamble, *emitter.lines, "    return head"]
    source = "\n".join(lines) + "\n"
    namespace = dict(emitter.namespace)
    exec(compile(source, "<river.fastpath>", "exec"), namespace)  # noqa: S102 (code we wrote)
    build = namespace["build"]
    build.source = source  # for whoever debugs it
    return build


def _reference_nodes(root: Object, paths: tuple[tuple[Step, ...], ...]) -> set[int]:
    """ids of the tree nodes that are Reference elements."""
    found = set()
    for path in paths:
        node: Any = root
        for step in path:
            node = node.fields.get(step.name) if isinstance(node, Object) else None
            if step.index is not None:
                node = node.elements.get(step.index) if isinstance(node, Array) else None
            if node is None:
                break
        if isinstance(node, Object):
            found.add(id(node))
    return found


class _Emitter:
    def __init__(self, references: set[int]) -> None:
        self.references = references
        self.lines: list[str] = []
        self.namespace: dict[str, Any] = {
            "unique": unique,
            "to_string": to_string,
            "resolve_reference": resolve_reference,
            "Context": Context,
        }
        self._count = 0
        self.needs_context = False

    def _name(self, prefix: str, value: Any = None) -> str:
        self._count += 1
        name = f"{prefix}{self._count}"
        if value is not None:
            self.namespace[name] = value
        return name

    def _line(self, text: str) -> None:
        self.lines.append("    " + text)

    def object(self, node: Object, result: str | None = None) -> str:
        if result is None:
            result = self._name("o")
            self._line(f"{result} = {{}}")
        for name, child in node.fields.items():
            key = repr(name)
            if isinstance(child, Leaf):
                self._leaf(child, lambda v, key=key: f"{result}[{key}] = {v}")
            else:
                value = self.object(child) if isinstance(child, Object) else self.array(child)
                self._line(f"if {value}:")
                self._line(f"    {result}[{key}] = {value}")
        if id(node) in self.references:
            self._line(f"resolve_reference({result})")
        return result

    def array(self, node: Array) -> str:
        result = self._name("a")
        self._line(f"{result} = []")
        for index in sorted(node.elements):
            element = node.elements[index]
            if isinstance(element, Leaf):
                self._leaf(element, lambda v: f"{result}.append({v})")
            else:
                value = self.object(element)
                self._line(f"if {value}:")
                self._line(f"    {result}.append({value})")
        self._line(f"if len({result}) > 1:")
        self._line(f"    {result} = unique({result})")
        return result

    def _leaf(self, leaf: Leaf, store: Callable[[str], str]) -> None:
        """Compute a leaf's value and store it when it is not empty."""
        shape = leaf.shape
        if shape.kind == "constant":
            if shape.value is not None and shape.value != "":
                self._line(store(self._name("k", shape.value)))
            return
        value = self._name("v")
        if shape.kind == "column":
            self._line(f"{value} = columns[{shape.label!r}][0]")
            if shape.clean is not None:
                self._line(f"{value} = {self._name('clean', shape.clean)}({value})")
            if shape.cast is to_string:
                self._line(f"if type({value}) is not str:")
                self._line(f"    {value} = to_string({value})")
            else:
                self._line(f"{value} = {self._name('cast', shape.cast)}({value})")
            if shape.clean is None:
                self._line(f"if {value} is not None and {value} != '':")
                self._line(f"    {store(value)}")
                return
        else:
            self.needs_context = True
            self._line(f"{value} = {self._name('leaf', leaf.compile())}(context, 0)")
        self._line(
            f"if {value} is not None and {value} != '' and {value} != {{}} and {value} != []:"
        )
        self._line(f"    {store(value)}")
