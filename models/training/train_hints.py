"""Train the hint branch on a frozen base model, then export the hint model.

    python -m models.training.train_hints --base models/colorize-lite --data ../shared/data/train \\
        --out runs/hints --minutes 30 --threads 1

Hints are simulated as Zhang et al. (2017) do (``models.hint_simulation``): a geometric-like
number of points per photo, each the mean true ab of a small patch. The loss is the
rebalanced cross-entropy of ``models.training.targets`` over every cell, with the hinted
cells weighted more, so the network both obeys a hint where it is and spreads it. Photos
without hints are not drawn: the branch's gate returns the base network's output exactly
for them (``models.training.hint_branch``), so they would teach it nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from models.hint_simulation import hint_count, simulate
from models.training.hint_branch import HintBranch, pooled_hints
from models.training.hint_cache import BaseClassifier, base_classifier, load_or_build
from models.training.hint_export import shipped_branch_state
from models.training.targets import rebalancing_weights, soft_encode_sparse
from shared.colour.bins import ab_bins

SIZE = 160
HINTED_CELL_WEIGHT = 4.0  # extra loss weight of a cell that holds a hint
VAL_HINTS = (1, 10)


def hint_batch(ab: np.ndarray, counts: list[int], rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Planes (B, 2, S, S) and (B, 1, S, S) of ``counts[i]`` simulated point hints on each true ab (B, 2, S, S)."""
    batch, _, height, width = ab.shape
    planes = np.zeros((batch, 2, height, width), np.float32)
    mask = np.zeros((batch, 1, height, width), np.float32)
    for i, count in enumerate(counts):
        for hint in simulate(ab[i].transpose(1, 2, 0).astype(np.float32), count, rng):
            planes[i, :, hint.row, hint.column] = hint.ab
            mask[i, 0, hint.row, hint.column] = 1.0
    return torch.from_numpy(planes), torch.from_numpy(mask)


