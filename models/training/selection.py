"""The colour metric that picks which checkpoint to keep: rebalanced AuC on held-out photos.

The photos go through the serving path (full-resolution L, the network at its input size,
ab joined back to L, 8-bit BGR), with the network run in PyTorch instead of ONNX Runtime, so
the score is the one ``colorize eval`` reports for the exported model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from models.evaluation import Scores, colourfulness, greyscale, photo_files
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

    @torch.no_grad()
    def score(self, network: nn.Module, input_size: int, temperature: float, batch: int = 32) -> SelectionScore:
        was_training = network.training
        network.eval()
        device = next(network.parameters()).device
        bins = torch.from_numpy(ab_bins().copy())
        scores = Scores()
        for start in range(0, len(self.l_full), batch):
            l_full = self.l_full[start : start + batch]
            l_small = torch.from_numpy(np.stack([model_input(l, input_size) for l in l_full]))[:, None] - 50.0
            logits = network(l_small.to(device)).float().cpu()
            probabilities = torch.softmax(logits / temperature, dim=1)
            ab = torch.einsum("nqhw,qc->nhwc", probabilities, bins).numpy()
            for i, l in enumerate(l_full):
                predicted = join_lightness_and_ab(l, ab[i])
                scores.colourfulness.append(colourfulness(predicted))
                scores.add_colour_error(bgr_to_lab(predicted), self.lab_true[start + i])
        network.train(was_training)
        return SelectionScore(
            scores.auc(True), scores.auc(False), float(np.mean(scores.colourfulness)) / self.original_colourfulness
        )
