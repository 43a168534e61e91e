"""Colour quality of installed models on colour photos, against the grey baseline (ab = 0).

    colorize eval DIR [--model NAME ...] [--out report/]
    colorize eval --sheet-only DIR [--model NAME ...] [--out report/]
    colorize eval DIR --hints N [--model NAME ...]

Each photo is made greyscale (its L with ab = 0), colorized, and compared with the original:
PSNR and SSIM in RGB; AuC of the cumulative per-pixel ab error curve (thresholds 0..150),
raw and class-rebalanced as in Zhang et al. (each pixel weighted by the inverse frequency,
in the evaluated set, of its ground-truth ab bin on the step-10 grid, so every colour present
counts equally); mean colourfulness (Hasler & Suesstrunk) relative to the originals; and
whether an ImageNet classifier still recognises the photos (``models.recognition``). Rows per
source (the top-level folders under DIR) and over all photos, so a regression on one kind of
photo shows. Writes a Markdown and a CSV table and a contact sheet (grey | model ... | original).

With ``--hints N`` every model that takes colour hints is also given N hints per photo,
simulated from the photo's truth (``models.hint_simulation``: the mean true ab of a small
patch at random points, the same points for every run and model), and scored in rows of its
own beside the automatic ones, so the gain per hint count can be read; the contact sheet marks
the points.

With ``--sheet-only`` the photos need no colour truth (scans of old black-and-white photos):
nothing is scored, and every photo goes on pages of contact sheets (input | model ...), the
models colorizing each photo's own lightness.
"""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from models.contact_sheets import Colorizer, contact_sheet, folder_sheets
from models.hint_simulation import photo_hints
from models.recognition import Judge, Recognition, imagenet_label
from shared.colour.bins import grid_index
from shared.colour.hints import MAX_HINTS, Hint
from shared.colour.lab import bgr_to_lab, lab_to_bgr
from shared.colour.model_manifests import load_manifest
from shared.settings import Settings

THRESHOLDS = np.arange(0, 151)  # ab error thresholds of the AuC curve
GRID_CELLS = 23 * 23
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
# A colorizer given one list of colour hints per image.
HintedColorizer = Callable[[list[np.ndarray], list[list[Hint]]], list[np.ndarray]]


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


def model_colorizer(
    settings: Settings, name: str, temperature: float | None
) -> tuple[str, Colorizer, HintedColorizer | None]:
    """A model's name, its automatic colorizer, and its colorizer with hints (None: it takes none)."""
    from shared.colour.colorizer import colorize
    from shared.colour.engine import Engine

    manifest = load_manifest(settings.models_dir, name)
    engine = Engine.load(manifest, device=settings.device, threads=settings.engine_threads)

    def hinted(images: list[np.ndarray], hints: list[list[Hint]]) -> list[np.ndarray]:
        return colorize(engine, images, settings.batch_size, temperature, hints)

    automatic: Colorizer = lambda images: colorize(engine, images, settings.batch_size, temperature)
    return manifest.name, automatic, hinted if manifest.hints else None


def source_of(path: Path, root: Path) -> str:
    """The top-level folder under ``root`` a photo comes from (its kind of photo)."""
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else root.name


@dataclass
class SourceTally:
    """Every method's scores on the photos of one source."""

    scores: dict[str, Scores]
    recognition: dict[str, Recognition]  # methods and "original"
    original_colourfulness: list[float] = field(default_factory=list)

    @classmethod
    def empty(cls, methods: Sequence[str]) -> SourceTally:
        return cls({m: Scores() for m in methods}, {m: Recognition() for m in [*methods, "original"]})

    def merge(self, other: SourceTally) -> None:
        for name, scores in other.scores.items():
            mine = self.scores[name]
            mine.psnr += scores.psnr
            mine.ssim += scores.ssim
            mine.colourfulness += scores.colourfulness
            mine.errors += scores.errors
            mine.pixels_per_cell += scores.pixels_per_cell
        for name, recognition in other.recognition.items():
            mine_r = self.recognition[name]
            mine_r.agreed += recognition.agreed
            mine_r.photos += recognition.photos
            mine_r.correct += recognition.correct
            mine_r.labelled += recognition.labelled
        self.original_colourfulness += other.original_colourfulness


