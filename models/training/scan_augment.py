"""Training views that look like old scans: the L of part of the views degraded as prints are.

Photos users bring are mostly scanned prints: faded (lifted blacks, low contrast), unevenly
exposed and vignetted, soft, grainy, dusty and scratched, and saved as JPEG. A network that
never saw such L treats them as out of distribution and paints one cast over the whole photo.
Each degradation is drawn per image with its own probability, on a chosen share of the views,
and changes only the L the network sees: the colour targets stay those of the clean photo.

Everything is a batched torch op drawn from the caller's generator, so a seeded run repeats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

EFFECTS = ("fade", "exposure", "blur", "grain", "dust", "jpeg")
JPEG_BLOCK = 8
# The JPEG standard's luminance quantisation table (quality 50); scaled per image below.
JPEG_LUMA = torch.tensor(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=torch.float32,
)


@dataclass(frozen=True)
class ScanEffects:
    """How often each degradation is drawn (per image, independently) and how strong it may be."""

    fade: float = 0.35
    exposure: float = 0.35
    blur: float = 0.35
    grain: float = 0.4
    dust: float = 0.2
    jpeg: float = 0.3
    black_lift: tuple[float, float] = (3.0, 25.0)  # L the blacks are lifted to
    white_drop: tuple[float, float] = (2.0, 25.0)  # L the whites fall by
    vignette: tuple[float, float] = (0.1, 0.5)  # relative darkening at the corners
    gradient: float = 0.2  # relative exposure change across the photo, either way
    blur_sigma: tuple[float, float] = (0.4, 1.6)  # pixels
    grain_sigma: tuple[float, float] = (1.0, 6.0)  # L units
    jpeg_scale: tuple[float, float] = (0.3, 2.0)  # times the quality-50 table (lower is better)
    dust_density: tuple[float, float] = (0.0005, 0.004)  # specks per pixel
    scratch_density: float = 0.01  # scratched columns per column, at most

    def probability(self, effect: str) -> float:
        value: float = getattr(self, effect)
        return value

    def scaled(self, share: float) -> ScanEffects:
        """The same effects, each drawn ``share`` times as often."""
        fields = {effect: min(1.0, self.probability(effect) * share) for effect in EFFECTS}
        return ScanEffects(**{**self.__dict__, **fields})


def _uniform(n: int, bounds: tuple[float, float], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    low, high = bounds
    return (low + (high - low) * torch.rand(n, generator=generator, device=device))[:, None, None, None]


def fade(l: torch.Tensor, effects: ScanEffects, generator: torch.Generator) -> torch.Tensor:
    """Lifted blacks and dimmed whites: the low contrast of a faded print."""
    n, device = l.shape[0], l.device
    black = _uniform(n, effects.black_lift, generator, device)
    white = 100.0 - _uniform(n, effects.white_drop, generator, device)
    return black + l * (white - black) / 100.0


def uneven_exposure(l: torch.Tensor, effects: ScanEffects, generator: torch.Generator) -> torch.Tensor:
    """A vignette and a linear exposure gradient in a random direction, as a gain on L."""
    n, _, height, width = l.shape
    device = l.device
    y = torch.linspace(-1, 1, height, device=device)[None, None, :, None]
    x = torch.linspace(-1, 1, width, device=device)[None, None, None, :]
    strength = _uniform(n, effects.vignette, generator, device)
    angle = _uniform(n, (0.0, 2 * math.pi), generator, device)
    slope = _uniform(n, (-effects.gradient, effects.gradient), generator, device)
    radius2 = (x.square() + y.square()) / 2
    gain = (1 - strength * radius2) * (1 + slope * (x * torch.cos(angle) + y * torch.sin(angle)))
    return l * gain


def gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """(B,) sigmas -> (B, 2 * radius + 1) normalised 1-D Gaussian kernels."""
    offsets = torch.arange(-radius, radius + 1, device=sigma.device, dtype=torch.float32)
    kernels = torch.exp(-offsets.square()[None, :] / (2 * sigma[:, None].square()))
    return kernels / kernels.sum(dim=1, keepdim=True)


def separable_blur(l: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image of (B, 1, H, W) by its own Gaussian sigma (B,), as one grouped convolution."""
    n, _, height, width = l.shape
    radius = max(1, math.ceil(3 * float(sigma.max())))
    kernels = gaussian_kernels(sigma, radius)
    planes = F.pad(l.reshape(1, n, height, width), (radius, radius, radius, radius), mode="reflect")
    planes = F.conv2d(planes, kernels[:, None, None, :], groups=n)
    planes = F.conv2d(planes, kernels[:, None, :, None], groups=n)
    return planes.reshape(n, 1, height, width)


