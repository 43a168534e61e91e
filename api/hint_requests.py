"""Colour hints as requests send them, read with the rules of :mod:`shared.colour.hint_rules`.

A JSON job carries them as its ``hints`` field; a multipart form as one field holding the same
JSON as text. Both are named the same way when something is wrong (``hints[2].color``,
``hints["photos/a.jpg"][0].x``). Whether the job takes a list or a map depends on its source,
checked by :mod:`api.submission` once it is known.
"""

from __future__ import annotations

import json
from typing import Any

from shared.colour.hint_rules import HintMap, requested_hints
from shared.colour.hints import Hint
from shared.errors import InvalidRequest


def hints_of(value: Any) -> tuple[Hint, ...] | HintMap:
    """The hints of a JSON job's ``hints`` field; none when it was left out."""
    return requested_hints(value)


def form_hints(text: str | None) -> tuple[Hint, ...] | HintMap:
    """The hints of a form's ``hints`` field (JSON text); none when it was left out."""
    if text is None:
        return ()
    try:
        document = json.loads(text)
    except ValueError:
        raise InvalidRequest(
            "'hints' must be JSON: a list of hints, or an object of them by path", field="hints"
        ) from None
    if document is None:
        raise InvalidRequest("'hints' must be a list of hints or an object of them by path", field="hints")
    return requested_hints(document)
