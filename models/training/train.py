"""Train a ColorNet with Zhang et al.'s loss: rebalanced cross-entropy over 313 soft-encoded ab bins.

    python -m models.training.train --data ../shared/data/train --val ../shared/data/val --out runs/small

Seeded and resumable: a checkpoint is written after every epoch and a rerun with the same
``--out`` continues from it. ``--time-budget`` fixes the step count from the measured speed
of the first steps (the count is logged, so ``--steps`` reproduces the run exactly).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.training.dataset import load_lab_crops
from models.training.network import ColorNet, Widths
from models.training.targets import rebalanced_cross_entropy, rebalancing_weights, soft_encode
from shared.colour.bins import ab_bins

DOWNSAMPLE = 4
WARMUP_STEPS = 300

Autocast = Callable[[], torch.autocast]  # a fresh mixed-precision context per forward pass


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def mixed_precision(device: torch.device) -> Autocast:
    """bfloat16 autocast on a GPU; full precision on the CPU, where bfloat16 is slower."""
    if device.type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return lambda: torch.autocast("cpu", enabled=False)


def augment(crops: torch.Tensor, out_size: int, generator: torch.Generator) -> torch.Tensor:
    """Random scaled crop + horizontal flip of (B, 3, S, S) Lab crops, one affine resample."""
    batch = crops.shape[0]
    device = crops.device
    rand = torch.rand(batch, 3, generator=generator, device=device)
    fraction = 0.7 + 0.3 * rand[:, 0]  # side of the sampled region, relative to the crop
    shift_x = (2 * rand[:, 1] - 1) * (1 - fraction)
    shift_y = (2 * rand[:, 2] - 1) * (1 - fraction)
    flip = torch.where(torch.rand(batch, generator=generator, device=device) < 0.5, -1.0, 1.0)
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0] = fraction * flip
    theta[:, 0, 2] = shift_x
    theta[:, 1, 1] = fraction
    theta[:, 1, 2] = shift_y
    grid = F.affine_grid(theta, [batch, 3, out_size, out_size], align_corners=False)
    return F.grid_sample(crops.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def split_lab(lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) Lab -> network input L - 50 (B, 1, H, W) and target ab at 1/4 (B, 2, H/4, W/4)."""
    return lab[:, :1] - 50.0, F.avg_pool2d(lab[:, 1:], DOWNSAMPLE)


@torch.no_grad()
def bin_counts(crops: torch.Tensor, bins: torch.Tensor, batch: int = 512) -> np.ndarray:
    """How often each bin is the nearest one, over every target pixel of the training crops."""
    counts = torch.zeros(len(bins), dtype=torch.float64, device=bins.device)
    for start in range(0, len(crops), batch):
        _, ab = split_lab(crops[start : start + batch].float())
        _, nearest = soft_encode(ab, bins)
        counts += torch.bincount(nearest.flatten(), minlength=len(bins)).double()
    counted: np.ndarray = counts.cpu().numpy()
    return counted


def learning_rate(step: int, total: int, peak: float) -> float:
    if step < WARMUP_STEPS:
        return peak * (step + 1) / WARMUP_STEPS
    progress = (step - WARMUP_STEPS) / max(1, total - WARMUP_STEPS)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def validation_loss(
    model: ColorNet, crops: torch.Tensor, bins: torch.Tensor, weights: torch.Tensor, autocast: Autocast
) -> float:
    model.eval()
    losses: list[float] = []
    for start in range(0, len(crops), 256):
        l_in, ab = split_lab(crops[start : start + 256].float())
        targets, nearest = soft_encode(ab, bins)
        with autocast():
            logits = model(l_in)
        losses.append(rebalanced_cross_entropy(logits, targets, nearest, weights).item() * len(l_in))
    model.train()
    return sum(losses) / len(crops)


