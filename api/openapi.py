"""`GET /openapi.json`: the API described in OpenAPI 3.1, written by hand.

Kept beside the routes and checked by a test (every Flask route must appear
here, with each of its methods), so the document cannot drift silently.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, fhir: bool = False) -> dict[str, Any]:
    media = "application/fhir+json" if fhir else "application/json"
    return {"description": description, "content": {media: {"schema": schema}}}


def _outcome(description: str) -> dict[str, Any]:
    return _json(_ref("OperationOutcome"), description, fhir=True)


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


_BAD = _outcome(
    "A wrong request: the OperationOutcome's diagnostics name the field and the problem."
)
_NO_BATCH = _outcome("No batch has this id.")
_UNAVAILABLE = _outcome("Kafka or the FHIR store cannot be reached now; try again later.")
_INTERNAL = _outcome(
    "An unexpected error; the API's log has the details under the reference given."
)
_LIMIT = _query(
    "limit", "Items per page.", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}
)
_OFFSET = _query("offset", "Items to skip.", {"type": "integer", "minimum": 0, "default": 0})
_BATCH_ID = _path("batch_id", "A batch id, as POST /batch answered it.")

_KEY = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
_KEYS = {"type": "array", "items": _KEY, "minItems": 1, "maxItems": 10000}

SCHEMAS: dict[str, Any] = {
    "OperationOutcome": {
        "type": "object",
        "description": "FHIR R4 OperationOutcome: issue[0] says what is wrong.",
        "required": ["resourceType", "issue"],
        "properties": {
            "resourceType": {"const": "OperationOutcome"},
            "issue": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["severity", "code", "diagnostics"],
                    "properties": {
                        "severity": {"enum": ["fatal", "error", "warning", "information"]},
                        "code": {
                            "type": "string",
                            "description": "invalid, structure, required, value, too-long, "
                            "not-found, not-supported, conflict, transient, exception",
                        },
                        "diagnostics": {"type": "string"},
                        "expression": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    },
    "BatchRequest": {
        "type": "object",
        "required": ["resource_ids"],
        "additionalProperties": False,
        "properties": {
            "resource_ids": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "minItems": 1,
                "description": "Mapping resource ids (GET /resources lists them).",
            },
            "primary_key_values": {
                "description": "Only these rows: one list for every resource, or an object "
                "resource id -> list (a resource not named: every row). Absent or null: every row.",
                "oneOf": [
                    _KEYS,
                    {
                        "type": "object",
                        "additionalProperties": {"oneOf": [_KEYS, {"type": "null"}]},
                    },
                    {"type": "null"},
                ],
            },
        },
    },
    "BatchCreated": {
        "type": "object",
        "required": ["batch_id", "resource_ids"],
        "properties": {
            "batch_id": {"type": "string"},
            "resource_ids": {"type": "array", "items": {"type": "string"}},
            "retry_of": {"type": "string", "description": "Retries only: the batch retried."},
            "instances": {
                "type": "object",
                "description": "Retries only: resource id -> instances retried "
                "(null: the whole resource).",
                "additionalProperties": {"type": ["integer", "null"]},
            },
        },
    },
    "PreviewRequest": {
        "type": "object",
        "required": ["resource_id", "primary_key_values"],
        "additionalProperties": False,
        "properties": {
            "resource_id": {"type": "string", "minLength": 1},
            "primary_key_values": _KEYS,
        },
    },
    "InstanceMessage": {
        "type": "object",
        "properties": {
            "resource_id": {"type": "string"},
            "primary_key_value": {},
            "message": {"type": "string"},
        },
    },
    "PreviewAnswer": {
        "type": "object",
        "required": ["instances", "errors", "warnings"],
        "properties": {
            "instances": {"type": "array", "items": _ref("Resource")},
            "errors": {"type": "array", "items": _ref("InstanceMessage")},
            "warnings": {"type": "array", "items": _ref("InstanceMessage")},
            "records": {
                "type": "array",
                "description": "The source rows as the mapping read them, per instance.",
                "items": {
                    "type": "object",
                    "properties": {
                        "primary_key_value": _KEY,
                        "columns": {
                            "type": "object",
                            "description": "column label -> one value per joined row",
                            "additionalProperties": {"type": "array"},
                        },
                    },
                },
            },
        },
    },
    "Caller": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "role": {"enum": ["reader", "operator", "admin", None]},
            "roles": {"type": "array", "items": {"type": "string"}},
            "auth": {"enum": ["oidc", "none"]},
        },
    },
    "ResourceProgress": {
        "type": "object",
        "properties": {
            "resource_id": {"type": "string"},
            "status": {
                "enum": ["running", "completed", "failed", "canceled", "stalled"],
                "description": "stalled: running, but no counter of the resource moved for the"
                " API's STALLED_AFTER_SECONDS; `stalled_at_stage` and `reason` say where and why.",
            },
            "stalled_at_stage": {
                "enum": ["extract", "transform", "load"],
                "description": "Stalled only: extract while the instances to extract are not"
                " counted or not all extracted, transform while some extracted ones are neither"
                " transformed and loaded nor failed (the loader counts both: a loader that cannot"
                " write stalls here), load otherwise.",
            },
            "reason": {
                "type": "string",
                "description": "Stalled only, one sentence: e.g. no progress for 412 s; stopped"
                " at stage transform (1,934 of 1,968 extracted instances transformed and loaded).",
            },
            "expected": {
                "type": ["integer", "null"],
                "description": "Null until the extractor counted.",
            },
            "extracted": {"type": "integer"},
            "transformed": {"type": "integer"},
            "loaded": {"type": "integer", "description": "created + updated"},
            "created": {"type": "integer"},
            "updated": {"type": "integer"},
            "deleted": {"type": "integer"},
            "failed": {"type": "integer"},
            "error": {"type": "string", "description": "Why the resource could not run at all."},
        },
    },
    "Batch": {
        "type": "object",
        "properties": {
            "batch_id": {"type": "string"},
            "status": {
                "enum": ["running", "completed", "failed", "canceled", "degraded"],
                "description": "degraded: a live batch whose connector is not following its"
                " source now; `reason` says why.",
            },
            "reason": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "ended_at": {"type": ["string", "null"], "format": "date-time"},
            "duration_seconds": {"type": "number"},
            "retry_of": {"type": "string"},
            "live": {"type": "boolean"},
            "stalled": {
                "const": True,
                "description": "Present when some resource is stalled: the batch, not ended,"
                " stays running.",
            },
            "resources": {"type": "array", "items": _ref("ResourceProgress")},
        },
    },
    "PageLinks": {
        "type": "object",
        "properties": {
            "self": {"type": "string", "format": "uri"},
            "next": {"type": ["string", "null"], "format": "uri"},
            "prev": {"type": ["string", "null"], "format": "uri"},
        },
    },
    "BatchList": {
        "allOf": [
            _ref("PageLinks"),
            {
                "type": "object",
                "properties": {
                    "limit": {"type": "integer"},
                    "offset": {"type": "integer"},
                    "items": {
                        "type": "array",
                        "items": _ref("Batch"),
                        "description": "Newest first.",
                    },
                },
            },
        ]
    },
    "ErrorPage": {
        "allOf": [
            _ref("PageLinks"),
            {
                "type": "object",
                "properties": {
                    "batch_id": {"type": "string"},
                    "total": {"type": "integer"},
                    "limit": {"type": "integer"},
                    "offset": {"type": "integer"},
                    "items": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "resource_id": {"type": ["string", "null"]},
                                "primary_key_value": {},
                                "stage": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        },
                    },
                },
            },
        ]
    },
    "ResourceList": {
        "type": "object",
        "properties": {
            "total": {"type": "integer"},
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "resource_id": {"type": "string"},
                        "resource_type": {"type": "string"},
                        "label": {"type": ["string", "null"]},
                    },
                },
            },
        },
    },
    "Health": {
        "type": "object",
        "properties": {
            "status": {"enum": ["ok", "unavailable"]},
            "problems": {
                "type": "array",
                "items": {"type": "string"},
                "description": "One sentence per part that is not ok.",
            },
            "kafka": {
                "type": "object",
                "properties": {
                    "ok": {"type": "boolean"},
                    "brokers": {"type": "integer"},
                    "missing_topics": {"type": "array", "items": {"type": "string"}},
                    "error": {"type": "string"},
                },
            },
            "store": {
                "type": "object",
                "properties": {
                    "ok": {"type": "boolean"},
                    "backend": {"type": "string"},
                    "error": {"type": "string"},
                },
            },
            "services": {
                "type": "object",
                "description": "extractor, transformer, loader (and extractor-live with live"
                " sources): each {ok, processes}, alive while its consumer group has a member.",
            },
            "connectors": {
                "type": "object",
                "description": "Each live source's connector: {ok, state, tasks: [{id, state,"
                " trace}]}.",
            },
            "replication_slots": {
                "type": "object",
                "description": "Each CDC connector's slot: {ok, connector, active,"
                " retained_bytes, lag_bytes}.",
            },
            "mappings": {
                "type": "object",
                "properties": {
                    "ok": {"type": "boolean"},
                    "resources": {"type": "integer"},
                    "error": {"type": "string"},
                },
            },
        },
    },
    "Resource": {
        "type": "object",
        "description": "A FHIR R4 resource.",
        "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string"}, "id": {"type": "string"}},
        "additionalProperties": True,
    },
    "Bundle": {
        "type": "object",
        "description": "A FHIR R4 searchset Bundle; no entry with _summary=count.",
        "required": ["resourceType", "type", "total", "link"],
        "properties": {
            "resourceType": {"const": "Bundle"},
            "type": {"const": "searchset"},
            "total": {"type": "integer"},
            "link": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "relation": {"enum": ["self", "next", "previous"]},
                        "url": {"type": "string", "format": "uri"},
                    },
                },
            },
            "entry": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "fullUrl": {"type": "string", "format": "uri"},
                        "resource": _ref("Resource"),
                        "search": {"type": "object", "properties": {"mode": {"const": "match"}}},
                    },
                },
            },
        },
    },
}

PATHS: dict[str, Any] = {
    "/batch": {
        "post": {
            "summary": "Start a batch: one `batch` event per resource.",
            "description": "The batch is recorded in the store, then its events are produced "
            "and acknowledged by Kafka. Every resource id is checked against the mappings first: "
            "nothing is written for a wrong request.",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("BatchRequest")}},
            },
            "responses": {
                "200": _json(_ref("BatchCreated"), "The batch id and its resources."),
                "400": _BAD,
                "503": _UNAVAILABLE,
                "500": _INTERNAL,
            },
        }
    },
    "/preview": {
        "post": {
            "summary": "The FHIR resources a few rows give, in-process: nothing is written.",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("PreviewRequest")}},
            },
            "responses": {
                "200": _json(_ref("PreviewAnswer"), "Instances, and errors and warnings per row."),
                "400": _outcome(
                    "A wrong request, an unknown resource or an invalid mapping "
                    "(one issue per fault)."
                ),
                "502": _outcome(
                    "The source database refused the query (a missing table or column)."
                ),
                "503": _outcome("The source database cannot be reached now."),
                "500": _INTERNAL,
            },
        }
    },
    "/resources": {
        "get": {
            "summary": "The resources the loaded mappings define.",
            "responses": {
                "200": _json(_ref("ResourceList"), "Every mapping resource."),
                "500": _INTERNAL,
            },
        }
    },
    "/resources/{resource_id}/keys": {
        "get": {
            "summary": "The first primary key values of a resource (after its filters), to"
            " preview.",
            "parameters": [
                _path("resource_id", "A resource id of the mappings."),
                _query(
                    "limit",
                    "How many.",
                    {"type": "integer", "minimum": 1, "maximum": 1000, "default": 20},
                ),
            ],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "resource_id": {"type": "string"},
                            "primary_key_values": {"type": "array", "items": _KEY},
                        },
                    },
                    "The values, in order.",
                ),
                "400": _BAD,
                "502": _outcome("The source database refused the query."),
                "503": _outcome("The source database cannot be reached now."),
                "500": _INTERNAL,
            },
        }
    },
    "/me": {
        "get": {
            "summary": "Who calls: the token's name and role (the console shows it).",
            "responses": {"200": _json(_ref("Caller"), "The caller."), "500": _INTERNAL},
        }
    },
    "/batches": {
        "get": {
            "summary": "Batches, newest first.",
            "parameters": [
                _LIMIT,
                _OFFSET,
                _query("live", "true: live batches only; false: the others.", {"type": "boolean"}),
                _query(
                    "status",
                    "Only the batches of this status.",
                    {"enum": ["running", "completed", "failed", "canceled", "degraded"]},
                ),
            ],
            "responses": {
                "200": _json(_ref("BatchList"), "A page of batches with next/prev links."),
                "400": _BAD,
                "503": _UNAVAILABLE,
                "500": _INTERNAL,
            },
        }
    },
    "/batches/{batch_id}": {
        "get": {
            "summary": "A batch: per resource expected, extracted, transformed, loaded, failed, "
            "status.",
            "parameters": [_BATCH_ID],
            "responses": {
                "200": _json(_ref("Batch"), "The batch."),
                "404": _NO_BATCH,
                "503": _UNAVAILABLE,
                "500": _INTERNAL,
            },
        },
        "delete": {
            "summary": "Cancel a running batch: no further work is done for it.",
            "parameters": [_BATCH_ID],
            "responses": {
                "200": _json(_ref("Batch"), "The batch, canceled (again: the same answer)."),
                "404": _NO_BATCH,
                "409": _outcome(
                    "The batch has already ended, or it follows a live source (live-<connector>)."
                ),
                "503": _UNAVAILABLE,
                "500": _INTERNAL,
            },
        },
    },
    "/batches/{batch_id}/errors": {
        "get": {
            "summary": "Every error of a batch, paginated.",
            "parameters": [
                _BATCH_ID,
                _query(
                    "limit",
                    "Items per page.",
                    {"type": "integer", "minimum": 1, "maximum": 10000, "default": 100},
                ),
                _OFFSET,
                _query("resource_id", "Only the errors of this resource.", {"type": "string"}),
                _query(
                    "stage",
                    "Only the errors of this stage.",
                    {"enum": ["extract", "transform", "load"]},
                ),
            ],
            "responses": {
                "200": _json(_ref("ErrorPage"), "A page of errors with total and next/prev links."),
                "400": _BAD,
                "404": _NO_BATCH,
                "503": _UNAVAILABLE,
                "500": _INTERNAL,
            },
        }
    },
    "/batches/{batch_id}/retry": {
        "post": {
            "summary": "A new batch over exactly the failed instances of an ended batch.",
            "description": "Resources that could not run at all are run again whole. A live"
            " batch (live-<connector>) never ends: its failed instances are retried at any time,"
            " but those of a CSV source, whose rows are in no database: upload the corrected"
            " file instead.",
            "parameters": [_BATCH_ID],
            "responses": {
                "200": _json(_ref("BatchCreated"), "The new batch."),
                "404": _NO_BATCH,
                "409": _outcome(
                    "The batch is still running, nothing failed, or it follows CSV files."
                ),
                "503": _UNAVAILABLE,
                "500": _INTERNAL,
            },
        }
    },
    "/fhir/{resource_type}/{resource_id}": {
        "get": {
            "summary": "A resource of the FHIR store.",
            "parameters": [
                _path("resource_type", "A FHIR R4 resource type."),
                _path("resource_id", "The resource's id."),
                _query("_format", "json only.", {"type": "string"}),
            ],
            "responses": {
                "200": _json(_ref("Resource"), "The resource as stored.", fhir=True),
                "400": _BAD,
                "404": _outcome("No such resource, or not a FHIR R4 resource type."),
                "503": _UNAVAILABLE,
                "500": _INTERNAL,
            },
        }
    },
    "/fhir/{resource_type}": {
        "get": {
            "summary": "Search the FHIR store: a searchset Bundle.",
            "description": "Other search parameters are refused with a 400.",
            "parameters": [
                _path("resource_type", "A FHIR R4 resource type."),
                _query(
                    "_tag", "system|code (or code: any system) of meta.tag.", {"type": "string"}
                ),
                _query(
                    "_count",
                    "Page size (at most 1000).",
                    {"type": "integer", "minimum": 0, "default": 50},
                ),
                _query(
                    "_offset", "Resources to skip.", {"type": "integer", "minimum": 0, "default": 0}
                ),
                _query("_summary", "count: the total alone.", {"enum": ["count", "false"]}),
                _query("_format", "json only.", {"type": "string"}),
            ],
            "responses": {
                "200": _json(
                    _ref("Bundle"),
                    "The matches, with total and self/next/previous links.",
                    fhir=True,
                ),
                "400": _BAD,
                "404": _outcome("Not a FHIR R4 resource type."),
                "503": _UNAVAILABLE,
                "500": _INTERNAL,
            },
        }
    },
    "/health": {
        "get": {
            "summary": "Every part FHIR River needs: Kafka, the store, the mappings, the"
            " services, the live sources' connectors and replication slots.",
            "responses": {
                "200": _json(_ref("Health"), "Every part is ok."),
                "503": _json(_ref("Health"), "Some part is not: `problems` names each."),
            },
        }
    },
    "/health/live": {
        "get": {
            "summary": "Liveness: the API process answers (a container's healthcheck).",
            "responses": {"200": _json({"type": "object"}, "The API answers.")},
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document.",
            "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}
            },
        }
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "FHIR River API",
        "version": "0.1.0",
        "description": "Batches of hospital data to HL7 FHIR R4 over Kafka, previews of a "
        "mapping, and FHIR reads of the store. Every problem is answered with a FHIR "
        "OperationOutcome.",
    },
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "An OpenID Connect access token of OIDC_ISSUER for OIDC_AUDIENCE;"
                " the role each route needs is api/auth.py's ROUTE_ROLES (README, Security).",
            }
        },
    },
    # Every route needs a token (API_AUTH=oidc) but the liveness probe.
    "security": [{"bearer": []}],
}
PATHS["/health/live"]["get"]["security"] = []


def document() -> dict[str, Any]:
    return deepcopy(DOCUMENT)
