"""The hint branch: what a frozen colorization network adds to its logits where hints are given.

It enters at the decoder's last stride-4 features (the input of the 313-bin classifier),
with the hint planes average-pooled to the same grid, and goes through 3x3 convolutions of
growing dilation, so a hint reaches along the region its features describe (31 cells, 124
pixels of the 160-pixel input, with dilations 1 to 8). Its output is added to the base
network's logits; the last layer starts at zero, so before training the model is exactly
the base. A gate of the image's largest mask value keeps an image without hints on the
base network's output exactly, trained or not: the automatic colorization stays the
shipped one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shared.colour.bins import NUM_BINS

STRIDE = 4
AB_SCALE = 100.0  # hinted ab is fed divided by this, to the order of the features


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

    def __init__(self, feature_channels: int, width: int = 64, dilations: tuple[int, ...] = (1, 2, 4, 8)) -> None:
        super().__init__()
        self.feature_channels = feature_channels
        self.entry = nn.Conv2d(feature_channels + 3, width, 3, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(width, width, 3, padding=d, dilation=d) for d in dilations)
        self.out = nn.Conv2d(width, NUM_BINS, 1)
        for parameter in self.out.parameters():  # starts as the base network exactly
            nn.init.zeros_(parameter)
        self.config: dict[str, object] = {
            "feature_channels": feature_channels,
            "width": width,
            "dilations": list(dilations),
        }

    def forward(self, features: torch.Tensor, hint_ab: torch.Tensor, hint_mask: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.entry(torch.cat([features, pooled_hints(hint_ab, hint_mask)], dim=1)))
        for conv in self.body:
            x = x + F.relu(conv(x))  # residual: each dilation widens the reach without losing the near
        gate = torch.amax(hint_mask, dim=(1, 2, 3), keepdim=True)
        offsets: torch.Tensor = self.out(x) * gate
        return offsets
