"""The colour metrics that pick which checkpoint to keep, on held-out photos.

``SelectionSet`` scores rebalanced AuC alone. ``SourceSelection`` scores PSNR against grey on
each source (top-level folder) beside rebalanced AuC, so a checkpoint cannot win by painting
every photo: a wash over neutral regions raises rebalanced AuC but costs PSNR on the sources
it covers.

The photos go through the serving path (full-resolution L, the network at its input size,
ab joined back to L, 8-bit BGR), with the network run in PyTorch instead of ONNX Runtime, so
the score is the one ``colorize eval`` reports for the exported model.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from models.evaluation import Scores, colourfulness, greyscale, photo_files, source_of
from shared.colour.bins import ab_bins
from shared.colour.colorizer import model_input
from shared.colour.lab import bgr_to_lab, join_lightness_and_ab, lightness


@dataclass(frozen=True)
class SelectionScore:
    auc_rebalanced: float
    auc_raw: float
    colourfulness_ratio: float


class SelectionSet:
    """A fixed set of colour photos, loaded once, scored after each stage of training."""

    def __init__(self, folder: Path, limit: int) -> None:
        self.files = photo_files(folder, limit)
        self.originals = [img for img in (cv2.imread(str(p), cv2.IMREAD_COLOR) for p in self.files) if img is not None]
        self.l_full = [lightness(greyscale(img)) for img in self.originals]
        self.lab_true = [bgr_to_lab(img) for img in self.originals]
        self.original_colourfulness = float(np.mean([colourfulness(img) for img in self.originals]))

    def score(self, network: nn.Module, input_size: int, temperature: float, batch: int = 32) -> SelectionScore:
        scores = Scores()
        for i, predicted in enumerate(colorized(network, self.l_full, input_size, temperature, batch)):
            scores.colourfulness.append(colourfulness(predicted))
            scores.add_colour_error(bgr_to_lab(predicted), self.lab_true[i])
        return SelectionScore(
            scores.auc(True), scores.auc(False), float(np.mean(scores.colourfulness)) / self.original_colourfulness
        )


@torch.no_grad()
def colorized(
    network: nn.Module, l_full: list[np.ndarray], input_size: int, temperature: float, batch: int = 32
) -> list[np.ndarray]:
    """8-bit BGR photos from their full-resolution L, through the serving path with ``network``
    (L - 50 at input_size -> 313 logits) and the annealed mean at ``temperature``."""
    was_training = network.training
    network.eval()
    device = next(network.parameters()).device
    bins = torch.from_numpy(ab_bins().copy())
    photos: list[np.ndarray] = []
    for start in range(0, len(l_full), batch):
        chunk = l_full[start : start + batch]
        l_small = torch.from_numpy(np.stack([model_input(l, input_size) for l in chunk]))[:, None] - 50.0
        logits = network(l_small.to(device)).float().cpu()
        probabilities = torch.softmax(logits / temperature, dim=1)
        ab = torch.einsum("nqhw,qc->nhwc", probabilities, bins).numpy()
        photos.extend(join_lightness_and_ab(l, ab[i]) for i, l in enumerate(chunk))
    network.train(was_training)
    return photos


def spread_over_sources(folder: Path, per_source: int) -> list[Path]:
    """Up to ``per_source`` photos of each top-level folder of ``folder``, evenly spread over it."""
    return [p for source in sorted(d for d in folder.iterdir() if d.is_dir()) for p in photo_files(source, per_source)]


@dataclass(frozen=True)
class SourceScore:
    psnr_gain: dict[str, float]  # mean PSNR minus the grey photo's, per source (dB)
    auc_rebalanced: float
    auc_rebalanced_gain: float  # over grey (points)
    colourfulness_ratio: float

    def value(self, auc_weight: float) -> float:
        """The worst source's PSNR gain plus the mean gain, plus ``auc_weight`` dB per point of
        rebalanced AuC gained: higher is better."""
        gains = list(self.psnr_gain.values())
        return min(gains) + float(np.mean(gains)) + auc_weight * self.auc_rebalanced_gain

    def record(self) -> dict[str, float]:
        return {
            **{f"psnr_gain_{source}": round(gain, 3) for source, gain in self.psnr_gain.items()},
            "auc_rebalanced": round(self.auc_rebalanced, 3),
            "auc_rebalanced_gain": round(self.auc_rebalanced_gain, 3),
            "colourfulness": round(self.colourfulness_ratio, 3),
        }


class SourceSelection:
    """Held-out colour photos spread evenly over the sources of ``folder``, loaded once."""

    def __init__(self, folder: Path, per_source: int) -> None:
        self.files = spread_over_sources(folder, per_source)
        originals = [(p, cv2.imread(str(p), cv2.IMREAD_COLOR)) for p in self.files]
        self.sources = [source_of(p, folder) for p, img in originals if img is not None]
        self.originals = [img for _, img in originals if img is not None]
        greys = [greyscale(img) for img in self.originals]
        self.l_full = [lightness(grey) for grey in greys]
        self.lab_true = [bgr_to_lab(img) for img in self.originals]
        self.original_colourfulness = float(np.mean([colourfulness(img) for img in self.originals]))
        grey_scores = self._tally(greys)
        self.grey_psnr = self._psnr_by_source(grey_scores)
        self.grey_auc = grey_scores.auc(True)

    def _tally(self, photos: list[np.ndarray]) -> Scores:
        scores = Scores()
        for i, predicted in enumerate(photos):
            scores.psnr.append(cv2.PSNR(self.originals[i], predicted))
            scores.colourfulness.append(colourfulness(predicted))
            scores.add_colour_error(bgr_to_lab(predicted), self.lab_true[i])
        return scores

    def _psnr_by_source(self, scores: Scores) -> dict[str, float]:
        return {
            source: float(np.mean([v for v, s in zip(scores.psnr, self.sources) if s == source]))
            for source in sorted(set(self.sources))
        }

    def score(self, network: nn.Module, input_size: int, temperature: float) -> SourceScore:
        scores = self._tally(colorized(network, self.l_full, input_size, temperature))
        psnr = self._psnr_by_source(scores)
        auc = scores.auc(True)
        return SourceScore(
            {source: psnr[source] - self.grey_psnr[source] for source in psnr},
            auc,
            auc - self.grey_auc,
            float(np.mean(scores.colourfulness)) / self.original_colourfulness,
        )


Selection = SelectionSet | SourceSelection


def selection_value(
    selection: Selection, network: nn.Module, input_size: int, temperature: float, auc_weight: float
) -> tuple[float, dict[str, float]]:
    """The score that picks the checkpoint (higher is better: rebalanced AuC, or
    ``SourceScore.value``) and what to log of it."""
    if isinstance(selection, SourceSelection):
        by_source = selection.score(network, input_size, temperature)
        value = by_source.value(auc_weight)
        return value, {**by_source.record(), "selection_score": value}
    score = selection.score(network, input_size, temperature)
    return score.auc_rebalanced, {
        "auc_rebalanced": score.auc_rebalanced,
        "auc_raw": score.auc_raw,
        "colourfulness": score.colourfulness_ratio,
    }


def pack_sources(folder: Path, out: Path, per_source: int) -> int:
    """Copy the photos ``SourceSelection(folder, per_source)`` scores to ``out``, by source, so
    they can travel to a training machine without the rest; returns how many."""
    files = spread_over_sources(folder, per_source)
    for path in files:
        target = out / path.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return len(files)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Copy the held-out photos a run selects by, by source.")
    parser.add_argument("folder", type=Path, help="held-out colour photos, one folder per source")
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-source", type=int, default=40)
    args = parser.parse_args(argv)
    print(f"copied {pack_sources(args.folder, args.out, args.per_source)} photos into {args.out}")


if __name__ == "__main__":
    main()
