"""Colour quality of installed models on colour photos, against the grey baseline (ab = 0).

    colorize eval DIR [--model NAME ...] [--out report/]

Each photo is made greyscale (its L with ab = 0), colorized, and compared with the original:
PSNR and SSIM in RGB; AuC of the cumulative per-pixel ab error curve (thresholds 0..150),
raw and class-rebalanced as in Zhang et al. (each pixel weighted by the inverse frequency,
in the evaluated set, of its ground-truth ab bin on the step-10 grid, so every colour present
counts equally); mean colourfulness (Hasler & Suesstrunk) relative to the originals.
Writes a Markdown and a CSV table and a contact sheet (grey | model ... | original).
"""

from __future__ import annotations

import argparse
import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from shared.bins import grid_index
from shared.lab import bgr_to_lab, lab_to_bgr
from shared.models import load_manifest
from shared.settings import Settings

THRESHOLDS = np.arange(0, 151)  # ab error thresholds of the AuC curve
GRID_CELLS = 23 * 23
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

Colorizer = Callable[[list[np.ndarray]], list[np.ndarray]]


@dataclass
class Scores:
    """Running sums for one method over the evaluated photos."""

    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    colourfulness: list[float] = field(default_factory=list)
    # per ground-truth grid cell: how many pixels have ceil(ab error) == t, for t in THRESHOLDS
    errors: np.ndarray = field(default_factory=lambda: np.zeros((GRID_CELLS, len(THRESHOLDS)), np.int64))
    pixels_per_cell: np.ndarray = field(default_factory=lambda: np.zeros(GRID_CELLS, np.int64))

    def add(self, original: np.ndarray, predicted: np.ndarray, lab_true: np.ndarray) -> None:
        from skimage.metrics import structural_similarity

        self.psnr.append(cv2.PSNR(original, predicted))
        self.ssim.append(structural_similarity(original, predicted, channel_axis=2, data_range=255))
        self.colourfulness.append(colourfulness(predicted))
        self.add_colour_error(bgr_to_lab(predicted), lab_true)

    def add_colour_error(self, lab_pred: np.ndarray, lab_true: np.ndarray) -> None:
        """Count one photo's per-pixel ab errors, by the ground truth's grid cell (for AuC)."""
        error = np.linalg.norm(lab_pred[..., 1:] - lab_true[..., 1:], axis=-1)
        error_bin = np.minimum(np.ceil(error), THRESHOLDS[-1] + 1).astype(np.int64)
        cells = grid_index(lab_true[..., 1:])
        flat = cells.ravel() * (len(THRESHOLDS) + 1) + error_bin.ravel()
        counts = np.bincount(flat, minlength=GRID_CELLS * (len(THRESHOLDS) + 1))
        # the last column holds errors above every threshold: counted as pixels, never as within
        self.errors += counts.reshape(GRID_CELLS, len(THRESHOLDS) + 1)[:, :-1]
        self.pixels_per_cell += np.bincount(cells.ravel(), minlength=GRID_CELLS)

    def auc(self, rebalanced: bool) -> float:
        """Area under the cumulative error curve, in percent."""
        pixels = self.pixels_per_cell
        within = np.cumsum(self.errors, axis=1)  # pixels with error <= threshold, per cell
        present = pixels > 0
        if rebalanced:
            curve = (within[present] / pixels[present, None]).mean(axis=0)
        else:
            curve = within.sum(axis=0) / pixels.sum()
        return float(curve.mean() * 100)