def blur(l: torch.Tensor, effects: ScanEffects, generator: torch.Generator) -> torch.Tensor:
    """The softness of an out-of-focus lens or a low-resolution scan."""
    sigma = _uniform(l.shape[0], effects.blur_sigma, generator, l.device).flatten()
    return separable_blur(l, sigma)


def grain(l: torch.Tensor, effects: ScanEffects, generator: torch.Generator) -> torch.Tensor:
    """Film grain (clumped, strongest in the mid-tones) plus white sensor noise."""
    n, device = l.shape[0], l.device
    strength = _uniform(n, effects.grain_sigma, generator, device)
    white = torch.randn(l.shape, generator=generator, device=device)
    clumped = separable_blur(torch.randn(l.shape, generator=generator, device=device), torch.full((n,), 0.8))
    # A blur of unit noise at sigma 0.8 keeps about a third of its deviation; rescale to unit.
    clumped = clumped * 2.8
    midtones = 0.5 + 2 * (l.clamp(0, 100) / 100) * (1 - l.clamp(0, 100) / 100)
    return l + strength * (0.7 * clumped * midtones + 0.3 * white)


def dust_and_scratches(l: torch.Tensor, effects: ScanEffects, generator: torch.Generator) -> torch.Tensor:
    """Specks of dust (small blobs) and vertical scratches, each bright or dark."""
    n, _, _, width = l.shape
    device = l.device
    density = _uniform(n, effects.dust_density, generator, device)
    seeds = (torch.rand(l.shape, generator=generator, device=device) < density).float()
    grown = torch.rand(l.shape, generator=generator, device=device) < 0.6
    specks = torch.maximum(seeds, F.max_pool2d(seeds, 3, stride=1, padding=1) * grown.float())
    column_density = _uniform(n, (0.0, effects.scratch_density), generator, device)
    scratches = (torch.rand(n, 1, 1, width, generator=generator, device=device) < column_density).float()
    marks = torch.maximum(specks, scratches.expand_as(l))
    bright = torch.rand(n, 1, 1, 1, generator=generator, device=device) < 0.5
    target = torch.where(bright, torch.full_like(l, 95.0), torch.full_like(l, 8.0))
    return l + marks * 0.85 * (target - l)


def dct_matrix(size: int = JPEG_BLOCK) -> torch.Tensor:
    """The orthonormal DCT-II matrix: coefficients = D @ block @ D.T."""
    k = torch.arange(size, dtype=torch.float32)[:, None]
    i = torch.arange(size, dtype=torch.float32)[None, :]
    matrix = torch.cos(math.pi * (2 * i + 1) * k / (2 * size)) * math.sqrt(2 / size)
    matrix[0] /= math.sqrt(2)
    return matrix


def jpeg_blocking(l: torch.Tensor, effects: ScanEffects, generator: torch.Generator) -> torch.Tensor:
    """8x8 DCT quantisation as a JPEG encoder does it: blocking and ringing at random quality."""
    n, _, height, width = l.shape
    pad_h, pad_w = -height % JPEG_BLOCK, -width % JPEG_BLOCK
    padded = F.pad(l, (0, pad_w, 0, pad_h), mode="replicate")
    # L in [0, 100] -> 8-bit luma units, where the standard table applies.
    pixels = padded * 2.55 - 128.0
    blocks = pixels.reshape(n, 1, (height + pad_h) // 8, 8, (width + pad_w) // 8, 8).transpose(3, 4)
    d = dct_matrix().to(l.device)
    coefficients = d @ blocks @ d.T
    scale = _uniform(n, effects.jpeg_scale, generator, l.device).reshape(n, 1, 1, 1, 1, 1)
    step = (scale * JPEG_LUMA.to(l.device)).clamp(min=1)
    quantised = torch.round(coefficients / step) * step
    restored = (d.T @ quantised @ d).transpose(3, 4).reshape(padded.shape)
    return ((restored + 128.0) / 2.55)[..., :height, :width]


DEGRADATIONS = {
    "fade": fade,
    "exposure": uneven_exposure,
    "blur": blur,
    "grain": grain,
    "dust": dust_and_scratches,
    "jpeg": jpeg_blocking,
}


def scan_like(
    l: torch.Tensor, effects: ScanEffects, generator: torch.Generator
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(B, 1, H, W) L in [0, 100] -> degraded L in [0, 100], and which images got each effect (B,).

    Effects are drawn independently per image in a print's order (fading and exposure of the
    print, the lens's blur, grain, then dust on the print and the scanner's JPEG).
    """
    out = l
    applied: dict[str, torch.Tensor] = {}
    for name, degrade in DEGRADATIONS.items():
        chosen = torch.rand(l.shape[0], generator=generator, device=l.device) < effects.probability(name)
        applied[name] = chosen
        if chosen.any():
            changed = degrade(out[chosen], effects, generator).clamp(0, 100)
            out = out.clone()
            out[chosen] = changed
    return out, applied
