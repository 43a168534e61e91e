"""Frozen-encoder features of augmented training views, computed once and held in memory.

While the encoder is frozen its features of a given view never change, so the decoder can be
trained on a cache of them: one encoder pass per view instead of one per step, which is what
makes the first training stage affordable on a CPU. Features and targets are kept in float16.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from models.training.augment import Jitter, training_view
from models.training.encoder import LiteEncoder
from models.training.scan_augment import ScanEffects


@dataclass(frozen=True)
class Views:
    """``views`` augmented views of each of ``crops`` at ``out_size``, drawn with ``generator``."""

    crops: torch.Tensor
    views: int
    out_size: int
    jitter: Jitter
    generator: torch.Generator
    scan: ScanEffects | None = None  # L degraded like a scan on the views it draws

    def __len__(self) -> int:
        return len(self.crops) * self.views

    def draw(self, picks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A fresh view of each picked crop: network input and target ab (``training_view``)."""
        return training_view(self.crops[picks], self.out_size, self.jitter, self.generator, self.scan)


class FeatureCache:
    """``views`` augmented views of every training crop: encoder features and target ab."""

    def __init__(self, features: list[np.ndarray], targets: np.ndarray) -> None:
        self.features = features
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    @classmethod
    @torch.no_grad()
    def build(cls, encoder: LiteEncoder, views: Views, batch: int = 64) -> FeatureCache:
        encoder.eval()
        total = len(views)
        probe = encoder(torch.zeros(1, 1, views.out_size, views.out_size))
        features = [np.empty((total, *f.shape[1:]), np.float16) for f in probe]
        targets = np.empty((total, 2, views.out_size // 4, views.out_size // 4), np.float16)
        started, written = time.time(), 0
        for _ in range(views.views):
            order = torch.randperm(len(views.crops), generator=views.generator)
            for start in range(0, len(views.crops), batch):
                l_in, ab = views.draw(order[start : start + batch])
                end = written + len(l_in)
                for store, feature in zip(features, encoder(l_in)):
                    store[written:end] = feature.numpy()
                targets[written:end] = ab.numpy()
                written = end
            print(f"cached {written} of {total} views after {time.time() - started:.0f}s", flush=True)
        return cls(features, targets)

    def batch(self, index: np.ndarray) -> tuple[list[torch.Tensor], torch.Tensor]:
        index = np.sort(index)  # sequential reads from the big arrays
        features = [torch.from_numpy(f[index]).float() for f in self.features]
        return features, torch.from_numpy(self.targets[index]).float()


class LiveFeatures:
    """The same views as ``FeatureCache``, drawn fresh for every batch and encoded on the spot.

    Where the encoder is cheap to run (a GPU), caching buys nothing and fresh views are
    better augmentation; ``len`` still counts ``views`` per crop so an epoch means the same.
    """

    def __init__(self, encoder: LiteEncoder, views: Views, autocast: Callable[[], torch.autocast]) -> None:
        self.encoder = encoder.eval()
        self.views = views
        self.autocast = autocast

    def __len__(self) -> int:
        return len(self.views)

    @torch.no_grad()
    def batch(self, index: np.ndarray) -> tuple[list[torch.Tensor], torch.Tensor]:
        crops = self.views.crops
        l_in, ab = self.views.draw(torch.from_numpy(index % len(crops)).to(crops.device))
        with self.autocast():
            features = self.encoder(l_in)
        return [f.float() for f in features], ab
