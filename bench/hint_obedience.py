"""Does a hint model obey a hint? The share of photos whose output takes the hinted colour.

    python bench/hint_obedience.py ../shared/data/val --model colorize-lite-hints [--photos 50] \\
        [--sheet hints.png --sheet-hints 10 --automatic colorize-lite]

Each of ``--photos`` colour photos (evenly spread over the folder) is made grey and given one
hint simulated from its truth (``models.hint_simulation.photo_hints``: a random point, the mean
true ab of a small patch there, sent as ``#rrggbb``). The hint is obeyed when the mean ab of the
output within ``--radius`` pixels of the point is within ``--tolerance`` ab units of the hint's
own a, b. Prints the share obeyed, and the same measure for the output without the hint (how
often the automatic colours already agree). ``--sheet`` also writes a contact sheet:
grey | automatic | with ``--sheet-hints`` hints (points ringed) | original.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.contact_sheets import contact_sheet
from models.evaluation import greyscale, mark_hints, photo_files
from models.hint_simulation import photo_hints
from shared.colour.colorizer import colorize
from shared.colour.engine import Engine
from shared.colour.hint_planes import hint_ab
from shared.colour.hints import Hint
from shared.colour.lab import bgr_to_lab
from shared.colour.model_manifests import load_manifest
from shared.settings import Settings


def disc_ab(image: np.ndarray, hint: Hint, radius: float) -> np.ndarray:
    """Mean ab of ``image`` (uint8 BGR) within ``radius`` pixels of the hint's point."""
    height, width = image.shape[:2]
    x, y = hint.x * width - 0.5, hint.y * height - 0.5
    rows, columns = np.ogrid[:height, :width]
    disc = (columns - x) ** 2 + (rows - y) ** 2 <= radius**2
    ab: np.ndarray = bgr_to_lab(image)[..., 1:][disc].mean(axis=0)
    return ab


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--model", default="colorize-lite-hints")
    parser.add_argument("--photos", type=int, default=50)
    parser.add_argument("--radius", type=float, default=5.0, help="pixels around the point")
    parser.add_argument("--tolerance", type=float, default=10.0, help="ab units")
    parser.add_argument("--sheet", type=Path, help="write a before/after contact sheet here")
    parser.add_argument("--sheet-hints", type=int, default=10)
    parser.add_argument("--sheet-rows", type=int, default=6)
    parser.add_argument("--automatic", help="model for the sheet's automatic column (default: --model without hints)")
    args = parser.parse_args()
    settings = Settings.from_env_or_exit()
    engine = Engine.load(load_manifest(settings.models_dir, args.model), device="cpu", threads=settings.engine_threads)
    files = photo_files(args.folder, args.photos)
    originals = [image for image in (cv2.imread(str(p), cv2.IMREAD_COLOR) for p in files) if image is not None]
    keys = [str(p.relative_to(args.folder)) for p in files]
    greys = [greyscale(image) for image in originals]
    hints = [photo_hints(image, 1, key) for image, key in zip(originals, keys)]
    hinted = colorize(engine, greys, 8, hints=hints)
    automatic = colorize(engine, greys, 8)
    distances: dict[str, list[float]] = {"with the hint": [], "without it": []}
    for (hint,), with_hint, without in zip(hints, hinted, automatic):
        wanted = np.array(hint_ab(hint.color))
        distances["with the hint"].append(float(np.linalg.norm(disc_ab(with_hint, hint, args.radius) - wanted)))
        distances["without it"].append(float(np.linalg.norm(disc_ab(without, hint, args.radius) - wanted)))
    print(f"{args.model}: {len(originals)} photos of {args.folder}, one hint each")
    print(f"obeyed: mean ab within {args.radius:g} px of the point within {args.tolerance:g} ab units of the hint")
    for label, values in distances.items():
        share = 100 * np.mean(np.array(values) <= args.tolerance)
        print(f"  {label:14s} {share:5.1f} % obeyed, median distance {np.median(values):5.1f} ab units")
    if args.sheet:
        write_sheet(
            args, settings, engine, originals[:: max(1, len(originals) // args.sheet_rows)][: args.sheet_rows], keys
        )
    return 0


def write_sheet(
    args: argparse.Namespace, settings: Settings, engine: Engine, originals: list[np.ndarray], keys: list[str]
) -> None:
    base = engine
    if args.automatic:
        base = Engine.load(
            load_manifest(settings.models_dir, args.automatic), device="cpu", threads=settings.engine_threads
        )
    greys = [greyscale(image) for image in originals]
    hints = [photo_hints(image, args.sheet_hints, f"sheet-{i}") for i, image in enumerate(originals)]
    automatic = colorize(base, greys, 8)
    hinted = colorize(engine, greys, 8, hints=hints)
    rows = [
        [grey, auto, mark_hints(with_hints, photo_hint_list), original]
        for grey, auto, with_hints, photo_hint_list, original in zip(greys, automatic, hinted, hints, originals)
    ]
    labels = ["grey input", "automatic", f"{args.sheet_hints} hints", "original"]
    cv2.imwrite(str(args.sheet), contact_sheet(rows, labels))
    print(f"contact sheet written to {args.sheet}")


if __name__ == "__main__":
    raise SystemExit(main())