def to_device(crops: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()
    return tensor.to(device)  # float16 on every device: 1.8 GB for the whole training set


def train(args: argparse.Namespace) -> Path:
    torch.manual_seed(args.seed)
    device = pick_device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint_dir = args.checkpoint_dir or args.out
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    log_path, checkpoint_path = args.out / "log.jsonl", checkpoint_dir / "checkpoint.pt"
    started = time.time()

    crops = to_device(load_lab_crops(args.data, args.size), device)
    if args.max_images:
        crops = crops[: args.max_images]
    val = to_device(load_lab_crops(args.val, args.size), device) if args.val else None
    print(
        f"{len(crops)} training crops ({0 if val is None else len(val)} validation) on {device} "
        f"after {time.time() - started:.0f}s",
        flush=True,
    )

    bins = torch.from_numpy(ab_bins().copy()).to(device)
    counts = bin_counts(crops, bins)
    weights_np, smoothed = rebalancing_weights(counts, ab_bins().astype(np.float64))
    np.savez(args.out / "bin_stats.npz", counts=counts, smoothed=smoothed, weights=weights_np)
    weights = torch.from_numpy(weights_np).float().to(device)

    widths = Widths(*args.widths)
    model = ColorNet(widths).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=args.weight_decay)
    cuda = device.type == "cuda"
    if cuda:
        # torch's annotations of Module.to omit memory_format; unused where torch is not installed.
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload, unused-ignore]
        torch.backends.cudnn.benchmark = True
    autocast = mixed_precision(device)
    generator = torch.Generator(device=device).manual_seed(args.seed)

    step, total_steps = 0, args.steps
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"].to(generator.get_state().device))
        step, total_steps = state["step"], state["total_steps"]
        print(f"resumed at step {step} of {total_steps}", flush=True)

    steps_per_epoch = max(1, len(crops) // args.batch_size)
    loss_sum, loss_steps = torch.zeros((), device=device), 0
    timing_start = None
    loop_started = time.time()
    while total_steps is None or step < total_steps:
        if step == 20:
            if cuda:
                torch.cuda.synchronize()
            timing_start = time.time()
        if total_steps is None and timing_start is not None and step == 60:
            if cuda:
                torch.cuda.synchronize()
            per_step = (time.time() - timing_start) / 40
            remaining = args.time_budget - (time.time() - started) - args.reserve
            total_steps = step + max(1, int(remaining / per_step))
            print(f"{per_step * 1000:.1f} ms/step -> {total_steps} steps", flush=True)

        index = torch.randint(0, len(crops), (args.batch_size,), generator=generator, device=device)
        lab = augment(crops[index], args.crop, generator)
        l_in, ab = split_lab(lab)
        targets, nearest = soft_encode(ab, bins)
        if cuda:
            l_in = l_in.contiguous(memory_format=torch.channels_last)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, total_steps or 10**9, args.lr)
        with autocast():
            logits = model(l_in)
        loss = rebalanced_cross_entropy(logits, targets, nearest, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach()  # summed on the device: no host sync per step
        loss_steps += 1
        step += 1

        last = total_steps is not None and step >= total_steps
        if step % steps_per_epoch == 0 or last:
            record = {
                "step": step,
                "epoch": round(step / steps_per_epoch, 2),
                "samples": step * args.batch_size,
                "train_loss": loss_sum.item() / loss_steps,
                "val_loss": None if val is None else validation_loss(model, val, bins, weights, autocast),
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": round(time.time() - loop_started, 1),
            }
            loss_sum, loss_steps = torch.zeros((), device=device), 0
            with log_path.open("a") as log:
                log.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
            snapshot = {
                "model": model.state_dict(),
                "widths": list(args.widths),
                "args": {k: str(v) for k, v in vars(args).items()},
                "step": step,
            }
            torch.save(snapshot, args.out / "weights.pt")
            torch.save(
                {
                    **snapshot,
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "total_steps": total_steps,
                },
                checkpoint_path,
            )
    weights_path: Path = args.out / "weights.pt"
    return weights_path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of colour training photos")
    parser.add_argument("--val", type=Path, help="folder of colour validation photos (loss curve only)")
    parser.add_argument("--out", type=Path, required=True, help="run folder: checkpoint, log, bin statistics")
    parser.add_argument("--size", type=int, default=128, help="square crop kept per photo")
    parser.add_argument("--crop", type=int, default=112, help="training crop after random scale and flip")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--widths", type=int, nargs=5, default=list(vars(Widths()).values()))
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--steps", type=int, help="total optimiser steps")
    budget.add_argument("--time-budget", type=float, help="seconds for the whole run, loading included")
    parser.add_argument("--reserve", type=float, default=30.0, help="seconds of --time-budget kept for the end")
    parser.add_argument("--checkpoint-dir", type=Path, help="where the resumable checkpoint goes (default: --out)")
    parser.add_argument("--max-images", type=int, default=0, help="use only the first N crops (smoke runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    print(f"weights: {train(parse_args(argv))}")


if __name__ == "__main__":
    main()
