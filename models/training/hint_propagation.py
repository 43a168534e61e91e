"""Hints carried to the cells that look like theirs: attention from every cell to the hinted ones.

Convolutions reach only as far as their receptive field and must learn from many photos what
"the same region" means. The base network's stride-4 features already say what each cell
shows, so each cell here attends to the hinted cells whose features match its own (query and
key projections of the features, learnt), less a learnt penalty for distance, and against a
learnt "none of them" option: a cell like no hint keeps its own colours. What it gathers is
a weighted mean of the hinted colours and how much weight went to hints at all.

In training the scores are taken only towards the hinted cells (a few dozen of 1,600), which
is the same sum, since every other cell's weight is zero, at a thirtieth of the cost; the
exported graph keeps the dense form, which needs no data-dependent shapes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

MASKED = 1e4  # score taken from cells without a hint


class HintAttention(nn.Module):
    """(features (N, C, h, w), hinted ab (N, 2, h, w), occupied (N, 1, h, w)) ->
    (sum of attended ab (N, 2, h, w), weight on hints (N, 1, h, w))."""

    def __init__(self, feature_channels: int, key_width: int = 32) -> None:
        super().__init__()
        self.query = nn.Conv2d(feature_channels, key_width, 1)
        self.key = nn.Conv2d(feature_channels, key_width, 1)
        self.scale = 1.0 / math.sqrt(key_width)
        # Squared distance in units of the grid's side: at first, a hint a third of the photo
        # away loses one unit of score.
        self.log_distance_penalty = nn.Parameter(torch.tensor(math.log(9.0)))
        self.none_score = nn.Parameter(torch.tensor(3.0))  # at first most cells keep their own colours

    def forward(
        self, features: torch.Tensor, ab: torch.Tensor, occupied: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            return self.towards_hinted_cells(features, ab, occupied)
        return self.towards_every_cell(features, ab, occupied)

    def towards_every_cell(
        self, features: torch.Tensor, ab: torch.Tensor, occupied: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, _, height, width = features.shape
        query = self.query(features).flatten(2)  # (N, d, P)
        key = self.key(features).flatten(2)
        scores = torch.bmm(query.transpose(1, 2), key) * self.scale  # (N, P from, P to)
        scores = scores - torch.exp(self.log_distance_penalty) * self._squared_distances(height, width, features)
        hinted = occupied.flatten(2)  # (N, 1, P to)
        scores = scores + (hinted - 1.0) * MASKED
        top = torch.maximum(scores.amax(dim=2, keepdim=True), self.none_score)
        weights = torch.exp(scores - top) * hinted
        total = weights.sum(dim=2, keepdim=True) + torch.exp(self.none_score - top)
        weights = weights / total
        gathered = torch.bmm(weights, ab.flatten(2).transpose(1, 2))  # (N, P, 2)
        attended = gathered.transpose(1, 2).reshape(batch, 2, height, width)
        on_hints = weights.sum(dim=2).reshape(batch, 1, height, width)
        return attended, on_hints

    def towards_hinted_cells(
        self, features: torch.Tensor, ab: torch.Tensor, occupied: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The same as ``towards_every_cell``, with scores only towards each photo's hinted cells
        (padded to the batch's largest count by cells of weight 0)."""
        batch, _, height, width = features.shape
        hinted_all = occupied.flatten(2)  # (N, 1, P)
        most = max(int((hinted_all > 0).sum(dim=2).max()), 1)
        hinted, cells = torch.topk(hinted_all, most, dim=2)  # (N, 1, K)
        query = self.query(features).flatten(2)  # (N, d, P)
        key = torch.gather(self.key(features).flatten(2), 2, cells.expand(-1, query.shape[1], -1))  # (N, d, K)
        scores = torch.bmm(query.transpose(1, 2), key) * self.scale  # (N, P, K)
        distances = self._squared_distances(height, width, features)  # (P, P)
        towards = distances[:, cells[:, 0]].permute(1, 0, 2)  # (N, P, K)
        scores = scores - torch.exp(self.log_distance_penalty) * towards
        scores = scores + (hinted - 1.0) * MASKED
        top = torch.maximum(scores.amax(dim=2, keepdim=True), self.none_score)
        weights = torch.exp(scores - top) * hinted
        total = weights.sum(dim=2, keepdim=True) + torch.exp(self.none_score - top)
        weights = weights / total
        hinted_ab = torch.gather(ab.flatten(2), 2, cells.expand(-1, 2, -1))  # (N, 2, K)
        gathered = torch.bmm(weights, hinted_ab.transpose(1, 2))  # (N, P, 2)
        attended = gathered.transpose(1, 2).reshape(batch, 2, height, width)
        on_hints = weights.sum(dim=2).reshape(batch, 1, height, width)
        return attended, on_hints

    @staticmethod
    def _squared_distances(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        """(P, P) squared distances between cell centres, in units of the grid's side."""
        rows = torch.arange(height, dtype=like.dtype, device=like.device) / height
        columns = torch.arange(width, dtype=like.dtype, device=like.device) / width
        grid_rows, grid_columns = torch.meshgrid(rows, columns, indexing="ij")
        centres = torch.stack([grid_rows.flatten(), grid_columns.flatten()], dim=1)  # (P, 2)
        norms = (centres * centres).sum(dim=1)
        return norms[:, None] + norms[None, :] - 2 * centres @ centres.T
