"""Colour hints as requests send them, read into :class:`shared.colour.hints.Hint`.

A JSON job carries them as a list (``hints``, checked with the rest of the body); a multipart
form as one field holding the same list as JSON text, checked here with the same model, so
both name what is wrong the same way (``hints[2].color``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic import TypeAdapter, ValidationError

from api.bodies import invalid_request
from api.schemas import HintList, HintRequest, RequestBody
from shared.colour.hints import Hint
from shared.errors import InvalidRequest

_HINT_LIST: TypeAdapter[list[HintRequest]] = TypeAdapter(HintList)


class _HintField(RequestBody):
    """Names the list ``hints`` in errors, as a JSON job's field is named."""

    hints: HintList


def hints_of(requests: Sequence[HintRequest] | None) -> tuple[Hint, ...]:
    return tuple(Hint(h.x, h.y, h.color.lower(), h.radius) for h in requests or ())


def form_hints(text: str | None) -> tuple[Hint, ...]:
    """The hints of a form's ``hints`` field (JSON text); none when it was left out."""
    if text is None:
        return ()
    try:
        document = json.loads(text)
    except ValueError:
        raise InvalidRequest("'hints' must be a JSON list of hints", field="hints") from None
    try:
        # Strict, as in a JSON body: the text is JSON, so a number must be a number.
        requests = _HINT_LIST.validate_python(document, strict=True)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise invalid_request(_HintField, {**error, "loc": ("hints", *error["loc"])}) from None
    return hints_of(requests)
