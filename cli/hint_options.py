"""``--hint X,Y,#RRGGBB`` and ``--hints FILE.json``: colour hints for a single image, read into
the client's :class:`client.Hint`. Only their shape is checked here; the API says what is
wrong with their values (a colour, a coordinate outside 0..1), naming the hint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from client import Hint


def hint_argument(text: str) -> Hint:
    """``X,Y,#RRGGBB`` or ``X,Y,#RRGGBB,RADIUS``: x and y in 0..1 of the upright photo."""
    parts = text.split(",")
    if len(parts) not in (3, 4):
        raise argparse.ArgumentTypeError(f"{text!r} is not X,Y,#RRGGBB (optionally ,RADIUS)")
    try:
        x, y = float(parts[0]), float(parts[1])
        radius = float(parts[3]) if len(parts) == 4 else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: X, Y and RADIUS must be numbers") from None
    return Hint(x, y, parts[2].strip(), radius)


def hints_file(text: str) -> list[Hint]:
    """A JSON file holding a list of ``{"x", "y", "color", "radius"?}``, as the API takes them."""
    try:
        document: Any = json.loads(Path(text).read_text())
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text}: {exc.strerror}") from None
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not JSON") from None
    if not isinstance(document, list) or not all(isinstance(h, dict) for h in document):
        raise argparse.ArgumentTypeError(f"{text} must hold a JSON list of hint objects")
    try:
        return [Hint.from_json(hint) for hint in document]
    except (KeyError, TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text}: every hint needs numbers x and y and a color") from None


def given_hints(args: argparse.Namespace) -> list[Hint] | None:
    """The file's hints, then each ``--hint``; None when neither was given."""
    hints = [*(args.hints_file or []), *(args.hints or [])]
    return hints or None
