"""Training targets of Zhang et al.: soft-encoded bins and class-rebalancing weights."""

from __future__ import annotations

import numpy as np
import torch

NEIGHBOURS = 5
SIGMA = 5.0  # ab units, both for soft encoding and for smoothing the bin distribution
MIX_UNIFORM = 0.5  # lambda in the paper


def nearest_bins(ab: torch.Tensor, bins: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ab (P, 2), bins (Q, 2) -> squared distances and indices of the k nearest bins, (P, k) each."""
    d2 = torch.cdist(ab, bins).square()
    values, indices = torch.topk(d2, k, dim=1, largest=False)
    return values, indices


def soft_encode(ab: torch.Tensor, bins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ab (B, 2, h, w) -> soft targets (B, Q, h, w) over the 5 nearest bins, and the nearest bin (B, h, w)."""
    batch, _, height, width = ab.shape
    flat = ab.permute(0, 2, 3, 1).reshape(-1, 2).float()
    d2, idx = nearest_bins(flat, bins, NEIGHBOURS)
    weights = torch.exp(-d2 / (2 * SIGMA**2))
    weights = weights / weights.sum(dim=1, keepdim=True)
    targets = torch.zeros(flat.shape[0], bins.shape[0], device=ab.device)
    targets.scatter_(1, idx, weights)
    targets = targets.reshape(batch, height, width, -1).permute(0, 3, 1, 2)
    return targets, idx[:, 0].reshape(batch, height, width)


def soft_encode_sparse(ab: torch.Tensor, bins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ab (B, 2, h, w) -> the 5 nearest bins of each pixel (B, 5, h, w), nearest first, and their
    Gaussian weights (B, 5, h, w): ``soft_encode`` without the 313-channel target tensor."""
    batch, _, height, width = ab.shape
    flat = ab.permute(0, 2, 3, 1).reshape(-1, 2).float()
    d2, idx = nearest_bins(flat, bins, NEIGHBOURS)
    weights = torch.exp(-d2 / (2 * SIGMA**2))
    weights = weights / weights.sum(dim=1, keepdim=True)

    def to_map(values: torch.Tensor) -> torch.Tensor:
        return values.reshape(batch, height, width, NEIGHBOURS).permute(0, 3, 1, 2)

    return to_map(idx), to_map(weights)


def sparse_rebalanced_cross_entropy(
    logits: torch.Tensor, bins_near: torch.Tensor, bin_weights: torch.Tensor, rebalance: torch.Tensor
) -> torch.Tensor:
    """``rebalanced_cross_entropy`` with targets from ``soft_encode_sparse``: the same value,
    gathering the log-probabilities of the 5 target bins instead of weighting all 313."""
    log_probs = torch.log_softmax(logits.float(), dim=1)
    per_pixel = -(bin_weights * log_probs.gather(1, bins_near)).sum(dim=1)
    return (per_pixel * rebalance[bins_near[:, 0]]).mean()


def rebalancing_weights(
    counts: np.ndarray, bins: np.ndarray, mix_uniform: float = MIX_UNIFORM
) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin loss weights from empirical bin counts, as in the paper.

    The distribution is smoothed with a Gaussian (sigma 5) over the bin centres, mixed with
    uniform by lambda = ``mix_uniform`` (0.5 in the paper; 1 weighs every pixel alike), inverted,
    and normalised so its expectation under the smoothed distribution is 1. Returns (weights,
    smoothed distribution).
    """
    p = counts / counts.sum()
    d2 = ((bins[:, None, :] - bins[None, :, :]) ** 2).sum(-1)
    kernel = np.exp(-d2 / (2 * SIGMA**2))
    smoothed = kernel @ p
    smoothed /= smoothed.sum()
    weights = 1.0 / ((1 - mix_uniform) * smoothed + mix_uniform / len(bins))
    weights /= (smoothed * weights).sum()
    return weights, smoothed


def rebalanced_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, nearest: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Multinomial cross-entropy per pixel, weighted by the rebalancing weight of its nearest bin."""
    log_probs = torch.log_softmax(logits.float(), dim=1)
    per_pixel = -(targets * log_probs).sum(dim=1)
    return (per_pixel * weights[nearest]).mean()
