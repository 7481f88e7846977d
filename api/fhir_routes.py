"""What the store holds, read the FHIR way (so a user checks a batch with curl):

    GET /fhir/<type>/<id>                                     the resource (404: OperationOutcome)
    GET /fhir/<type>?_tag=<system>|<code>&_count=N&_offset=M  a searchset Bundle, paging links
    GET /fhir/<type>?_tag=...&_summary=count                  the total alone

Only these search parameters are understood; any other is refused with a 400
rather than ignored, since a FHIR client would otherwise take an unfiltered
answer for a filtered one.
"""

from __future__ import annotations

import re
from functools import cache
from urllib.parse import urlencode

from flask import Blueprint, Response, request

from api.fhir import INVALID, NOT_FOUND, NOT_SUPPORTED, VALUE, ApiError, fhir_response, searchset
from api.inputs import int_parameter
from api.services import services
from river.validation import resource_types

blueprint = Blueprint("fhir", __name__, url_prefix="/fhir")

SEARCH_PARAMETERS = {"_tag", "_count", "_offset", "_summary", "_format"}
JSON_FORMATS = {"json", "application/json", "application/fhir+json"}
DEFAULT_COUNT = 50
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
MAX_COUNT = 1000  # a larger _count gets pages of this size, as FHIR lets a server do


@blueprint.get("/<resource_type>/<resource_id>")
def read(resource_type: str, resource_id: str) -> Response:
    _check_type(resource_type)
    unknown = sorted(set(request.args) - {"_format"})
    if unknown:
        raise ApiError(
            400, NOT_SUPPORTED, f"a read takes no parameter but _format; got {', '.join(unknown)}"
        )
    _check_format()
    if not FHIR_ID.fullmatch(resource_id):
        raise ApiError(
            404,
            NOT_FOUND,
            f"{resource_id!r} is not a FHIR id ([A-Za-z0-9-.]{{1,64}}): no such resource",
        )
    resource = services().store.read(resource_type, resource_id)
    if resource is None:
        raise ApiError(404, NOT_FOUND, f"{resource_type}/{resource_id} is not in the store")
    return fhir_response(resource)


@blueprint.get("/<resource_type>")
def search(resource_type: str) -> Response:
    _check_type(resource_type)
    unknown = sorted(set(request.args) - SEARCH_PARAMETERS)
    if unknown:
        raise ApiError(
            400,
            NOT_SUPPORTED,
            f"unsupported search parameter(s) {', '.join(unknown)}; "
            f"supported: {', '.join(sorted(SEARCH_PARAMETERS))}",
        )
    _check_format()
    tag = _tag()
    summary = _single("_summary")
    if summary not in (None, "count", "false"):
        raise ApiError(
            400, NOT_SUPPORTED, f"_summary={summary} is not supported; use _summary=count"
        )
    count = min(int_parameter("_count", DEFAULT_COUNT, 0), MAX_COUNT)
    offset = int_parameter("_offset", 0, 0)
    store = services().store
    base = request.url_root.rstrip("/") + "/fhir"
    here = f"{base}/{resource_type}"

    def link(at: int | None = None) -> str:
        query: dict[str, str | int] = {}
        if tag is not None:
            query["_tag"] = f"{tag[0]}|{tag[1]}" if tag[0] else tag[1]
        if summary == "count":
            query["_summary"] = "count"
        else:
            query["_count"] = count
            query["_offset"] = offset if at is None else at
        return f"{here}?{urlencode(query)}"

    if summary == "count":
        total, _ = store.search(resource_type, tag, count=0, offset=0)
        return fhir_response(searchset(total, None, base, [("self", link())]))
    total, page = store.search(resource_type, tag, count=count, offset=offset)
    links = [("self", link())]
    if count > 0 and offset + count < total:
        links.append(("next", link(offset + count)))
    if count > 0 and offset > 0:
        links.append(("previous", link(max(offset - count, 0))))
    return fhir_response(searchset(total, page, base, links))


@cache
def _known_types() -> frozenset[str]:
    return frozenset(resource_types())


def _check_type(resource_type: str) -> None:
    if resource_type not in _known_types():
        raise ApiError(404, NOT_FOUND, f"unknown resource type {resource_type!r} (FHIR R4)")


def _check_format() -> None:
    """FHIR clients often add _format=json; only JSON is served."""
    value = _single("_format")
    if value is not None and value.split(";")[0].strip() not in JSON_FORMATS:
        raise ApiError(400, NOT_SUPPORTED, f"_format={value} is not supported: JSON only")


def _single(name: str) -> str | None:
    values = request.args.getlist(name)
    if len(values) > 1:
        raise ApiError(400, NOT_SUPPORTED, f"{name} is given {len(values)} times; give it once")
    return values[0] if values else None


def _tag() -> tuple[str, str] | None:
    """`_tag=system|code` -> (system, code); `_tag=code` -> ("", code): any system."""
    value = _single("_tag")
    if value is None:
        return None
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ApiError(400, VALUE, "_tag holds a control character", expression="_tag")
    system, bar, code = value.partition("|") if "|" in value else ("", "", value)
    if not code:
        raise ApiError(
            400, VALUE, f"_tag={value!r} has no code; give _tag=system|code", expression="_tag"
        )
    if bar and not system:
        raise ApiError(
            400,
            INVALID,
            "_tag=|code (a tag without a system) is not supported; give system|code or code",
            expression="_tag",
        )
    return system, code
