"""The audit trail: who read which FHIR data, who started, retried or canceled which
batch, who previewed which source rows, when, and how it ended.

Each such request becomes one FHIR AuditEvent (R4) in the FHIR store, the FHIR way:
admins read and search them at `/fhir/AuditEvent`. Refusals (401, 403) are recorded
too. An event is never lost silently: when the store cannot keep it, the answer is
withheld and the caller gets a 503 saying so (a batch already started stays started,
and the 503 says which).
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any

from api.auth import Caller

# Flask endpoint -> (what was done, FHIR AuditEvent.action: C create, R read, D delete,
# E execute). The codes of `subtype` are FHIR's restful interactions where one fits.
AUDITED: dict[str, tuple[str, str]] = {
    "fhir.read": ("read", "R"),
    "fhir.search": ("search-type", "E"),
    "batches.create_batch": ("batch-start", "E"),
    "batches.retry_batch": ("batch-retry", "E"),
    "batches.cancel_batch": ("batch-cancel", "D"),
    "batches.preview": ("preview", "E"),
}
INTERACTIONS = "http://hl7.org/fhir/restful-interaction"
RIVER_ACTIONS = "https://github.com/arkhn/fhir-river/audit-action"
_REST = {
    "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
    "code": "rest",
    "display": "RESTful Operation",
}


def outcome_code(status: int) -> str:
    """AuditEvent.outcome: 0 success, 4 minor failure (the caller's), 8 serious (ours)."""
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


def audit_event(
    endpoint: str,
    *,
    caller: Caller | None,
    issuer: str,
    method: str,
    path: str,
    query: str,
    view_args: dict[str, Any],
    status: int,
    batch_id: str | None,
    client_address: str | None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The AuditEvent of one request to an audited endpoint."""
    what, action = AUDITED[endpoint]
    system = INTERACTIONS if endpoint.startswith("fhir.") else RIVER_ACTIONS
    agent: dict[str, Any] = {"requestor": True}
    if caller is not None:
        agent["who"] = {
            "identifier": {"system": issuer, "value": caller.subject},
            "display": caller.name,
        }
        if caller.role:
            agent["role"] = [{"text": caller.role}]
    else:
        agent["who"] = {"display": "unauthenticated"}
    if client_address:
        agent["network"] = {"address": client_address, "type": "2"}  # 2: IP address
    entity: dict[str, Any] = {"description": f"{method} {path}"}
    resource_type = view_args.get("resource_type")
    if "resource_id" in view_args and resource_type:
        entity["what"] = {"reference": f"{resource_type}/{view_args['resource_id']}"}
    elif query:
        entity["query"] = base64.b64encode(query.encode()).decode()
    entities = [entity]
    # A retry names the batch it retries (the path) and the batch it started.
    for batch in dict.fromkeys(b for b in (view_args.get("batch_id"), batch_id) if b):
        entities.append({"what": {"identifier": {"value": batch}}, "description": "batch"})
    return {
        "resourceType": "AuditEvent",
        "id": uuid.uuid4().hex,
        "type": _REST,
        "subtype": [{"system": system, "code": what}],
        "action": action,
        "recorded": (now or dt.datetime.now(dt.UTC)).isoformat(timespec="milliseconds"),
        "outcome": outcome_code(status),
        "outcomeDesc": f"HTTP {status}",
        "agent": [agent],
        "source": {"observer": {"display": "FHIR River API"}},
        "entity": entities,
    }
