"""Colorization network on a pretrained encoder: EfficientNet-Lite features, U-Net decoder.

The decoder climbs from stride 32 to stride 4, joining the encoder's feature map of each
stride on the way (skip connections), and ends in 313 bin logits at 1/4 of the input, the
same output as the ECCV16 family, so the same annealed-mean head and engine serve it. A
global context vector (the pooled stride-32 features) is added at the top: the colour of a
region often depends on what the whole photo shows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.training.encoder import LiteEncoder
from shared.colour.bins import NUM_BINS


@dataclass(frozen=True)
class DecoderWidths:
    top: int = 128  # stride 32 and 16
    middle: int = 96  # stride 8
    bottom: int = 64  # stride 4


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


class UpBlock(nn.Module):
    """Upsample x2, concatenate the encoder's map of that stride, two 3x3 convolutions."""

    def __init__(self, c_in: int, c_skip: int, c_out: int) -> None:
        super().__init__()
        self.fuse = conv_bn_relu(c_in + c_skip, c_out)
        self.refine = conv_bn_relu(c_out, c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        refined: torch.Tensor = self.refine(self.fuse(torch.cat([x, skip], dim=1)))
        return refined


class Decoder(nn.Module):
    """Encoder features at strides (4, 8, 16, 32) -> (N, 313, H/4, W/4) bin logits."""

    def __init__(self, skip_channels: list[int], widths: DecoderWidths = DecoderWidths()) -> None:
        super().__init__()
        c4, c8, c16, c32 = skip_channels
        self.top = conv_bn_relu(c32, widths.top, 1)
        self.context = nn.Sequential(nn.Linear(c32, widths.top), nn.ReLU(inplace=True))
        self.up16 = UpBlock(widths.top, c16, widths.top)
        self.up8 = UpBlock(widths.top, c8, widths.middle)
        self.up4 = UpBlock(widths.middle, c4, widths.bottom)
        self.classifier = nn.Conv2d(widths.bottom, NUM_BINS, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        f4, f8, f16, f32 = features
        context = self.context(f32.mean(dim=(2, 3)))
        x = self.top(f32) + context[:, :, None, None]
        x = self.up16(x, f16)
        x = self.up8(x, f8)
        x = self.up4(x, f4)
        logits: torch.Tensor = self.classifier(x)
        return logits


class PretrainedColorNet(nn.Module):
    """(N, 1, H, W) centred L (L - 50) -> (N, 313, H/4, W/4) bin logits."""

    def __init__(
        self, encoder: str = "lite0", widths: DecoderWidths = DecoderWidths(), pretrained: bool = True
    ) -> None:
        super().__init__()
        self.encoder = LiteEncoder(encoder, pretrained=pretrained)
        self.decoder = Decoder([e.channels for e in self.encoder.endpoints], widths)
        self.config = {"encoder": encoder, "decoder_widths": asdict(widths)}
        self.encoder_in_inference_mode = False

    def train(self, mode: bool = True) -> PretrainedColorNet:
        super().train(mode)
        if self.encoder_in_inference_mode:
            self.encoder.eval()
        return self

    def forward(self, l_centred: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.decoder(self.encoder(l_centred))
        return logits
