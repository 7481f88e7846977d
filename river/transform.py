"""Transformation: one extracted record -> one FHIR resource, as the mapping means.

    transformer = ResourceTransformer(plan, scripts, concept_maps)
    outcome = transformer.transform(record)   # outcome.resource or outcome.error

The plan is bound once into a tree of small closures (input groups, scripts,
casts, concept maps) shaped like the resource; each record only runs it.
Arrays follow docs/mapping.md (Arrays and one-to-many joins): an array element under
which values from a one-to-many join stand is repeated once per joined row,
at the shallowest array that holds them directly.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from river.concept_maps import ConceptMaps
from river.errors import InstanceError
from river.fastpath import compile_fast_path
from river.identity import RESOURCE_TAG_SYSTEM, SOURCE_TAG_SYSTEM, id_maker, resolve_reference
from river.plan import ResourcePlan
from river.tree import Columns, Context, Scripts, build_tree, unique


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
        tree = build_tree(plan, scripts, concept_maps)
        self._build = tree.compile()
        # Mapped meta elements are merged with ours: only the general path does it.
        maps_meta = "meta" in tree.fields
        self._fast = None if maps_meta else compile_fast_path(tree, plan.reference_paths)
        self._reference_paths = [tuple(step.name for step in path) for path in plan.reference_paths]
        self._pk_label = plan.primary_key.label
        self._make_id = id_maker(plan.logical_reference)
        # Shared by every resource made here: nothing downstream mutates tags.
        self._meta: dict[str, Any] = {
            "tag": [
                {"system": SOURCE_TAG_SYSTEM, "code": plan.source_id},
                {"system": RESOURCE_TAG_SYSTEM, "code": plan.resource_id},
            ]
        }
        if plan.profile_url:
            self._meta["profile"] = [plan.profile_url]

    def transform(self, columns: Columns, now: str | None = None) -> Outcome:
        """The resource of one record (label -> one value per joined row)."""
        plan = self.plan
        keys = columns[self._pk_label]
        warnings: list[str] = []
        outcome = Outcome(plan.resource_id, keys[0], None, None, warnings)
        meta = {**self._meta, "lastUpdated": now or timestamp()}
        head = {"resourceType": plan.resource_type, "id": self._make_id(keys[0]), "meta": meta}
        if len(keys) == 1 and self._fast is not None:
            try:
                outcome.resource = self._fast(columns, warnings, head)
                return outcome
            except Exception:
                # The general builder gives the same resource, or says
                # precisely which attribute failed and why.
                warnings.clear()
        try:
            body = self._general(columns, len(keys), warnings)
        except InstanceError as error:
            outcome.error = str(error)
            return outcome
        mapped_meta = body.pop("meta", None)
        if mapped_meta:
            head["meta"] = _merge_meta(mapped_meta, meta)
        head.update(body)
        outcome.resource = head
        return outcome

    def _general(self, columns: Columns, n_rows: int, warnings: list[str]) -> dict[str, Any]:
        context = Context(columns, n_rows, warnings)
        try:
            body = self._build(context, 0 if n_rows == 1 else None) or {}
        except KeyError as error:
            raise InstanceError(f"the record has no column {error.args[0]!r}") from None
        # Arrays may repeat per row: references are found by name.
        for path in self._reference_paths:
            _resolve_references(body, path)
        return body


def timestamp() -> str:
    """The instant of a transformation, as `meta.lastUpdated` takes it."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _merge_meta(mapped: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    merged = {**mapped, **ours}
    for key in ("tag", "profile"):
        if key in mapped and key in ours:
            merged[key] = unique([*mapped[key], *ours[key]])
    return merged


def _resolve_references(node: Any, path: tuple[str, ...]) -> None:
    """Every Reference element at `path` (by name, through arrays) gets its `reference`."""
    if type(node) is list:
        for item in node:
            _resolve_references(item, path)
    elif type(node) is dict:
        if path:
            _resolve_references(node.get(path[0]), path[1:])
        else:
            resolve_reference(node)
