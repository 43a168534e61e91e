"""Requests read into their models (``api/schemas.py``), and models written as JSON responses.

JSON is validated strictly (a number must be a number); form fields and query strings are
text, so there pydantic's lax parsing turns ``"0.5"`` into 0.5. A failure becomes one
:class:`InvalidRequest` (400) naming the field, as ``details.field``, in a sentence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any, TypeVar

from flask import Response, jsonify, request
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from werkzeug.exceptions import RequestEntityTooLarge

from api.openapi.schema_dialect import model_schema
from api.schemas import RequestBody
from shared.errors import InvalidRequest, PayloadTooLarge

Body = TypeVar("Body", bound=RequestBody)

# Sentences per pydantic error type; {field} is the field's path, other names come from the
# error's context.
MESSAGES: dict[str, str] = {
    "missing": "'{field}' is required",
    "string_type": "'{field}' must be a string",
    "string_too_short": "'{field}' must be at least {min_length} characters long",
    "string_too_long": "'{field}' must be at most {max_length} characters long",
    "int_type": "'{field}' must be an integer",
    "int_parsing": "'{field}' must be an integer",
    "int_from_float": "'{field}' must be an integer",
    "float_type": "'{field}' must be a number",
    "float_parsing": "'{field}' must be a number",
    "finite_number": "'{field}' must be a finite number",
    "bool_type": "'{field}' must be true or false",
    "bool_parsing": "'{field}' must be true or false",
    "list_type": "'{field}' must be a list",
    "too_short": "'{field}' must have at least {min_length} entries",
    "too_long": "'{field}' must have at most {max_length} entries",
    "greater_than": "'{field}' must be greater than {gt}",
    "string_pattern_mismatch": "'{field}' must match the pattern {pattern}",
    "model_type": "'{field}' must be an object",
    "model_attributes_type": "'{field}' must be an object",
    "dict_type": "'{field}' must be an object",
    "extra_forbidden": "'{field}' is not a field of this object",
    "int_parsing_size": "'{field}' is out of range (too many digits)",
    "literal_error": "'{field}' must be one of {expected}",
}
# How pydantic names an enum member among a Literal's choices (<JobStatus.QUEUED: 'queued'>): a
# client is shown the value alone.
_ENUM_REPR = re.compile(r"<[A-Za-z_][\w.]*: ('[^']*')>")
# Every bound declared is inclusive (ge, le).
BOUNDS = ("greater_than_equal", "less_than_equal")
# Arrays and objects inside each other; no request body of this API comes near it.
MAX_JSON_DEPTH = 32


def json_body(model: type[Body]) -> Body:
    body = read_json()
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return parse(model, body, strict=True)


def read_json() -> Any:
    """The request's JSON body; None when it is not JSON. Nesting past ``MAX_JSON_DEPTH`` is a 400:
    the decoder recurses once per level, and so would everything that walks the document after it.
    A body over ``limits.max_json_bytes`` is a 413, before it is parsed."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # thousands of levels: refused like any nesting past the bound
        raise _too_deep() from None
    except RequestEntityTooLarge:  # a body of no declared size, cut at the JSON bound (api/app.py)
        raise json_too_large(request.max_content_length or 0) from None
    if _depth(body) > MAX_JSON_DEPTH:
        raise _too_deep()
    if _has_lone_surrogates(body):
        # JSON can escape half of a UTF-16 pair ("\ud800"), which no UTF-8 store or log can hold.
        raise InvalidRequest("the JSON body holds a string that is not valid Unicode (a lone surrogate escape)")
    return body


def json_too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the JSON body exceeds {limit} bytes; split a long list of sources into several jobs",
        limit=limit,
    )


def form_body(model: type[Body]) -> Body:
    """The multipart form's fields and its files of the model's fields; empty fields count as left out,
    and so do parts without a name (werkzeug files them under None)."""
    fields: dict[str, Any] = {name: value for name, value in request.form.items() if name is not None and value != ""}
    fields.update((name, upload) for name, upload in request.files.items() if name in model.model_fields)
    return parse(model, fields, strict=False)


def query(model: type[Body]) -> Body:
    return parse(model, request.args.to_dict(), strict=False)


def parse(model: type[Body], data: Mapping[str, Any], strict: bool) -> Body:
    try:
        return model.model_validate(data, strict=strict)
    except ValidationError as exc:
        raise invalid_request(model, exc.errors()[0]) from None


def invalid_request(model: type[RequestBody], error: ErrorDetails) -> InvalidRequest:
    """The first thing wrong with a request, in words."""
    field = _path(error["loc"])
    context = error.get("ctx", {})
    details: dict[str, Any] = {"field": field}
    top = str(error["loc"][0]) if error["loc"] else ""
    if top in model.field_messages:
        return InvalidRequest(model.field_messages[top], **details)
    if error["type"] in BOUNDS:
        bounds = _bounds(model, error["loc"], context)
        details.update(bounds)
        if len(bounds) == 2:
            return InvalidRequest(f"'{field}' must be between {bounds['minimum']} and {bounds['maximum']}", **details)
        bound = f"at least {bounds['minimum']}" if "minimum" in bounds else f"at most {bounds['maximum']}"
        return InvalidRequest(f"'{field}' must be {bound}", **details)
    if error["type"] in ("too_short", "string_too_short") and context.get("min_length") == 1:
        return InvalidRequest(f"'{field}' must not be empty", **details)
    template = MESSAGES.get(error["type"])
    if template is None:
        return InvalidRequest(f"'{field}': {error['msg']}", **details)
    if "expected" in context:
        context = {**context, "expected": _ENUM_REPR.sub(r"\1", str(context["expected"]))}
    return InvalidRequest(template.format(field=field, **context), **details)


def respond(document: BaseModel, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """``document`` as the JSON body; fields with a default that were not given are left out."""
    response = jsonify(document.model_dump(mode="json", exclude_unset=True))
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _too_deep() -> InvalidRequest:
    return InvalidRequest(f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep", limit=MAX_JSON_DEPTH)


def _depth(document: Any) -> int:
    """How deeply arrays and objects nest in ``document``, walked without recursion."""
    deepest, pending = 0, [(document, 1)]
    while pending:
        node, level = pending.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, level)
            if level <= MAX_JSON_DEPTH:
                pending.extend((child, level + 1) for child in node)
    return deepest


def _has_lone_surrogates(document: Any) -> bool:
    pending = [document]
    while pending:
        node = pending.pop()
        if isinstance(node, str):
            try:
                node.encode()
            except UnicodeEncodeError:
                return True
        elif isinstance(node, dict):
            pending.extend(node.keys())
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return False


def _path(location: tuple[int | str, ...]) -> str:
    """``("parts", 0, "etag")`` -> ``parts[0].etag``."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _bounds(model: type[RequestBody], location: tuple[int | str, ...], context: Mapping[str, Any]) -> dict[str, Any]:
    """The inclusive bounds of the field: both as described when it is a top-level one, else the one broken."""
    if len(location) == 1:
        described = _field_schemas(model).get(str(location[0]), {})
        bounds = {k: described[k] for k in ("minimum", "maximum") if k in described}
        if bounds:
            return bounds
    return {"minimum": context["ge"]} if "ge" in context else {"maximum": context["le"]}


@cache
def _field_schemas(model: type[RequestBody]) -> dict[str, Any]:
    properties: dict[str, Any] = model_schema(model)["properties"]
    return properties
