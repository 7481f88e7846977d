"""Small Pyrog exports written in tests, in the export format of docs/mapping.md.

export = ExportBuilder()
patient = export.resource("Patient", "patients", "subject_id")
patient.attribute("gender", "code", export.group(sql=[export.input("patients", "gender")]))
plan = export.analyse().resources[patient.id]
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from river.mapping import Mapping, analyse
from river.scripts import ScriptRegistry

LOGICAL_REFERENCE = "b8efd322-3e38-4072-9c68-e62e15d84d04"
_ids = itertools.count()


class ResourceBuilder:
    def __init__(self, export: ExportBuilder, raw: dict[str, Any]) -> None:
        self.export = export
        self.raw = raw
        self.id = raw["id"]

    def attribute(
        self, path: str, fhir_type: str, *groups: dict[str, Any], slice_name: str = ""
    ) -> ResourceBuilder:
        self.raw["attributes"].append(
            {
                "path": path,
                "definition_id": fhir_type,
                "slice_name": slice_name,
                "input_groups": list(groups),
            }
        )
        return self

    def filter(self, relation: str, value: str, sql_input: dict[str, Any]) -> ResourceBuilder:
        self.raw["filters"].append({"relation": relation, "value": value, "sql_input": sql_input})
        return self


class ExportBuilder:
    def __init__(self, owner: str = "public") -> None:
        self.owner = owner
        self.columns: dict[tuple[str, str], str] = {}
        self.resources: list[dict[str, Any]] = []

    def column(self, table: str, column: str) -> str:
        return self.columns.setdefault((table, column), f"col-{table}-{column}")

    def resource(
        self,
        resource_type: str,
        table: str,
        column: str,
        logical_reference: str = LOGICAL_REFERENCE,
        definition: dict[str, Any] | None = None,
    ) -> ResourceBuilder:
        raw = {
            "id": f"res{next(_ids)}",
            "label": f"a {resource_type}",
            "definition_id": resource_type,
            "definition": definition
            or {"type": resource_type, "kind": "resource", "derivation": "specialization"},
            "logical_reference": logical_reference,
            "primary_key_owner": "owner-1",
            "primary_key_table": table,
            "primary_key_column": column,
            "filters": [],
            "attributes": [],
        }
        self.resources.append(raw)
        return ResourceBuilder(self, raw)

    def input(
        self,
        table: str,
        column: str,
        script: str = "",
        concept_map: str = "",
        joins: list[tuple[tuple[str, str], tuple[str, str]]] = (),
    ) -> dict[str, Any]:
        return {
            "column": self.column(table, column),
            "script": script,
            "concept_map_id": concept_map,
            "joins": [
                {"left": self.column(*left), "right": self.column(*right)} for left, right in joins
            ],
        }

    def group(
        self,
        sql: list[dict[str, Any]] = (),
        static: list[str] = (),
        merging: str = "",
        conditions: list[tuple[str, str, str, dict[str, Any]]] = (),
    ) -> dict[str, Any]:
        return {
            "id": f"group{next(_ids)}",
            "merging_script": merging,
            "static_inputs": [{"value": value} for value in static],
            "sql_inputs": list(sql),
            "conditions": [
                {"action": action, "relation": relation, "value": value, "sql_input": sql_input}
                for action, relation, value, sql_input in conditions
            ],
        }

    def document(self) -> dict[str, Any]:
        return {
            "id": "source-1",
            "name": "test source",
            "credential": {
                "host": "localhost",
                "port": 5432,
                "database": "db",
                "login": "u",
                "password": "p",
                "model": "POSTGRES",
                "owners": [
                    {
                        "id": "owner-1",
                        "name": self.owner,
                        "columns": [
                            {"id": cid, "table": table, "column": column}
                            for (table, column), cid in self.columns.items()
                        ],
                    }
                ],
            },
            "resources": self.resources,
        }

    def analyse(self, scripts: ScriptRegistry | None = None) -> Mapping:
        return analyse(self.document(), "test-export.json", scripts or ScriptRegistry.default())


def expected_id(primary_key: object, logical_reference: str = LOGICAL_REFERENCE) -> str:
    return str(uuid.uuid5(uuid.UUID(logical_reference), str(primary_key)))
