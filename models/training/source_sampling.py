"""Training crops labelled by source, and a sampler that gives chosen sources a fixed share.

The training folders are far from equal in size and in what they show: ``utkface`` and ``ccp``
are the only photos of people, and ``ccp`` (people on streets, where the shipped model paints
washes) is a sixth the size of the face crops. Views are drawn so that each named source makes
up its given share of the samples, the other sources sharing the rest in proportion to size.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from models.evaluation import source_of
from models.training.augment import Jitter, training_view
from models.training.dataset import image_files, lab_crop
from models.training.scan_augment import ScanEffects
from models.training.targets import nearest_bins


def parse_shares(items: list[str]) -> dict[str, float]:
    """["utkface=0.2", "ccp=0.15"] -> {"utkface": 0.2, "ccp": 0.15}, shares summing below 1."""
    shares: dict[str, float] = {}
    for item in items:
        name, _, value = item.partition("=")
        if not name or not value:
            raise ValueError(f"expected SOURCE=SHARE, got {item!r}")
        shares[name] = float(value)
    if any(v < 0 for v in shares.values()) or sum(shares.values()) >= 1:
        raise ValueError(f"source shares must be non-negative and sum below 1: {shares}")
    return shares


def load_sourced_crops(root: Path, size: int, cache: Path | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(N, size, size, 3) float16 Lab crops of every readable photo under ``root``, the index of
    each one's source (N,), and the source names; read once into ``cache`` when one is named."""
    if cache is not None and cache.exists():
        saved = np.load(cache)
        return saved["crops"], saved["source"], [str(s) for s in saved["names"]]
    files = image_files(root)
    if not files:
        raise SystemExit(f"no images found under {root}")
    names = sorted({source_of(f, root) for f in files})
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        loaded = list(pool.map(lab_crop, [(f, size) for f in files], chunksize=64))
    kept = [(crop, names.index(source_of(f, root))) for f, crop in zip(files, loaded) if crop is not None]
    crops = np.stack([c for c, _ in kept])
    source = np.array([s for _, s in kept], dtype=np.int16)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, crops=crops, source=source, names=np.array(names))
    return crops, source, names


def sampling_probabilities(source: np.ndarray, names: list[str], shares: dict[str, float]) -> np.ndarray:
    """Per-photo probabilities (N,): each source in ``shares`` gets its share of the draws, the
    others ``1 - sum(shares)`` in proportion to their sizes; within a source, all photos alike."""
    unknown = set(shares) - set(names)
    if unknown:
        raise ValueError(f"no training photos from {sorted(unknown)}; sources are {names}")
    counts = np.bincount(source, minlength=len(names)).astype(np.float64)
    named = np.array([name in shares for name in names])
    rest = counts * ~named
    source_share = np.where(named, [shares.get(name, 0.0) for name in names], 0.0)
    source_share = source_share + (1 - sum(shares.values())) * rest / max(rest.sum(), 1.0)
    per_photo = source_share / np.maximum(counts, 1.0)
    probabilities: np.ndarray = per_photo[source] / per_photo[source].sum()
    return probabilities


class SourcedViews:
    """Batches of training views of ``crops`` (N, 3, S, S), each photo drawn with its
    ``probabilities`` (``sampling_probabilities``), L degraded like a scan where ``scan`` draws it;
    on the crops' device."""

    def __init__(
        self,
        crops: torch.Tensor,
        probabilities: np.ndarray,
        size: int,
        scan: ScanEffects | None,
        generator: torch.Generator,
    ) -> None:
        self.crops = crops
        self.probabilities = torch.from_numpy(probabilities).to(crops.device)
        self.size = size
        self.jitter = Jitter()
        self.scan = scan
        self.generator = generator

    def batch(self, count: int, scan: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Network input (L - 50) and target ab at 1/4 resolution of ``count`` drawn views."""
        index = torch.multinomial(self.probabilities, count, replacement=True, generator=self.generator)
        return training_view(self.crops[index], self.size, self.jitter, self.generator, self.scan if scan else None)

    def bin_counts(self, bins: torch.Tensor, views: int = 4096, batch: int = 256) -> np.ndarray:
        """How often each bin is the nearest to a target pixel, over ``views`` views drawn as
        training draws them (so the rebalancing weights follow the shares)."""
        counts = torch.zeros(len(bins), dtype=torch.float64, device=self.crops.device)
        for _ in range(max(1, views // batch)):
            _, ab = self.batch(batch, scan=False)
            _, nearest = nearest_bins(ab.permute(0, 2, 3, 1).reshape(-1, 2), bins.to(ab.device), 1)
            counts += torch.bincount(nearest.flatten(), minlength=len(bins)).double()
        result: np.ndarray = counts.cpu().numpy()
        return result