def colourfulness(bgr: np.ndarray) -> float:
    """Hasler & Suesstrunk's colourfulness metric of an 8-bit image."""
    b, g, r = (bgr[..., i].astype(np.float64) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def greyscale(bgr: np.ndarray) -> np.ndarray:
    """The photo as a black-and-white print: its L with ab = 0."""
    lab = bgr_to_lab(bgr)
    lab[..., 1:] = 0
    return lab_to_bgr(lab)


def photo_files(folder: Path, limit: int) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if limit and len(files) > limit:
        step = len(files) / limit
        files = [files[int(i * step)] for i in range(limit)]
    return files


def model_colorizer(settings: Settings, name: str, temperature: float | None) -> tuple[str, Colorizer]:
    from worker.colorizer import colorize
    from worker.engine import Engine

    manifest = load_manifest(settings.models_dir, name)
    engine = Engine.load(manifest, device=settings.device, threads=settings.engine_threads)
    return manifest.name, lambda images: colorize(engine, images, settings.batch_size, temperature)


def evaluate(files: Sequence[Path], methods: dict[str, Colorizer], batch: int = 32,
             sheet_rows: int = 8) -> tuple[dict[str, Scores], float, list[list[np.ndarray]]]:
    """Score every method on every photo; returns scores, originals' mean colourfulness, sheet rows."""
    scores = {name: Scores() for name in methods}
    original_colourfulness: list[float] = []
    sheet: list[list[np.ndarray]] = []
    sheet_every = max(1, len(files) // sheet_rows)
    for start in range(0, len(files), batch):
        paths = files[start : start + batch]
        originals = [img for img in (cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths) if img is not None]
        greys = [greyscale(img) for img in originals]
        outputs = {name: colorize(greys) for name, colorize in methods.items()}
        for i, original in enumerate(originals):
            lab_true = bgr_to_lab(original)
            original_colourfulness.append(colourfulness(original))
            for name in methods:
                scores[name].add(original, outputs[name][i], lab_true)
            if (start + i) % sheet_every == 0 and len(sheet) < sheet_rows:
                sheet.append([greys[i]] + [outputs[n][i] for n in methods if n != "grey"] + [original])
    return scores, float(np.mean(original_colourfulness)), sheet


def table_rows(scores: dict[str, Scores], original_colourfulness: float) -> list[dict[str, str]]:
    rows = []
    for name, s in scores.items():
        rows.append({
            "method": name,
            "PSNR (dB)": f"{np.mean(s.psnr):.2f}",
            "SSIM": f"{np.mean(s.ssim):.4f}",
            "AuC raw (%)": f"{s.auc(False):.2f}",
            "AuC rebalanced (%)": f"{s.auc(True):.2f}",
            "colourfulness / originals": f"{np.mean(s.colourfulness) / original_colourfulness:.3f}",
        })
    return rows


def markdown(rows: list[dict[str, str]], photos: int) -> str:
    header = list(rows[0])
    lines = [f"Evaluated on {photos} photos.", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r[h] for h in header) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def contact_sheet(rows: list[list[np.ndarray]], labels: list[str], box: int = 192) -> np.ndarray:
    """One row per photo, one column per label; each photo fitted into a ``box`` square."""
    def tile(img: np.ndarray) -> np.ndarray:
        scale = box / max(img.shape[:2])
        small = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        canvas = np.full((box + 4, box + 4, 3), 255, np.uint8)
        top, left = (box + 4 - small.shape[0]) // 2, (box + 4 - small.shape[1]) // 2
        canvas[top : top + small.shape[0], left : left + small.shape[1]] = small
        return canvas

    title = np.full((24, (box + 4) * len(labels), 3), 255, np.uint8)
    for i, label in enumerate(labels):
        cv2.putText(title, label, (i * (box + 4) + 4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([title] + [np.hstack([tile(img) for img in row]) for row in rows])


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    parser = argparse.ArgumentParser(prog="colorize eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="folder of colour photos (searched recursively)")
    parser.add_argument("--model", action="append", help="installed model to evaluate (repeatable; default: the default model)")
    parser.add_argument("--temperature", type=float, help="decoding temperature (default: each model's)")
    parser.add_argument("--limit", type=int, default=0, help="evaluate an evenly spread subset of N photos")
    parser.add_argument("--out", type=Path, default=Path("eval-report"), help="folder for table.md, table.csv, contact_sheet.png")
    args = parser.parse_args(argv)
    settings = settings or Settings.from_env_or_exit()

    files = photo_files(args.folder, args.limit)
    if not files:
        parser.error(f"no photos found under {args.folder}")
    methods: dict[str, Colorizer] = {"grey": lambda images: list(images)}
    for name in args.model or [settings.model]:
        label, colorizer = model_colorizer(settings, name, args.temperature)
        methods[label] = colorizer
    scores, original_colourfulness, sheet = evaluate(files, methods)

    args.out.mkdir(parents=True, exist_ok=True)
    rows = table_rows(scores, original_colourfulness)
    text = markdown(rows, len(files))
    (args.out / "table.md").write_text(text)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    (args.out / "table.csv").write_text(buffer.getvalue())
    labels = ["grey input"] + [n for n in methods if n != "grey"] + ["original"]
    cv2.imwrite(str(args.out / "contact_sheet.png"), contact_sheet(sheet, labels))
    print(text)
    print(f"report written to {args.out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