def mark_hints(image: np.ndarray, hints: list[Hint]) -> np.ndarray:
    """A copy of ``image`` with each hint's point ringed in black and white."""
    marked = image.copy()
    height, width = image.shape[:2]
    radius = max(3, round(max(height, width) / 80))
    for hint in hints:
        centre = (int(hint.x * width), int(hint.y * height))
        cv2.circle(marked, centre, radius + 1, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.circle(marked, centre, radius, (255, 255, 255), 1, cv2.LINE_AA)
    return marked


def evaluate(
    files: Sequence[Path],
    root: Path,
    methods: dict[str, Colorizer],
    judge: Judge | None = None,
    batch: int = 32,
    sheet_rows: int = 8,
    hinted: dict[str, HintedColorizer] | None = None,
    hints: int = 0,
) -> tuple[dict[str, SourceTally], list[list[np.ndarray]]]:
    """Score every method on every photo, by source; returns the tallies and the contact sheet rows.

    ``hinted`` methods get ``hints`` simulated hints per photo (``models.hint_simulation.photo_hints``).
    """
    hinted = hinted or {}
    names = [*methods, *hinted]
    tallies: dict[str, SourceTally] = {}
    sheet: list[list[np.ndarray]] = []
    sheet_every = max(1, len(files) // max(1, sheet_rows))
    for start in range(0, len(files), batch):
        loaded = [(p, cv2.imread(str(p), cv2.IMREAD_COLOR)) for p in files[start : start + batch]]
        paths = [p for p, img in loaded if img is not None]
        originals = [img for _, img in loaded if img is not None]
        greys = [greyscale(img) for img in originals]
        outputs = {name: colorize(greys) for name, colorize in methods.items()}
        photo_hint_lists = [photo_hints(img, hints, str(p.relative_to(root))) for p, img in zip(paths, originals)]
        outputs |= {name: colorize(greys, photo_hint_lists) for name, colorize in hinted.items()}
        judged = (
            {name: judge.classes(images) for name, images in [*outputs.items(), ("original", originals)]}
            if judge
            else {}
        )
        for i, (path, original) in enumerate(zip(paths, originals)):
            tally = tallies.setdefault(source_of(path, root), SourceTally.empty(names))
            lab_true = bgr_to_lab(original)
            tally.original_colourfulness.append(colourfulness(original))
            for name in names:
                tally.scores[name].add(original, outputs[name][i], lab_true)
            if judge:
                label = imagenet_label(path)
                for name, classes in judged.items():
                    tally.recognition[name].add(int(classes[i]), int(judged["original"][i]), label)
            if (start + i) % sheet_every == 0 and len(sheet) < sheet_rows:
                shown = [outputs[n][i] for n in methods if n != "grey"]
                shown += [mark_hints(outputs[n][i], photo_hint_lists[i]) for n in hinted]
                sheet.append([greys[i], *shown, original])
    return tallies, sheet


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def table_rows(tallies: dict[str, SourceTally], judged: bool) -> list[dict[str, str]]:
    """One row per source and method, then the same over all photos."""
    methods = list(next(iter(tallies.values())).scores)
    everything = SourceTally.empty(methods)
    for tally in tallies.values():
        everything.merge(tally)
    rows = []
    groups = [*sorted(tallies.items()), ("all", everything)] if len(tallies) > 1 else [("all", everything)]
    for source, tally in groups:
        original_colourfulness = float(np.mean(tally.original_colourfulness))
        names = [*methods, "original"] if judged else methods
        for name in names:
            row = {"photos": source, "method": name}
            if name in tally.scores:
                s = tally.scores[name]
                row.update(
                    {
                        "PSNR (dB)": f"{np.mean(s.psnr):.2f}",
                        "SSIM": f"{np.mean(s.ssim):.4f}",
                        "AuC raw (%)": f"{s.auc(False):.2f}",
                        "AuC rebalanced (%)": f"{s.auc(True):.2f}",
                        "colourfulness / originals": f"{np.mean(s.colourfulness) / original_colourfulness:.3f}",
                    }
                )
            else:
                row.update({k: "" for k in ("PSNR (dB)", "SSIM", "AuC raw (%)", "AuC rebalanced (%)")})
                row["colourfulness / originals"] = "1.000"
            if judged:
                recognition = tally.recognition[name]
                row["judge top-1 (%)"] = _percent(recognition.accuracy())
                row["judge agrees with original (%)"] = _percent(recognition.agreement())
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, str]], photos: int, note: str | None = None) -> str:
    header = list(rows[0])
    lines = [f"Evaluated on {photos} photos.", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r[h] for h in header) + " |" for r in rows]
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def write_tables(out: Path, rows: list[dict[str, str]], text: str) -> None:
    """``table.md`` (``text``) and ``table.csv`` (``rows``) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    (out / "table.csv").write_text(buffer.getvalue())


def scored_report(
    args: argparse.Namespace,
    files: list[Path],
    models: dict[str, Colorizer],
    hinted: dict[str, HintedColorizer] | None = None,
) -> None:
    """Score grey and ``models`` (and ``hinted`` models with ``args.hints`` hints) on colour photos:
    the tables and one contact sheet in ``args.out``."""
    methods: dict[str, Colorizer] = {"grey": lambda images: list(images), **models}
    hinted = hinted or {}
    judge = None if args.no_judge else Judge.load()
    note = judge if isinstance(judge, str) else None
    judge = judge if isinstance(judge, Judge) else None
    tallies, sheet = evaluate(
        files, args.folder, methods, judge, sheet_rows=args.sheet_rows, hinted=hinted, hints=args.hints
    )
    rows = table_rows(tallies, judged=judge is not None)
    text = markdown(rows, len(files), note)
    write_tables(args.out, rows, text)
    if sheet:
        labels = ["grey input", *models, *hinted, "original"]
        cv2.imwrite(str(args.out / "contact_sheet.png"), contact_sheet(sheet, labels))
    print(text)


def sheets_only(args: argparse.Namespace, files: list[Path], models: dict[str, Colorizer]) -> None:
    """Contact sheets of every photo beside each model's colorization, ``args.sheet_rows`` a page."""
    pages = folder_sheets(files, models, args.sheet_rows)
    args.out.mkdir(parents=True, exist_ok=True)
    for number, page in enumerate(pages, start=1):
        cv2.imwrite(str(args.out / f"contact_sheet_{number:02d}.png"), page)
    print(f"{len(files)} photos on {len(pages)} contact sheet(s)")


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="colorize eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="folder of colour photos (searched recursively)")
    parser.add_argument(
        "--model", action="append", help="installed model to evaluate (repeatable; default: the default model)"
    )
    parser.add_argument("--temperature", type=float, help="decoding temperature (default: each model's)")
    parser.add_argument("--limit", type=int, default=0, help="evaluate an evenly spread subset of N photos")
    parser.add_argument(
        "--out", type=Path, default=Path("eval-report"), help="folder for table.md, table.csv, contact_sheet.png"
    )
    parser.add_argument(
        "--sheet-rows",
        type=int,
        default=8,
        help="photos on the contact sheet, evenly spread (0: no contact sheet); with --sheet-only, photos per page",
    )
    parser.add_argument(
        "--sheet-only",
        action="store_true",
        help="photos without colour truth: no scores, every photo on contact_sheet_NN.png (input | models)",
    )
    parser.add_argument("--no-judge", action="store_true", help="skip the ImageNet classifier (recognition)")
    parser.add_argument(
        "--hints",
        type=int,
        default=0,
        help="also score models that take colour hints with N hints per photo simulated from its truth",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.hints <= MAX_HINTS:
        parser.error(f"--hints must be between 0 and {MAX_HINTS}")
    if args.hints and args.sheet_only:
        parser.error("--hints needs colour truth to draw hints from, so it cannot go with --sheet-only")
    if args.sheet_rows < (1 if args.sheet_only else 0):
        parser.error("--sheet-rows must be 1 or more with --sheet-only, 0 or more otherwise")
    settings = settings or Settings.from_env_or_exit()

    files = photo_files(args.folder, args.limit)
    if not files:
        parser.error(f"no photos found under {args.folder}")
    models: dict[str, Colorizer] = {}
    hinted: dict[str, HintedColorizer] = {}
    for name in args.model or [settings.model]:
        label, colorizer, with_hints = model_colorizer(settings, name, args.temperature)
        models[label] = colorizer
        if args.hints and with_hints is not None:
            hinted[f"{label} +{args.hints} hints"] = with_hints
    if args.sheet_only:
        sheets_only(args, files, models)
    else:
        scored_report(args, files, models, hinted)
    print(f"report written to {args.out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
