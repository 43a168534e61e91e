"""A narrow member of the ECCV16 colorization family, sized for CPU serving.

Same shape as Zhang et al.'s network: strided 3x3 conv blocks down to 1/8, dilated middle
blocks, one transposed-conv upsampling to 1/4, batch norm closing each block, 1x1 conv to
313 bin logits. Only the channel widths are smaller.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from shared.colour.bins import NUM_BINS


@dataclass(frozen=True)
class Widths:
    conv1: int = 16
    conv2: int = 32
    conv3: int = 64
    middle: int = 128  # conv4 .. conv7 (512 in ECCV16)
    conv8: int = 64


def _block(c_in: int, c_out: int, convs: int, stride_last: int = 1, dilation: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        stride = stride_last if i == convs - 1 else 1
        layers += [
            nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, stride=stride, padding=dilation, dilation=dilation),
            nn.ReLU(inplace=True),
        ]
    layers.append(nn.BatchNorm2d(c_out))
    return nn.Sequential(*layers)


class ColorNet(nn.Module):
    """(N, 1, H, W) centred L (L - 50) -> (N, 313, H/4, W/4) bin logits."""

    def __init__(self, widths: Widths = Widths()) -> None:
        super().__init__()
        w = widths
        self.features = nn.Sequential(
            _block(1, w.conv1, 2, stride_last=2),
            _block(w.conv1, w.conv2, 2, stride_last=2),
            _block(w.conv2, w.conv3, 3, stride_last=2),
            _block(w.conv3, w.middle, 3),
            _block(w.middle, w.middle, 3, dilation=2),
            _block(w.middle, w.middle, 3, dilation=2),
            _block(w.middle, w.middle, 3),
            nn.ConvTranspose2d(w.middle, w.conv8, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(w.conv8, w.conv8, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(w.conv8, w.conv8, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(w.conv8, NUM_BINS, 1)

    def forward(self, l_centred: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(self.features(l_centred / 50.0))
        return logits
