"""Pyrog's GraphQL API and FHIR ConceptMaps, read over HTTP from a local server
that answers as those APIs do (docs/mapping.md documents both exchanges)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from river.concept_maps import ConceptMapNotFound, ConceptMaps
from river.errors import RiverError, UnknownResource
from river.identity import pyrog_logical_reference
from river.pyrog import PyrogClient, PyrogError
from river.scripts import ScriptRegistry
from river.transform import ResourceTransformer
from test.conftest import CONCEPT_MAPS

Handler = Callable[[str, str, dict[str, Any] | None, dict[str, str]], tuple[int, Any]]


@pytest.fixture
def server() -> Iterator[Callable[[Handler], str]]:
    servers = []

    def start(handle: Handler) -> str:
        class Answer(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                status, payload = handle(method, self.path, body, dict(self.headers))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._answer("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._answer("POST")

            def log_message(self, *args: Any) -> None:
                pass

        httpd = HTTPServer(("127.0.0.1", 0), Answer)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_port}"

    yield start
    for httpd in servers:
        httpd.shutdown()


PYROG_RESOURCE = {
    "id": "ckpatient",
    "primaryKeyTable": "patients",
    "primaryKeyColumn": "subject_id",
    "definitionId": "Patient",
    "definition": {
        "type": "Patient",
        "kind": "resource",
        "derivation": "specialization",
        "url": "u",
    },
    "filters": [
        {"sqlColumn": {"table": "patients", "column": "subject_id"}, "relation": ">", "value": "0"}
    ],
    "attributes": [
        {
            "path": "gender",
            "definitionId": "code",
            "mergingScript": None,
            "inputs": [
                {
                    "sqlValue": {"table": "patients", "column": "gender", "joins": []},
                    "script": "map_gender",
                    "conceptMapId": None,
                    "staticValue": None,
                },
            ],
        },
        {
            "path": "identifier[0].value",
            "definitionId": "string",
            "mergingScript": "merge_concat",
            "inputs": [
                {
                    "sqlValue": {
                        "table": "admissions",
                        "column": "hadm_id",
                        "joins": [
                            {
                                "tables": [
                                    {"table": "patients", "column": "subject_id"},
                                    {"table": "admissions", "column": "subject_id"},
                                ]
                            }
                        ],
                    },
                    "script": None,
                    "conceptMapId": None,
                    "staticValue": None,
                },
                {"sqlValue": None, "script": None, "conceptMapId": None, "staticValue": "(adm)"},
            ],
        },
        {
            "path": "identifier[0]",
            "definitionId": "Identifier",
            "mergingScript": None,
            "inputs": [],
        },
    ],
    "source": {
        "id": "src1",
        "credential": {
            "model": "POSTGRES",
            "host": "db",
            "port": 5432,
            "database": "mimic",
            "owner": "public",
            "login": "u",
            "password": "secret",
        },
    },
}


def pyrog_handler(calls: list) -> Handler:
    def handle(method, path, body, headers):
        calls.append((body["query"].split("(")[0].split()[-1], headers.get("Authorization")))
        if "login(" in body["query"]:
            if body["variables"] == {"email": "me@hospital.org", "password": "pw"}:
                return 200, {"data": {"login": {"token": "T0K"}}}
            return 200, {"errors": [{"message": "wrong credentials"}], "data": None}
        if headers.get("Authorization") != "Bearer T0K":
            return 401, {"errors": [{"message": "not authenticated"}]}
        resource_id = body["variables"]["resourceId"]
        if resource_id == "ckpatient":
            return 200, {"data": {"resource": PYROG_RESOURCE}}
        if resource_id == "boom":
            return 500, {"error": "internal"}
        return 200, {"data": {"resource": None}}

    return handle


def test_pyrog_resource_becomes_the_same_plan_as_an_export(server):
    calls: list = []
    url = server(pyrog_handler(calls))
    scripts = ScriptRegistry.default()
    mappings = PyrogClient(url, "me@hospital.org", "pw").load_mappings(scripts)
    plan = mappings.resource("ckpatient")
    assert calls == [("login", None), ("resource", "Bearer T0K")]
    assert plan.resource_type == "Patient"
    assert plan.logical_reference == pyrog_logical_reference("ckpatient")
    assert [a.name for a in plan.aliases] == ["patients", "admissions"]
    assert [(f.relation, f.value, f.input.label) for f in plan.filters] == [
        (">", "0", "patients.subject_id")
    ]
    credential = mappings.mapping_of("ckpatient").credential
    assert (credential.host, credential.database) == ("db", "mimic")
    transformer = ResourceTransformer(plan, scripts, ConceptMaps())
    outcome = transformer.transform(
        {"patients.subject_id": [1, 1], "patients.gender": ["F", "F"], "admissions.hadm_id": [7, 8]}
    )
    assert outcome.resource["gender"] == "female"
    assert outcome.resource["identifier"] == [{"value": "7 (adm)"}, {"value": "8 (adm)"}]
    mappings.resource("ckpatient")
    assert len(calls) == 2  # fetched once


def test_pyrog_errors_name_the_resource_and_hide_the_password(server):
    url = server(pyrog_handler([]))
    client = PyrogClient(url, "me@hospital.org", "pw")
    with pytest.raises(UnknownResource, match="'missing'"):
        client.fetch_resource("missing")
    with pytest.raises(PyrogError, match="Pyrog answered 500 for resource boom"):
        client.fetch_resource("boom")
    with pytest.raises(PyrogError, match="Pyrog refused login: wrong credentials") as refused:
        PyrogClient(url, "me@hospital.org", "bad-password").fetch_resource("ckpatient")
    assert "bad-password" not in str(refused.value)
    with pytest.raises(PyrogError, match="cannot reach Pyrog at http://127.0.0.1:1 for login"):
        PyrogClient("http://127.0.0.1:1", "a", "b").fetch_resource("x")


def test_concept_maps_from_a_bundle_file():
    maps = ConceptMaps.from_files(CONCEPT_MAPS)
    assert maps.get("8d45157a-12c5-4da2-8b80-0c5607fa37d7") == {"F": "female", "M": "male"}
    with pytest.raises(ConceptMapNotFound, match="'nope' not found in the CONCEPT_MAPS files"):
        maps.get("nope")


def test_concept_maps_from_a_fhir_api(server):
    def handle(method, path, body, headers):
        if path == "/fhir/ConceptMap/cm1":
            return 200, {
                "resourceType": "ConceptMap",
                "id": "cm1",
                "group": [
                    {
                        "element": [
                            {"code": "M", "target": [{"code": "male"}, {"code": "other"}]},
                            {"code": "X", "target": []},
                        ]
                    }
                ],
            }
        return 404, {"resourceType": "OperationOutcome"}

    url = server(handle)
    maps = ConceptMaps.from_settings(fhir_api_url=f"{url}/fhir/")
    assert maps.get("cm1") == {"M": "male"}
    with pytest.raises(ConceptMapNotFound):
        maps.get("cm2")


def test_concept_maps_setting_errors(tmp_path):
    with pytest.raises(RiverError, match="CONCEPT_MAPS: no such file or folder"):
        ConceptMaps.from_files(tmp_path / "missing")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(RiverError, match="bad.json is not valid JSON"):
        ConceptMaps.from_files(tmp_path)
