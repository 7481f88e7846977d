"""Mappings read from Pyrog's GraphQL API instead of export files.

    client = PyrogClient(url, login, password)
    mappings = client.load_mappings(scripts)        # resources fetched on first use
    plan = mappings.resource("ckd...")

Pyrog's API gives the older shape of a resource (docs/mapping.md, Pyrog's GraphQL
API): no input groups, tables named directly. It is turned into the export
shape, then analysed by `river.mapping` like a file, so both give one plan.
"""

from __future__ import annotations

from typing import Any

import requests

from river.errors import RiverError, UnknownResource
from river.identity import pyrog_logical_reference
from river.mapping import Mapping, MappingSet, ScriptNames, analyse
from river.plan import ResourcePlan
from river.secrets import Secrets

LOGIN = """mutation login($email: String!, $password: String!) {
  login(email: $email, password: $password) { token } }"""
RESOURCE = """query resource($resourceId: ID!) { resource(resourceId: $resourceId) {
  id primaryKeyTable primaryKeyColumn definitionId
  definition { type kind derivation url }
  filters { sqlColumn { table column } relation value }
  attributes { path definitionId mergingScript
    inputs { sqlValue { table column joins { tables { table column } } }
             script conceptMapId staticValue } }
  source { id credential { model host port database owner login password: decryptedPassword } }
} }"""


class PyrogError(RiverError):
    pass


class PyrogClient:
    def __init__(self, url: str, login: str, password: str, timeout: float = 15) -> None:
        self.url = url
        self._login = login
        self._password = password
        self.timeout = timeout
        self._token: str | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> PyrogClient:
        return cls(settings.pyrog_api_url, settings.pyrog_login, settings.pyrog_password)

    def load_mappings(self, scripts: ScriptNames) -> PyrogMappings:
        return PyrogMappings(self, scripts)

    def fetch_resource(self, resource_id: str) -> dict[str, Any]:
        """The resource in Pyrog's own shape; errors name the resource id."""
        data = self._call(RESOURCE, {"resourceId": resource_id}, f"resource {resource_id}")
        resource = data.get("resource")
        if resource is None:
            raise UnknownResource(resource_id, [])
        return resource

    def _call(self, query: str, variables: dict[str, Any], what: str) -> dict[str, Any]:
        headers = {}
        if query is not LOGIN:
            headers["Authorization"] = f"Bearer {self._authenticate()}"
        try:
            answer = requests.post(
                self.url,
                json={"query": query, "variables": variables},
                headers=headers,
                timeout=self.timeout,
            )
        except requests.RequestException as error:
            raise PyrogError(
                f"cannot reach Pyrog at {self.url} for {what}: {type(error).__name__}"
            ) from None
        if answer.status_code != 200:
            raise PyrogError(f"Pyrog answered {answer.status_code} for {what}")
        try:
            body = answer.json()
        except ValueError:
            raise PyrogError(f"Pyrog's answer for {what} is not JSON") from None
        if body.get("errors"):
            messages = "; ".join(str(e.get("message", e)) for e in body["errors"])
            # Pyrog's answer to the login may quote what it was sent: the password is known.
            messages = Secrets([self._password]).mask(messages)
            raise PyrogError(f"Pyrog refused {what}: {messages}")
        return body.get("data") or {}

    def _authenticate(self) -> str:
        if self._token is None:
            data = self._call(LOGIN, {"email": self._login, "password": self._password}, "login")
            token = (data.get("login") or {}).get("token")
            if not token:
                raise PyrogError(f"Pyrog gave no token for login {self._login!r}")
            self._token = token
        return self._token


class PyrogMappings(MappingSet):
    """Resources fetched from Pyrog when first asked for, then kept."""

    def __init__(self, client: PyrogClient, scripts: ScriptNames) -> None:
        super().__init__([])
        self.client = client
        self.scripts = scripts

    def resource(self, resource_id: str) -> ResourcePlan:
        if resource_id not in self._by_resource:
            raw = self.client.fetch_resource(resource_id)
            mapping = analyse(to_export(raw), f"Pyrog resource {resource_id}", self.scripts)
            self.mappings.append(mapping)
            self._by_resource[resource_id] = (mapping, mapping.resources[resource_id])
        return self._by_resource[resource_id][1]

    def mapping_of(self, resource_id: str) -> Mapping:
        self.resource(resource_id)
        return self._by_resource[resource_id][0]


def to_export(resource: dict[str, Any]) -> dict[str, Any]:
    """Pyrog's API shape of one resource -> a Pyrog export holding it."""
    source = resource.get("source") or {}
    credential = source.get("credential") or {}
    columns: dict[tuple[str, str], str] = {}

    def column_id(table: str, column: str) -> str:
        return columns.setdefault((table, column), f"{table}.{column}")

    def sql_input(sql: dict[str, Any], script: str = "", concept_map: str = "") -> dict[str, Any]:
        joins = []
        for join in sql.get("joins") or []:
            tables = join.get("tables") or []
            if len(tables) == 2:
                joins.append(
                    {
                        "left": column_id(tables[0]["table"], tables[0]["column"]),
                        "right": column_id(tables[1]["table"], tables[1]["column"]),
                    }
                )
        return {
            "column": column_id(sql["table"], sql["column"]),
            "script": script or "",
            "concept_map_id": concept_map or "",
            "joins": joins,
        }

    attributes = []
    for attribute in resource.get("attributes") or []:
        inputs = attribute.get("inputs") or []
        group = {
            "id": attribute.get("path", ""),
            "merging_script": attribute.get("mergingScript") or "",
            "static_inputs": [{"value": i["staticValue"]} for i in inputs if not i.get("sqlValue")],
            "sql_inputs": [
                sql_input(i["sqlValue"], i.get("script"), i.get("conceptMapId"))
                for i in inputs
                if i.get("sqlValue")
            ],
            "conditions": [],
        }
        attributes.append(
            {
                "path": attribute.get("path"),
                "definition_id": attribute.get("definitionId"),
                "slice_name": "",
                "input_groups": [group] if inputs else [],
            }
        )
    filters = [
        {
            "relation": f.get("relation"),
            "value": f.get("value"),
            "sql_input": sql_input(f["sqlColumn"]),
        }
        for f in resource.get("filters") or []
        if f.get("sqlColumn")
    ]
    owner_id = "owner"
    primary_key = (resource.get("primaryKeyTable"), resource.get("primaryKeyColumn"))
    exported_resource = {
        "id": resource.get("id"),
        "label": "",
        "definition_id": resource.get("definitionId"),
        "definition": resource.get("definition") or {},
        "logical_reference": str(pyrog_logical_reference(str(resource.get("id")))),
        "primary_key_owner": owner_id,
        "primary_key_table": primary_key[0],
        "primary_key_column": primary_key[1],
        "filters": filters,
        "attributes": attributes,
    }
    return {
        "id": source.get("id"),
        "name": source.get("name") or source.get("id"),
        "credential": {
            "model": credential.get("model"),
            "host": credential.get("host"),
            "port": credential.get("port"),
            "database": credential.get("database"),
            "login": credential.get("login"),
            "password": credential.get("password"),
            "owners": [
                {
                    "id": owner_id,
                    "name": credential.get("owner") or "public",
                    "columns": [
                        {"id": cid, "table": table, "column": column}
                        for (table, column), cid in columns.items()
                    ],
                }
            ],
        },
        "resources": [exported_resource],
    }
