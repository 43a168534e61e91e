"""The hint branch: what a frozen colorization network adds to its logits where hints are given.

It enters at the decoder's last stride-4 features (the input of the 313-bin classifier),
with the hint planes average-pooled to the same grid, and goes through 3x3 convolutions of
growing dilation, so a hint reaches along the region its features describe (31 cells, 124
pixels of the 160-pixel input, with dilations 1 to 8). Its output is added to the base
network's logits; the last layer starts at zero, so before training the model is exactly
the base. Beside it, a hinted cell's own logits are pulled towards the hinted colour by
``-gain * |bin - hint|^2`` (the gain learnt, starting at ``INITIAL_PULL``): the convolutions
need not learn to copy a colour into the cell it was given for, and can spend a short
training on spreading it. A third part carries each hint to the cells whose features match
its own (``models.training.hint_propagation``) and pulls them the same way, as strongly as
they attend to hints. A gate of the image's largest mask value keeps an image without
hints on the base network's output exactly, trained or not: the automatic colorization
stays the shipped one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.training.hint_propagation import HintAttention
from shared.colour.bins import NUM_BINS, ab_bins

STRIDE = 4
AB_SCALE = 100.0  # hinted ab is fed divided by this, to the order of the features
# Logits per squared ab unit from a bin to the hint, at first: a bin 10 units off loses 2.
INITIAL_PULL = 0.02


def pooled_hints(hint_ab: torch.Tensor, hint_mask: torch.Tensor) -> torch.Tensor:
    """(N, 2, S, S) ab and (N, 1, S, S) mask -> (N, 3, S/4, S/4): the mean hinted ab of each
    cell (0 where none) and whether the cell holds a hint."""
    mask_share = F.avg_pool2d(hint_mask, STRIDE)
    ab_sum = F.avg_pool2d(hint_ab * hint_mask, STRIDE)
    mean_ab = ab_sum / (mask_share + 1e-6) / AB_SCALE
    occupied = torch.clamp(mask_share * (STRIDE * STRIDE), max=1.0)
    return torch.cat([mean_ab, occupied], dim=1)


class HintBranch(nn.Module):
    """(features (N, C, h, w), hint_ab, hint_mask at 4h x 4w) -> logit offsets (N, 313, h, w)."""

    bins: torch.Tensor  # (313, 2, 1, 1) ab of each bin, as 1x1 convolution weights
    bin_norms: torch.Tensor  # (1, 313, 1, 1) squared length of each bin's ab

    def __init__(self, feature_channels: int, width: int = 64, dilations: tuple[int, ...] = (1, 2, 4, 8)) -> None:
        super().__init__()
        self.feature_channels = feature_channels
        self.entry = nn.Conv2d(feature_channels + 3, width, 3, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(width, width, 3, padding=d, dilation=d) for d in dilations)
        self.out = nn.Conv2d(width, NUM_BINS, 1)
        for parameter in self.out.parameters():  # starts as the base network exactly
            nn.init.zeros_(parameter)
        bins = torch.from_numpy(ab_bins().astype("float32"))
        self.register_buffer("bins", bins.reshape(NUM_BINS, 2, 1, 1))
        self.register_buffer("bin_norms", (bins * bins).sum(dim=1).reshape(1, NUM_BINS, 1, 1))
        self.log_pull = nn.Parameter(torch.tensor(float(torch.log(torch.tensor(INITIAL_PULL)))))
        self.attention = HintAttention(feature_channels)
        self.log_spread_pull = nn.Parameter(torch.tensor(float(torch.log(torch.tensor(INITIAL_PULL / 2)))))
        self.config: dict[str, object] = {
            "feature_channels": feature_channels,
            "width": width,
            "dilations": list(dilations),
        }

    def forward(self, features: torch.Tensor, hint_ab: torch.Tensor, hint_mask: torch.Tensor) -> torch.Tensor:
        hints = pooled_hints(hint_ab, hint_mask)
        x = F.relu(self.entry(torch.cat([features, hints], dim=1)))
        for conv in self.body:
            x = x + F.relu(conv(x))  # residual: each dilation widens the reach without losing the near
        gate = torch.amax(hint_mask, dim=(1, 2, 3), keepdim=True)
        attended, on_hints = self.attention(features, hints[:, :2] * AB_SCALE, hints[:, 2:3])
        offsets: torch.Tensor = (self.out(x) + self._pull(hints) + self._spread(attended, on_hints)) * gate
        return offsets

    def _spread(self, attended: torch.Tensor, on_hints: torch.Tensor) -> torch.Tensor:
        """``-gain * sum_j w_j |bin - hint_j|^2`` up to a constant per cell: (N, 313, h, w)."""
        affinity = 2 * F.conv2d(attended, self.bins) - self.bin_norms * on_hints
        spread: torch.Tensor = torch.exp(self.log_spread_pull) * affinity
        return spread

    def _pull(self, hints: torch.Tensor) -> torch.Tensor:
        """``-gain * |bin - hint|^2`` at hinted cells, 0 elsewhere: (N, 313, h, w)."""
        ab = hints[:, :2] * AB_SCALE
        distances = self.bin_norms - 2 * F.conv2d(ab, self.bins) + (ab * ab).sum(dim=1, keepdim=True)
        pull: torch.Tensor = -torch.exp(self.log_pull) * distances * hints[:, 2:3]
        return pull
