"""What the API answers in FHIR's own shapes: OperationOutcome for every
problem, searchset Bundles for searches, and the `application/fhir+json`
responses that carry them.

    raise ApiError(400, "required", "resource_ids is missing", expression="resource_ids")
    return fhir_response(searchset(total, resources, base, links))

Every non-2xx answer of the API is an OperationOutcome (docs/architecture.md: bad input
is a 400 with a FHIR OperationOutcome body), so a user's curl shows one
sentence naming the problem, never an HTML page or a stack trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from flask import Response

FHIR_JSON = "application/fhir+json"

# OperationOutcome.issue.code values (http://hl7.org/fhir/R4/valueset-issue-type.html)
# the API uses, with the HTTP statuses they go with.
INVALID = "invalid"  # 400: the body or a parameter is wrong
STRUCTURE = "structure"  # 400: the body is not JSON
REQUIRED = "required"  # 400: a field is missing
VALUE = "value"  # 400: a field has the wrong type or value
TOO_LONG = "too-long"  # 400: the body is too large
NOT_SUPPORTED = "not-supported"  # 400/405: a parameter or method the API does not handle
NOT_FOUND = "not-found"  # 404, or 400 for unknown resource ids in a body
CONFLICT = "conflict"  # 409: the batch's state forbids it
TRANSIENT = "transient"  # 503: Kafka, the store or the source cannot be reached now
LOGIN = "login"  # 401: no token
EXPIRED = "expired"  # 401: the token has expired
SECURITY = "security"  # 401: the token is not one the API trusts
FORBIDDEN = "forbidden"  # 403: the caller's roles do not allow it
EXCEPTION = "exception"  # 500 and 502


class ApiError(Exception):
    """A problem the API answers with `status` and an OperationOutcome.

    `details` add one issue each (e.g. one per fault of an invalid mapping).
    """

    def __init__(
        self,
        status: int,
        code: str,
        diagnostics: str,
        *,
        expression: str | None = None,
        details: Sequence[str] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.expression = expression
        self.details = list(details)
        self.headers = dict(headers or {})  # e.g. WWW-Authenticate of a 401

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.code, self.diagnostics, self.expression, self.details)


def operation_outcome(
    code: str,
    diagnostics: str,
    expression: str | None = None,
    details: Iterable[str] = (),
    severity: str = "error",
) -> dict[str, Any]:
    """An OperationOutcome whose first issue says what is wrong."""
    first: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        # FHIRPath-like location of the faulty field in the request body or query.
        first["expression"] = [expression]
    issues = [first]
    issues += [{"severity": severity, "code": code, "diagnostics": d} for d in details]
    return {"resourceType": "OperationOutcome", "issue": issues}


def json_bytes(data: Any) -> bytes:
    # orjson: bundles of a thousand resources serialize in milliseconds; `default=str`
    # covers the odd source value (Decimal) a preview's error may carry.
    return orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS)


def json_response(data: Any, status: int = 200, mimetype: str = "application/json") -> Response:
    return Response(json_bytes(data), status=status, mimetype=mimetype)


def fhir_response(data: Any, status: int = 200) -> Response:
    return json_response(data, status, FHIR_JSON)


def error_response(error: ApiError) -> Response:
    response = fhir_response(error.outcome(), error.status)
    response.headers.update(error.headers)
    return response


def searchset(
    total: int,
    resources: Sequence[dict[str, Any]] | None,
    base_url: str,
    links: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    """A searchset Bundle; `resources` None gives the total alone (`_summary=count`).

    `base_url` is the service base (`http://host:3000/fhir`): each entry's
    fullUrl is `<base>/<type>/<id>`, as FHIR servers answer.
    """
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": [{"relation": relation, "url": url} for relation, url in links],
    }
    if resources is not None:
        bundle["entry"] = [
            {
                "fullUrl": f"{base_url}/{resource.get('resourceType')}/{resource.get('id')}",
                "resource": resource,
                "search": {"mode": "match"},
            }
            for resource in resources
        ]
    return bundle
