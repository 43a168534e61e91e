"""``--hint X,Y,#RRGGBB`` and ``--hints FILE.json``: colour hints, read into the client's
:class:`client.Hint`. A single image takes ``--hint`` points and a file holding a list; an
archive, a folder or images by reference a file holding an object by item path (the paths
``colorize status JOB --items`` shows). Only their shape is checked here; the API says what is
wrong with their values (a colour, a coordinate outside 0..1), naming the hint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cli.context import UsageError
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


HintMap = dict[str, list[Hint]]


def hints_file(text: str) -> list[Hint] | HintMap:
    """A JSON file holding a list of ``{"x", "y", "color", "radius"?}``, or an object mapping
    item paths to such lists, as the API takes them."""
    try:
        document: Any = json.loads(Path(text).read_text())
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text}: {exc.strerror}") from None
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not JSON") from None
    if isinstance(document, dict):
        return {str(path): _hint_list(points, f"{text}: {path}") for path, points in document.items()}
    return _hint_list(document, text)


def _hint_list(document: Any, where: str) -> list[Hint]:
    if not isinstance(document, list) or not all(isinstance(h, dict) for h in document):
        raise argparse.ArgumentTypeError(
            f"{where} must be a JSON list of hint objects (or, for an archive, an object of such lists by path)"
        )
    try:
        return [Hint.from_json(hint) for hint in document]
    except (KeyError, TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{where}: every hint needs numbers x and y and a color") from None


def given_hints(args: argparse.Namespace) -> list[Hint] | HintMap | None:
    """The file's hints, then each ``--hint``; None when neither was given. ``--hint`` points
    are a single image's, so they do not go with a file of hints by path."""
    if isinstance(args.hints_file, dict):
        if args.hints:
            raise UsageError("--hint is for a single image; a --hints file of hints by path is for archives")
        return args.hints_file or None
    hints = [*(args.hints_file or []), *(args.hints or [])]
    return hints or None
