"""Train a PretrainedColorNet: decoder on a frozen ImageNet encoder, then end-to-end fine-tuning.

    python -m models.training.train_pretrained --data ../shared/data/train --val ../shared/data/val \\
        --out runs/colorize-lite --encoder lite0 --size 128 --views 3 --decoder-epochs 6 \\
        --finetune-seconds 9000

Stage 1 trains the decoder alone on features of augmented views of the frozen encoder (cached
once on a CPU, drawn fresh per batch on a GPU: ``feature_cache``); stage 2 unfreezes the encoder
at ``--encoder-lr-scale`` times the decoder's learning rate and trains on fresh views, the encoder
kept in inference mode (running normalisation statistics, no stochastic depth) so its features
stay those the decoder learnt from, for a fixed number of steps (or as many as
``--finetune-seconds`` or ``--finish-within`` allow at the measured speed; the count is logged
so ``--finetune-steps`` repeats it). On a GPU (``--device``) the network runs in bfloat16. After
each stage-1 epoch and every ``--eval-every`` stage-2 steps the whole network is scored on
held-out photos (``selection``); the best score's weights are kept in ``weights.pt``, not the
last ones: by rebalanced AuC alone, or with ``--val-per-source`` by PSNR against grey on each
source beside it (``selection.SourceScore``). A rerun with the same ``--out`` resumes from
``checkpoint.pt``; ``--stage2-from`` starts a new run at stage 2 from another run's ``weights.pt``.

What the views show: ``--share`` gives named sources (the photos of people) a fixed share of
stage 2's views (``source_sampling``), ``--scan-share`` degrades L like an old scan on part of
the views of both stages (``scan_augment``), and ``--rebalance-mix`` sets how strongly the loss
is rebalanced towards rare colours (lambda; the bin statistics follow the views as drawn);
``--semantic-weight`` adds the semantic term to stage 2's loss (``semantic``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.training.augment import Jitter
from models.training.feature_cache import FeatureCache, LiveFeatures, Views
from models.training.scan_augment import ScanEffects
from models.training.selection import Selection, SelectionSet, SourceSelection, selection_value
from models.training.semantic import SemanticTerm
from models.training.source_sampling import SourcedViews, load_sourced_crops, parse_shares, sampling_probabilities
from models.training.targets import rebalancing_weights, soft_encode_sparse, sparse_rebalanced_cross_entropy
from models.training.train import Autocast, mixed_precision, pick_device
from models.training.unet import DecoderWidths, PretrainedColorNet
from shared.colour.bins import ab_bins

WARMUP_STEPS = 100

# ab targets -> the 5 nearest bins of each pixel and their weights (soft_encode_sparse, bins bound).
TargetsOf = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def cosine(step: int, total: int, peak: float, warmup: int = WARMUP_STEPS) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class Run:
    """A run folder: log, bin statistics, best weights and the resumable checkpoint."""

    def __init__(self, out: Path, args: argparse.Namespace) -> None:
        self.out = out
        self.args = args
        out.mkdir(parents=True, exist_ok=True)
        self.started = time.time()
        self.best = float("-inf")
        self.state: dict[str, Any] = {"stage": 1, "step": 0, "total_steps": None, "best": self.best}
        self.weights = torch.ones(1)  # per-bin rebalancing weights, set from the training data
        self.eval_seconds = 30.0  # one selection pass, measured at each pass
        self.autocast: Autocast = mixed_precision(torch.device("cpu"))

    def log(self, record: dict[str, Any]) -> None:
        record = {**record, "seconds": round(time.time() - self.started, 1)}
        with (self.out / "log.jsonl").open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)

    def keep_if_best(
        self, model: PretrainedColorNet, value: float, score: dict[str, float], where: dict[str, Any]
    ) -> bool:
        if value <= self.best:
            return False
        self.best = self.state["best"] = value
        torch.save(
            {
                "model": model.state_dict(),
                "config": model.config,
                "score": score,
                "at": where,
                "args": {k: str(v) for k, v in vars(self.args).items()},
            },
            self.out / "weights.pt",
        )
        return True

    def save(self, model: PretrainedColorNet, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> None:
        torch.save(
            {
                **self.state,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(),
            },
            self.out / "checkpoint.pt",
        )

    def start_stage2_from(self, model: PretrainedColorNet, weights: Path) -> None:
        """Begin with stage 2 from an earlier run's kept weights (scored again before the
        first step, since this run's selection may differ from that run's)."""
        saved = torch.load(weights, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["model"])
        self.state.update(stage=2, step=0, total_steps=None)
        print(f"stage 2 from {weights}", flush=True)

    def resume(self, model: PretrainedColorNet, generator: torch.Generator) -> dict[str, Any] | None:
        path = self.out / "checkpoint.pt"
        if not path.exists():
            return None
        saved = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["model"])
        generator.set_state(saved["generator"])
        self.state = {k: saved[k] for k in ("stage", "step", "total_steps", "best")}
        self.best = self.state["best"]
        print(f"resumed in stage {self.state['stage']} at step {self.state['step']}", flush=True)
        optimizer_state: dict[str, Any] = saved["optimizer"]
        return optimizer_state


def selection_of(args: argparse.Namespace) -> Selection:
    """Rebalanced AuC of ``--val-limit`` photos, or with ``--val-per-source`` PSNR against grey per
    source beside it (``SourceScore.value``), which painting every photo cannot win."""
    if args.val_per_source:
        return SourceSelection(args.val, args.val_per_source)
    return SelectionSet(args.val, args.val_limit)


def evaluate(run: Run, model: PretrainedColorNet, selection: Selection, where: dict[str, Any]) -> None:
    started = time.time()
    value, score = selection_value(selection, model, run.args.size, run.args.selection_temperature, run.args.auc_weight)
    run.eval_seconds = time.time() - started
    kept = run.keep_if_best(model, value, score, where)
    run.log({**where, **{f"val_{k}": round(v, 3) for k, v in score.items()}, "kept": kept})


def train_decoder(
    run: Run,
    model: PretrainedColorNet,
    crops: torch.Tensor,
    targets_of: TargetsOf,
    selection: Selection,
    generator: torch.Generator,
    jitter: Jitter,
    optimizer_state: dict[str, Any] | None,
) -> None:
    """Stage 1: the decoder on cached features of the frozen encoder."""
    args = run.args
    views = Views(crops, args.views, args.size, jitter, generator, scan_effects(args))
    cache: FeatureCache | LiveFeatures
    if crops.device.type == "cpu":
        cache = FeatureCache.build(model.encoder, views)
    else:
        cache = LiveFeatures(model.encoder, views, run.autocast)
    optimizer = torch.optim.AdamW(model.decoder.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    if optimizer_state:
        optimizer.load_state_dict(optimizer_state)
    steps_per_epoch = len(cache) // args.batch_size
    total = steps_per_epoch * args.decoder_epochs
    rng = np.random.default_rng(args.seed + run.state["step"])
    model.decoder.train()
    loss_sum, loss_steps = 0.0, 0
    while run.state["step"] < total:
        step = run.state["step"]
        features, ab = cache.batch(rng.integers(0, len(cache), args.batch_size))
        near, weights = targets_of(ab.to(crops.device))
        for group in optimizer.param_groups:
            group["lr"] = cosine(step, total, args.lr)
        with run.autocast():
            logits = model.decoder([f.to(crops.device) for f in features])
        loss = sparse_rebalanced_cross_entropy(logits, near, weights, run.weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum, loss_steps = loss_sum + loss.item(), loss_steps + 1
        run.state["step"] = step + 1
        if run.state["step"] % steps_per_epoch == 0:
            where = {
                "stage": 1,
                "step": run.state["step"],
                "epoch": run.state["step"] // steps_per_epoch,
                "samples": run.state["step"] * args.batch_size,
                "train_loss": round(loss_sum / loss_steps, 4),
            }
            evaluate(run, model, selection, where)
            loss_sum, loss_steps = 0.0, 0
            run.save(model, optimizer, generator)
    run.state.update(stage=2, step=0, total_steps=None)
    run.save(model, optimizer, generator)


def finetune(
    run: Run,
    model: PretrainedColorNet,
    sampler: SourcedViews,
    targets_of: TargetsOf,
    selection: Selection,
    optimizer_state: dict[str, Any] | None,
) -> None:
    """Stage 2: encoder and decoder together, the encoder at ``--encoder-lr-scale`` times the decoder's rate."""
    args = run.args
    semantic = None
    if args.semantic_weight > 0:
        semantic = SemanticTerm.pretrained(args.semantic_classifier).to(sampler.crops.device)
    groups = [
        {"params": model.encoder.parameters(), "scale": args.encoder_lr_scale},
        {"params": model.decoder.parameters(), "scale": 1.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=args.finetune_lr, weight_decay=args.weight_decay)
    if optimizer_state and run.state["step"] > 0:
        optimizer.load_state_dict(optimizer_state)
    # The decoder learnt from features of the encoder in inference mode (stage 1's cache);
    # batch statistics of small batches of grey views and stochastic depth would shift them.
    model.encoder_in_inference_mode = not args.encoder_batch_statistics
    model.train()
    total = run.state["total_steps"] or args.finetune_steps
    # The step count of a time budget is set from steps timed after a warm-up of this process,
    # so a run resumed before the count was logged times its own steps.
    timed_from_step = run.state["step"] + 10
    timing_from = stage_started = time.time()
    loss_sum, loss_steps = 0.0, 0
    while total is None or run.state["step"] < total:
        step = run.state["step"]
        if total is None and step == timed_from_step:
            timing_from = time.time()
        if total is None and step == timed_from_step + 30:
            per_step = (time.time() - timing_from) / 30
            if args.finish_within:
                left = args.finish_within - (time.time() - run.started) - run.eval_seconds
            else:
                left = args.finetune_seconds - (time.time() - stage_started)
            evaluations = left / (args.eval_every * per_step)
            total = run.state["total_steps"] = step + int((left - evaluations * run.eval_seconds) / per_step)
            run.log({"stage": 2, "seconds_per_step": round(per_step, 3), "total_steps": total})
        l_in, ab = sampler.batch(args.batch_size)
        near, weights = targets_of(ab)
        for group in optimizer.param_groups:
            group["lr"] = cosine(step, total or 10**9, args.finetune_lr) * group["scale"]
        with run.autocast():
            logits = model(l_in)
            loss = sparse_rebalanced_cross_entropy(logits, near, weights, run.weights)
            if semantic is not None:
                loss = loss + args.semantic_weight * semantic(l_in, logits, ab)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum, loss_steps = loss_sum + loss.item(), loss_steps + 1
        run.state["step"] = step + 1
        last = total is not None and run.state["step"] >= total
        if run.state["step"] % args.eval_every == 0 or last:
            where = {
                "stage": 2,
                "step": run.state["step"],
                "samples": run.state["step"] * args.batch_size,
                "train_loss": round(loss_sum / loss_steps, 4),
            }
            evaluate(run, model, selection, where)
            loss_sum, loss_steps = 0.0, 0
            run.save(model, optimizer, sampler.generator)
    run.state["stage"] = 3
    run.save(model, optimizer, sampler.generator)


def scan_effects(args: argparse.Namespace) -> ScanEffects | None:
    return ScanEffects().scaled(args.scan_share) if args.scan_share > 0 else None


def train(args: argparse.Namespace) -> Path:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    run = Run(args.out, args)
    run.autocast = mixed_precision(device)
    crops_np, source, names = load_sourced_crops(args.data, args.source_size, args.crops_cache)
    if args.max_images and args.max_images < len(crops_np):
        kept = np.linspace(0, len(crops_np) - 1, args.max_images).astype(np.int64)
        crops_np, source = crops_np[kept], source[kept]
    crops = torch.from_numpy(crops_np).permute(0, 3, 1, 2).contiguous().to(device)
    selection = selection_of(args)
    print(
        f"{len(crops)} training crops, {len(selection.originals)} selection photos "
        f"after {time.time() - run.started:.0f}s",
        flush=True,
    )

    bins = torch.from_numpy(ab_bins().copy()).to(device)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    probabilities = sampling_probabilities(source, names, parse_shares(args.share))
    sampler = SourcedViews(crops, probabilities, args.size, scan_effects(args), generator)
    counts = sampler.bin_counts(bins)
    weights_np, smoothed = rebalancing_weights(counts, ab_bins().astype(np.float64), args.rebalance_mix)
    np.savez(args.out / "bin_stats.npz", counts=counts, smoothed=smoothed, weights=weights_np)
    run.weights = torch.from_numpy(weights_np).float().to(device)

    def targets_of(ab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return soft_encode_sparse(ab, bins)

    model = PretrainedColorNet(args.encoder, DecoderWidths(*args.decoder_widths)).to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    optimizer_state = run.resume(model, generator)
    if args.stage2_from and run.state["stage"] == 1 and run.state["step"] == 0:
        run.start_stage2_from(model, args.stage2_from)
        evaluate(run, model, selection, {"stage": 2, "step": 0, "samples": 0, "train_loss": None})
    jitter = Jitter()
    if run.state["stage"] == 1:
        if run.state["step"] == 0:
            evaluate(run, model, selection, {"stage": 0, "step": 0, "samples": 0, "train_loss": None})
        train_decoder(run, model, crops, targets_of, selection, generator, jitter, optimizer_state)
        optimizer_state = None
    if run.state["stage"] == 2:
        finetune(run, model, sampler, targets_of, selection, optimizer_state)
    weights_path: Path = args.out / "weights.pt"
    return weights_path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of colour training photos")
    parser.add_argument("--val", type=Path, required=True, help="folder of held-out colour photos (checkpoint choice)")
    parser.add_argument("--val-limit", type=int, default=250, help="evenly spread photos of --val scored")
    parser.add_argument("--out", type=Path, required=True, help="run folder: log, bin statistics, weights, checkpoint")
    parser.add_argument("--encoder", default="lite0", choices=["lite0", "lite1", "lite2"])
    parser.add_argument("--decoder-widths", type=int, nargs=3, default=list(asdict(DecoderWidths()).values()))
    parser.add_argument("--source-size", type=int, default=176, help="square crop kept per photo, views drawn from it")
    parser.add_argument("--size", type=int, default=128, help="side of the training views (the input size served)")
    parser.add_argument("--views", type=int, default=3, help="augmented views per photo in the stage-1 cache")
    parser.add_argument("--decoder-epochs", type=int, default=6, help="stage-1 passes over the cached views")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="stage-1 peak learning rate (decoder)")
    parser.add_argument("--finetune-lr", type=float, default=3e-4, help="stage-2 peak learning rate of the decoder")
    parser.add_argument("--encoder-lr-scale", type=float, default=0.1, help="encoder rate relative to the decoder's")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--finetune-steps", type=int, help="stage-2 optimiser steps (0 skips stage 2)")
    budget.add_argument("--finetune-seconds", type=float, help="stage-2 wall-clock budget")
    budget.add_argument(
        "--finish-within", type=float, help="wall-clock budget of the whole run: stage 2 gets what stage 1 leaves"
    )
    parser.add_argument(
        "--encoder-batch-statistics",
        action="store_true",
        help="stage 2: normalise the encoder by batch statistics (and drop blocks) instead of its running ones",
    )
    parser.add_argument("--eval-every", type=int, default=500, help="stage-2 steps between selection passes")
    parser.add_argument("--crops-cache", type=Path, help=".npz keeping the loaded crops between runs")
    parser.add_argument(
        "--rebalance-mix", type=float, default=0.5, help="lambda: share of uniform in the rebalanced prior (1: none)"
    )
    parser.add_argument("--share", nargs="*", default=[], help="SOURCE=SHARE of stage 2's views (utkface=0.2 ccp=0.15)")
    parser.add_argument("--scan-share", type=float, default=0.0, help="scale of every scan effect's probability")
    parser.add_argument(
        "--val-per-source", type=int, default=0, help="select by PSNR per source and AuC on N photos of each"
    )
    parser.add_argument("--auc-weight", type=float, default=0.2, help="with --val-per-source: dB per AuC point")
    parser.add_argument("--selection-temperature", type=float, default=0.38)
    parser.add_argument(
        "--semantic-weight",
        type=float,
        default=0.0,
        help="stage 2: weight of the semantic term (models.training.semantic)",
    )
    parser.add_argument("--semantic-classifier", default="lite0", choices=["lite0", "lite1", "lite2"])
    parser.add_argument(
        "--max-images", type=int, default=0, help="use N evenly spread photos (comparisons, smoke runs)"
    )
    parser.add_argument(
        "--stage2-from",
        type=Path,
        help="weights.pt of an earlier run: skip stage 1 and fine-tune these weights end to end",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (a GPU where there is one)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    print(f"weights: {train(parse_args(argv))}")


if __name__ == "__main__":
    main()