class Objective:
    """Base logits plus the branch's offsets, scored against the truth."""

    def __init__(self, classifier: BaseClassifier, rebalance: np.ndarray) -> None:
        self.weight = torch.from_numpy(classifier.weight.astype(np.float32))
        self.bias = torch.from_numpy(classifier.bias.astype(np.float32))
        self.rebalance = torch.from_numpy(rebalance.astype(np.float32))
        self.bins = torch.from_numpy(ab_bins().astype(np.float32))

    def loss(
        self, branch: HintBranch, features: torch.Tensor, ab: torch.Tensor, planes: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        logits = F.conv2d(features, self.weight, self.bias) + branch(features, planes, mask)
        near, weights = soft_encode_sparse(F.avg_pool2d(ab, 4), self.bins)
        per_cell = -(weights * torch.log_softmax(logits, dim=1).gather(1, near)).sum(dim=1)
        occupied = pooled_hints(planes, mask)[:, 2]
        emphasis = 1.0 + HINTED_CELL_WEIGHT * occupied
        return (per_cell * self.rebalance[near[:, 0]] * emphasis).mean()


def tensors(cache: dict[str, np.ndarray], index: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    return torch.from_numpy(cache["features"][index].astype(np.float32)), cache["ab"][index].astype(np.float32)


def cell_weights(bin_stats: Path, rebalance_mix: float | None) -> np.ndarray:
    """Each bin's loss weight: the base's own rebalancing, or one of strength ``rebalance_mix``
    (lambda; 1 weighs every cell alike) from the base's bin counts. Once any hint is given the
    branch speaks for every cell of the photo, so a rebalanced loss teaches it to saturate the
    whole photo wherever a hint appears."""
    with np.load(bin_stats) as stats:
        if rebalance_mix is None:
            return np.asarray(stats["weights"])
        weights, _ = rebalancing_weights(stats["counts"], ab_bins(), rebalance_mix)
        return weights


def held_out(cache: dict[str, np.ndarray], count: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The cache split into photos to train on and ``count`` photos to score the branch with,
    drawn from the training photos so the validation photos stay unseen for evaluation."""
    order = np.random.default_rng(7).permutation(len(cache["ab"]))
    scored, trained = np.sort(order[:count]), np.sort(order[count:])
    return {k: v[trained] for k, v in cache.items()}, {k: v[scored] for k, v in cache.items()}


def validate(branch: HintBranch, objective: Objective, val: dict[str, np.ndarray], batch: int) -> dict[str, float]:
    """Held-out loss with 1 and with 10 hints per photo, hints from a fixed seed."""
    scores = {}
    branch.eval()
    with torch.no_grad():
        for count in VAL_HINTS:
            rng = np.random.default_rng(1234)
            total, photos = 0.0, len(val["ab"])
            for start in range(0, photos, batch):
                index = np.arange(start, min(start + batch, photos))
                features, ab = tensors(val, index)
                planes, mask = hint_batch(ab, [count] * len(index), rng)
                total += float(objective.loss(branch, features, torch.from_numpy(ab), planes, mask)) * len(index)
            scores[f"val_loss_{count}_hints"] = total / photos
    branch.train()
    return scores


def initial_branch_state(init: Path) -> dict[str, torch.Tensor]:
    """The branch to go on from: an earlier run's kept one, or the one inside a hint model."""
    if (init / "branch.pt").exists():
        state: dict[str, torch.Tensor] = torch.load(init / "branch.pt", map_location="cpu", weights_only=False)[
            "branch"
        ]
        return state
    return shipped_branch_state(init)


def train(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    base_file = args.base / "model.onnx"
    cache, val = held_out(
        load_or_build(
            args.out / "cache.npz", base_file, args.data, SIZE, args.images + args.val_images, args.threads, 0
        ),
        args.val_images,
    )
    deadline = time.monotonic() + args.minutes * 60
    classifier = base_classifier(onnx.load(str(base_file)))
    objective = Objective(classifier, cell_weights(args.base / "bin_stats.npz", args.rebalance_mix))
    branch = HintBranch(classifier.weight.shape[1], args.width)
    if args.init is not None:
        branch.load_state_dict(initial_branch_state(args.init))
    optimiser = torch.optim.AdamW(branch.parameters(), lr=args.lr, weight_decay=1e-4)
    rng = np.random.default_rng(args.seed)
    log = (args.out / "log.jsonl").open("w")
    step, started, best_loss = 0, time.monotonic(), float("inf")
    budget = deadline - started
    while step == 0 or time.monotonic() < deadline:  # at least one step, so a run always keeps a branch
        # Cosine decay over the time budget, since the number of steps is not known ahead.
        progress = (time.monotonic() - started) / budget
        for group in optimiser.param_groups:
            group["lr"] = args.lr * 0.5 * (1 + np.cos(np.pi * min(progress, 1.0)))
        index = np.sort(rng.choice(len(cache["ab"]), args.batch, replace=False))
        features, ab = tensors(cache, index)
        planes, mask = hint_batch(ab, [hint_count(rng) for _ in index], rng)
        loss = objective.loss(branch, features, torch.from_numpy(ab), planes, mask)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        step += 1
        if step % args.eval_every == 0 or time.monotonic() >= deadline:
            record: dict[str, Any] = {"step": step, "samples": step * args.batch, "train_loss": loss.item()}
            record |= validate(branch, objective, val, args.batch)
            record["seconds"] = round(time.monotonic() - started, 1)
            print(json.dumps(record), flush=True)
            log.write(json.dumps(record) + "\n")
            log.flush()
            if record["val_loss_10_hints"] < best_loss:  # keep the best held-out branch
                best_loss = record["val_loss_10_hints"]
                torch.save(
                    {"branch": branch.state_dict(), "config": branch.config, "record": record}, args.out / "branch.pt"
                )
    return {"steps": step, "samples": step * args.batch, "seconds": round(time.monotonic() - started, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train a hint branch on a frozen base model.")
    parser.add_argument(
        "--base", type=Path, required=True, help="model folder of the base (its model.onnx, bin_stats.npz)"
    )
    parser.add_argument("--data", type=Path, required=True, help="folder of training colour photos")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=30.0, help="training time, after the caches are built")
    parser.add_argument("--images", type=int, default=6000, help="training photos drawn from --data")
    parser.add_argument("--val-images", type=int, default=200, help="further photos of --data that score the branch")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument(
        "--rebalance-mix",
        type=float,
        default=None,
        help="lambda of the loss's rebalancing (default: the base's weights)",
    )
    parser.add_argument(
        "--init", type=Path, default=None, help="an earlier run, or a hint model's folder, whose branch to start from"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = train(args)
    options = {k: str(v) for k, v in vars(args).items()}
    (args.out / "summary.json").write_text(json.dumps({"options": options, **summary}, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
