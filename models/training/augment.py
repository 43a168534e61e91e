"""Training views that look like real inputs: random resized crops, flips, and tone jitter on L.

Crops are drawn from square Lab crops held in memory (``dataset.load_lab_crops``) with one
affine resample per batch. The tone jitter changes only the L the network sees, never the
target colours: faded, low-contrast or over-exposed scans must still get the colours of the
scene they show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.training.scan_augment import ScanEffects, scan_like

DOWNSAMPLE = 4


@dataclass(frozen=True)
class Jitter:
    min_area: float = 0.3  # fraction of the source square a crop covers, at least
    max_aspect: float = 4 / 3
    tone_probability: float = 0.5
    gamma: tuple[float, float] = (0.7, 1.4)
    contrast: tuple[float, float] = (0.6, 1.1)
    brightness: float = 8.0  # L units, either way


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def resized_crops(crops: torch.Tensor, out_size: int, jitter: Jitter, generator: torch.Generator) -> torch.Tensor:
    """(B, 3, S, S) Lab -> (B, 3, out, out): random area, aspect ratio, position and flip."""
    batch, device = crops.shape[0], crops.device
    area = _uniform(batch, jitter.min_area, 1.0, generator, device)
    log_aspect = _uniform(batch, -math.log(jitter.max_aspect), math.log(jitter.max_aspect), generator, device)
    aspect = torch.exp(log_aspect)
    width = torch.sqrt(area * aspect).clamp(max=1.0)
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    shift_x = (2 * torch.rand(batch, generator=generator, device=device) - 1) * (1 - width)
    shift_y = (2 * torch.rand(batch, generator=generator, device=device) - 1) * (1 - height)
    flip = torch.where(torch.rand(batch, generator=generator, device=device) < 0.5, -1.0, 1.0)
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0] = width * flip
    theta[:, 0, 2] = shift_x
    theta[:, 1, 1] = height
    theta[:, 1, 2] = shift_y
    grid = F.affine_grid(theta, [batch, 3, out_size, out_size], align_corners=False)
    return F.grid_sample(crops.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def jitter_tone(l: torch.Tensor, jitter: Jitter, generator: torch.Generator) -> torch.Tensor:
    """(B, 1, H, W) L in [0, 100] -> L with random gamma, contrast and brightness on some images."""
    batch, device = l.shape[0], l.device
    chosen = (torch.rand(batch, generator=generator, device=device) < jitter.tone_probability).float()
    gamma = torch.exp(_uniform(batch, math.log(jitter.gamma[0]), math.log(jitter.gamma[1]), generator, device))
    contrast = _uniform(batch, *jitter.contrast, generator, device)
    brightness = _uniform(batch, -jitter.brightness, jitter.brightness, generator, device)
    shaped = 100.0 * (l.clamp(0, 100) / 100.0) ** gamma[:, None, None, None]
    mean = shaped.mean(dim=(1, 2, 3), keepdim=True)
    toned = (mean + contrast[:, None, None, None] * (shaped - mean) + brightness[:, None, None, None]).clamp(0, 100)
    keep = chosen[:, None, None, None]
    return keep * toned + (1 - keep) * l


def training_view(
    crops: torch.Tensor,
    out_size: int,
    jitter: Jitter,
    generator: torch.Generator,
    scan: ScanEffects | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lab crops -> network input (jittered L - 50, scan-like where ``scan`` draws it) and
    target ab at 1/4 resolution."""
    lab = resized_crops(crops, out_size, jitter, generator)
    l_view = jitter_tone(lab[:, :1], jitter, generator)
    if scan is not None:
        l_view, _ = scan_like(l_view, scan, generator)
    return l_view - 50.0, F.avg_pool2d(lab[:, 1:], DOWNSAMPLE)
