"""The rules of colour hints as clients write them (JSON), checked in one place: the API checks
a request's ``hints`` with them, the expander an archive's ``hints.json``.

A single image takes a list of up to ``MAX_HINTS`` points; an archive or a source by reference
a map from item paths (as ``GET /v1/jobs/{id}/items`` shows them) to such lists, of at most
``MAX_HINTED_PATHS`` paths and ``MAX_MAP_HINTS`` points in all. What is wrong is named as the
request's field would be (``hints[2].color``, ``hints["photos/a.jpg"][0].x``) in an
:class:`InvalidRequest`. The JSON schemas that describe the same rules in the OpenAPI
description are built here too, from the same bounds.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from shared.colour.hints import MAX_HINTS, MAX_RADIUS, Hint
from shared.errors import InvalidRequest

# A map names each photo it hints once; a person hints a few photos of an album, not every one,
# and the whole map is read into memory by the expander.
MAX_HINTED_PATHS = 1000
MAX_MAP_HINTS = 8192
# hints.json holds at most that many points: about 80 bytes a point with its path.
MAX_HINT_FILE_BYTES = 1024**2

HEX_COLOUR_PATTERN = "^#[0-9A-Fa-f]{6}$"
_HEX_COLOUR = re.compile(HEX_COLOUR_PATTERN)
COLOUR_WORDS = "a colour written #rrggbb, such as #1f4fbf"
_FIELDS = ("x", "y", "color", "radius")

HintMap = dict[str, tuple[Hint, ...]]


def requested_hints(value: Any, field: str = "hints") -> tuple[Hint, ...] | HintMap:
    """A request's hints as sent: a list (a single image) or a map (an archive, a source by
    reference); which one the job takes is checked once its source is known."""
    if value is None:
        return ()
    if isinstance(value, list):
        return hint_list(value, field)
    if not isinstance(value, dict) or _looks_like_a_hint(value):
        raise InvalidRequest(
            f"'{field}' must be a list of hints for a single image, or an object mapping item paths "
            "to such lists for an archive or a source by reference",
            field=field,
        )
    return hint_map(value, field)


def hint_list(value: Any, field: str = "hints") -> tuple[Hint, ...]:
    """The hints of one image; InvalidRequest naming the first thing wrong."""
    if not isinstance(value, list):
        raise InvalidRequest(f"'{field}' must be a list", field=field)
    if len(value) > MAX_HINTS:
        raise InvalidRequest(f"'{field}' must have at most {MAX_HINTS} entries", field=field, limit=MAX_HINTS)
    return tuple(_hint(point, f"{field}[{n}]") for n, point in enumerate(value))


def hint_map(value: Any, field: str = "hints") -> HintMap:
    """The hints of an archive's or a source's items, by path; InvalidRequest naming the first thing wrong."""
    if not isinstance(value, dict) or _looks_like_a_hint(value):
        raise InvalidRequest(
            f"'{field}' must be an object mapping item paths to lists of hints, such as "
            '{"photos/a.jpg": [{"x": 0.5, "y": 0.5, "color": "#1f4fbf"}]}',
            field=field,
        )
    if len(value) > MAX_HINTED_PATHS:
        raise InvalidRequest(
            f"'{field}' must name at most {MAX_HINTED_PATHS} paths", field=field, limit=MAX_HINTED_PATHS
        )
    hints: HintMap = {}
    for path, points in value.items():
        # A path no item has is not an error here: the expander lists it as unmatched.
        hints[path] = hint_list(points, f"{field}[{json.dumps(path, ensure_ascii=False)}]")
    total = sum(len(points) for points in hints.values())
    if total > MAX_MAP_HINTS:
        raise InvalidRequest(
            f"'{field}' holds {total} points; at most {MAX_MAP_HINTS} in all", field=field, limit=MAX_MAP_HINTS
        )
    return hints


def hint_fields(hint: Hint) -> dict[str, object]:
    """A hint as written in JSON (``radius`` only where given)."""
    fields: dict[str, object] = {"x": hint.x, "y": hint.y, "color": hint.color}
    if hint.radius is not None:
        fields["radius"] = hint.radius
    return fields


def encode_map(hints: Mapping[str, tuple[Hint, ...]]) -> str:
    return json.dumps({path: [hint_fields(h) for h in points] for path, points in hints.items()}, separators=(",", ":"))


def decode_map(text: str | bytes) -> HintMap:
    """A map this module checked and :func:`encode_map` wrote."""
    document = json.loads(text)
    return {path: tuple(hint_from_fields(h) for h in points) for path, points in document.items()}


def hint_from_fields(fields: Mapping[str, Any]) -> Hint:
    """A hint as :func:`hint_fields` wrote it."""
    return Hint(fields["x"], fields["y"], fields["color"], fields.get("radius"))


def _looks_like_a_hint(value: dict[Any, Any]) -> bool:
    """One point sent where a list or a map was expected: naming its ``x`` as a path would mislead."""
    return bool(value) and set(value) <= set(_FIELDS) and not any(isinstance(v, list) for v in value.values())


def _hint(point: Any, field: str) -> Hint:
    if not isinstance(point, dict):
        raise InvalidRequest(f"'{field}' must be an object", field=field)
    # A misspelt key is refused rather than ignored: a hint that silently lost its radius
    # would colour the wrong area.
    for key in point:
        if key not in _FIELDS:
            raise InvalidRequest(f"'{field}.{key}' is not a field of this object", field=f"{field}.{key}")
    x = _number(point, "x", field, 0.0, 1.0)
    y = _number(point, "y", field, 0.0, 1.0)
    color = point.get("color")
    if "color" not in point:
        raise InvalidRequest(f"'{field}.color' is required", field=f"{field}.color")
    if not isinstance(color, str):
        raise InvalidRequest(f"'{field}.color' must be a string", field=f"{field}.color")
    if not _HEX_COLOUR.match(color):
        raise InvalidRequest(f"'{field}.color' must be {COLOUR_WORDS}", field=f"{field}.color")
    radius = None
    if point.get("radius") is not None:
        radius = _number(point, "radius", field, None, MAX_RADIUS)
        if radius <= 0:
            raise InvalidRequest(f"'{field}.radius' must be greater than 0", field=f"{field}.radius")
    return Hint(x, y, color.lower(), radius)


def _number(point: dict[str, Any], key: str, field: str, low: float | None, high: float) -> float:
    named = f"{field}.{key}"
    if key not in point:
        raise InvalidRequest(f"'{named}' is required", field=named)
    value = point[key]
    # JSON's true is no number, though Python counts it as 1.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(f"'{named}' must be a number", field=named)
    if not math.isfinite(value):
        raise InvalidRequest(f"'{named}' must be a finite number", field=named)
    if low is not None and value < low:
        raise InvalidRequest(f"'{named}' must be at least {low:g}", field=named, minimum=low)
    if value > high:
        raise InvalidRequest(f"'{named}' must be at most {high:g}", field=named, maximum=high)
    return float(value)


# --- the same rules described (OpenAPI) -----------------------------------------------------------


def hint_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A point of the photo whose colour the person knows. x and y are fractions of the photo's "
        "width and height as uploaded after its EXIF orientation (x to the right, y down).",
        "properties": {
            "x": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "description": "From the left edge (0) to the right (1).",
            },
            "y": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "description": "From the top edge (0) to the bottom (1).",
            },
            "color": {"type": "string", "pattern": HEX_COLOUR_PATTERN, "example": "#1f4fbf"},
            "radius": {
                "anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": MAX_RADIUS}, {"type": "null"}],
                "description": "The spot's radius as a fraction of the photo's longer side; "
                "default: one cell of the model's input grid.",
            },
        },
        "required": ["x", "y", "color"],
        "additionalProperties": False,
    }


def hint_list_schema() -> dict[str, Any]:
    return {
        "type": "array",
        "items": hint_schema(),
        "maxItems": MAX_HINTS,
        "description": "Colour hints for a single image (a model whose hints is true; 422 hints_not_supported otherwise).",
    }


def hint_map_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": {**hint_list_schema(), "description": "The item's colour hints."},
        "maxProperties": MAX_HINTED_PATHS,
        "description": "Colour hints for an archive's or a source's items, by item path (as GET "
        f"/v1/jobs/{{id}}/items shows it); at most {MAX_HINTED_PATHS} paths and {MAX_MAP_HINTS} points in all. "
        "An archive's own hints.json is merged in; this map's entries win per path.",
    }
