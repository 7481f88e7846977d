"""Reading and checking what a request carries: the JSON body and the query
parameters. Every problem is an `ApiError` (400) naming the field and what is
wrong with it, so that a user fixes the request from the answer alone.

    body = json_body(allowed={"resource_ids", "primary_key_values"})
    ids = string_list(body, "resource_ids")
    limit = int_parameter("limit", default=50, minimum=1, maximum=1000)
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import current_app, request

from api.fhir import INVALID, REQUIRED, STRUCTURE, TOO_LONG, VALUE, ApiError

JSON_TYPES = ("application/json", "application/fhir+json")
MAX_BODY = 1024 * 1024  # 1 MiB: a batch names resources and a few keys, never data
# Bodies up to this size are read and thrown away before a "too large" answer: a
# server that answers without reading the body makes clients see a reset connection.
DRAIN_LIMIT = 16 * 1024 * 1024
MAX_PRIMARY_KEYS = 10_000


def json_body(allowed: set[str]) -> dict[str, Any]:
    """The request's JSON object; fields outside `allowed` are refused (a typo
    like `primary_keys` would otherwise be silently ignored)."""
    _check_content_type()
    data = _read_body()
    if not data.strip():
        raise ApiError(400, REQUIRED, "the request body is empty; send a JSON object")
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise ApiError(400, STRUCTURE, f"the request body is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise ApiError(400, STRUCTURE, f"the request body must be a JSON object, not {_kind(body)}")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(
            400,
            INVALID,
            f"unknown field(s) {', '.join(unknown)}; the fields are {', '.join(sorted(allowed))}",
            expression=unknown[0],
        )
    return body


def required(body: dict[str, Any], field: str) -> Any:
    if field not in body or body[field] is None:
        raise ApiError(400, REQUIRED, f"{field} is missing", expression=field)
    return body[field]


def string_value(body: dict[str, Any], field: str) -> str:
    value = required(body, field)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(
            400, VALUE, f"{field} must be a non-empty string, not {_kind(value)}", expression=field
        )
    return value


def string_list(body: dict[str, Any], field: str) -> list[str]:
    """A non-empty list of non-empty strings, duplicates dropped (order kept)."""
    value = required(body, field)
    if not isinstance(value, list):
        raise ApiError(
            400, VALUE, f"{field} must be a list of strings, not {_kind(value)}", expression=field
        )
    if not value:
        raise ApiError(400, VALUE, f"{field} must not be empty", expression=field)
    for n, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise ApiError(
                400,
                VALUE,
                f"{field}[{n}] must be a non-empty string, not {_kind(item)}",
                expression=f"{field}[{n}]",
            )
    return list(dict.fromkeys(value))


def key_list(value: Any, where: str) -> list[Any]:
    """A non-empty list of primary key values: strings or whole numbers."""
    if not isinstance(value, list):
        raise ApiError(
            400,
            VALUE,
            f"{where} must be a list of primary key values, not {_kind(value)}",
            expression=where,
        )
    if not value:
        # An empty list would select nothing: surely not what the user meant.
        raise ApiError(400, VALUE, f"{where} must not be empty", expression=where)
    if len(value) > MAX_PRIMARY_KEYS:
        raise ApiError(
            400,
            TOO_LONG,
            f"{where} holds {len(value)} values; at most {MAX_PRIMARY_KEYS} are accepted",
            expression=where,
        )
    for n, item in enumerate(value):
        # bool is an int in Python, but `true` is no primary key.
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise ApiError(
                400,
                VALUE,
                f"{where}[{n}] must be a string or a whole number, not {_kind(item)}",
                expression=f"{where}[{n}]",
            )
    return value


def int_parameter(name: str, default: int, minimum: int, maximum: int | None = None) -> int:
    """A whole-number query parameter within bounds."""
    given = text_parameter(name)
    if given is None:
        return default
    try:
        value = int(given)
    except ValueError:
        raise ApiError(
            400, VALUE, f"parameter {name} must be a whole number, not {given!r}", expression=name
        ) from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ApiError(
            400, VALUE, f"parameter {name} must be {bounds}, not {value}", expression=name
        )
    return value


def choice_parameter(name: str, choices: tuple[str, ...]) -> str | None:
    """A query parameter that is one of `choices`, or None when absent."""
    given = text_parameter(name)
    if given is not None and given not in choices:
        raise ApiError(
            400,
            VALUE,
            f"parameter {name} must be one of {', '.join(choices)}, not {given!r}",
            expression=name,
        )
    return given


def text_parameter(name: str) -> str | None:
    """A query parameter given at most once, or None when absent."""
    raw = request.args.getlist(name)
    if len(raw) > 1:
        raise ApiError(400, INVALID, f"parameter {name} is given {len(raw)} times; give it once")
    return raw[0] if raw else None


def no_other_parameters(allowed: set[str]) -> None:
    unknown = sorted(set(request.args) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise ApiError(
            400, INVALID, f"unknown parameter(s) {', '.join(unknown)}; this endpoint takes: {known}"
        )


def oversize_error() -> ApiError:
    limit = current_app.config.get("MAX_CONTENT_LENGTH") or MAX_BODY
    return ApiError(
        400, TOO_LONG, f"the request body is too large: at most {limit} bytes are accepted"
    )


def drain_body() -> None:
    """Read and drop a body we refuse, when it is not huge (see DRAIN_LIMIT)."""
    length = request.content_length
    if length is None or length > DRAIN_LIMIT:
        return
    stream = request.environ.get("wsgi.input")
    if stream is None:
        return
    remaining = length
    while remaining > 0:
        chunk = stream.read(min(remaining, 65536))
        if not chunk:
            break
        remaining -= len(chunk)


def _check_content_type() -> None:
    mimetype = request.mimetype
    if mimetype not in JSON_TYPES:
        given = request.content_type or "none"
        raise ApiError(
            400,
            INVALID,
            f"the Content-Type must be application/json (or application/fhir+json), not {given}",
            expression="Content-Type",
        )
    charset = request.mimetype_params.get("charset")
    if charset is not None and charset.lower().replace("-", "") != "utf8":
        raise ApiError(400, INVALID, f"the body must be UTF-8, not {charset}")


def _read_body() -> bytes:
    limit = current_app.config.get("MAX_CONTENT_LENGTH") or MAX_BODY
    if request.content_length is not None and request.content_length > limit:
        drain_body()
        raise oversize_error()
    # Werkzeug stops a body without Content-Length (chunked) at the limit and raises
    # RequestEntityTooLarge, which the app turns into the same 400.
    return request.get_data(cache=True)


def _kind(value: Any) -> str:
    """What the caller sent, by its kind: never echoed, so that no answer tells one
    string (a password, say) from another."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        if not value.strip():
            return "an empty string"
        return f"a string of {len(value)} character{'s' if len(value) > 1 else ''}"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
