"""Fine-tune a shipped ONNX model on the CPU, and export it with the same head.

    python -m models.training.finetune_onnx --model models/colorize-lite --data ../shared/data/train \\
        --val ../shared/data/val --out runs/lite-people --minutes 60 --threads 1

The shipped graph is rebuilt in PyTorch (``onnx_weights``); the parts named by ``--train`` learn
(the decoder by default; ``encoder=0.1`` adds the encoder at a tenth of the rate), with the class-rebalanced loss (``--rebalance-mix`` is lambda, the share of
uniform in the rebalanced prior: 1 turns rebalancing off), on random views of every training
photo drawn so the named sources keep their ``--share`` of the samples (``source_sampling``),
``--scan-share`` of them degraded like old scans (``scan_augment``); ``--semantic-weight`` adds
the semantic term (``semantic``). Every ``--eval-minutes`` the network is scored on
``--val-per-source`` held-out photos of each source of ``--val`` (``selection.SourceSelection``:
PSNR against grey per source and rebalanced AuC) and the best weights are kept; the last ones go
to ``OUT/last.pt`` too, for scores the selection does not see (the judge). At the end they are written into a copy of the ONNX file with its head, in
``OUT/model/`` beside the manifest and the bin statistics of the new training data.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.training.onnx_weights import OnnxNetwork
from models.training.scan_augment import ScanEffects
from models.training.selection import SourceScore, SourceSelection
from models.training.semantic import SemanticTerm
from models.training.source_sampling import SourcedViews, load_sourced_crops, parse_shares, sampling_probabilities
from models.training.targets import rebalancing_weights, soft_encode_sparse, sparse_rebalanced_cross_entropy
from shared.colour.bins import ab_bins
from shared.colour.model_manifests import write_manifest

WARMUP_STEPS = 50


def parse_part_rates(items: list[str]) -> dict[str, float]:
    """["decoder", "encoder=0.1"] -> {"decoder": 1.0, "encoder": 0.1}: each part's share of the
    peak learning rate."""
    rates: dict[str, float] = {}
    for item in items:
        name, _, value = item.partition("=")
        rates[name] = float(value or 1.0)
        if not name or rates[name] <= 0:
            raise ValueError(f"expected PART or PART=SCALE with SCALE > 0, got {item!r}")
    return rates


def learning_rate(elapsed: float, budget: float, step: int, peak: float) -> float:
    """Linear warm-up over the first steps, then a cosine over the wall-clock budget."""
    if step < WARMUP_STEPS:
        return peak * (step + 1) / WARMUP_STEPS
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / budget)))


class Log:
    def __init__(self, out: Path) -> None:
        self.path = out / "log.jsonl"
        self.started = time.time()

    def write(self, record: dict[str, Any]) -> None:
        record = {**record, "seconds": round(time.time() - self.started, 1)}
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)


def evaluate(
    network: OnnxNetwork, selection: SourceSelection, args: argparse.Namespace, log: Log, where: dict[str, Any]
) -> SourceScore:
    score = selection.score(network.module, network.input_size, network.temperature)
    log.write({**where, **score.record(), "selection_score": round(score.value(args.auc_weight), 4)})
    return score


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Fine-tune for ``--minutes`` and keep the best-scored decoder; returns the run's summary."""
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    log = Log(args.out)
    network = OnnxNetwork.load(args.model)
    groups = network.train_parts(parse_part_rates(args.train))
    trainable = [weight for group in groups for weight in group["params"]]
    crops_np, source, names = load_sourced_crops(args.data, args.source_size, args.crops_cache)
    probabilities = sampling_probabilities(source, names, parse_shares(args.share))
    sampler = SourcedViews(
        torch.from_numpy(crops_np).permute(0, 3, 1, 2),
        probabilities,
        args.size,
        ScanEffects().scaled(args.scan_share),
        torch.Generator().manual_seed(args.seed),
    )
    selection = SourceSelection(args.val, args.val_per_source)
    bins = torch.from_numpy(ab_bins().copy()).float()
    counts = sampler.bin_counts(bins)
    bin_weights, smoothed = rebalancing_weights(counts, bins.numpy().astype(np.float64), args.rebalance_mix)
    np.savez(args.out / "bin_stats.npz", counts=counts, smoothed=smoothed, weights=bin_weights)
    rebalance = torch.from_numpy(bin_weights).float()
    semantic = SemanticTerm.pretrained(args.semantic_classifier) if args.semantic_weight > 0 else None
    draws = {name: round(float(probabilities[source == i].sum()), 3) for i, name in enumerate(names)}
    log.write(
        {
            "photos": len(source),
            "per_source": {name: int((source == i).sum()) for i, name in enumerate(names)},
            "draw_share": draws,
            "selection_photos": len(selection.originals),
            "trainable_parameters": sum(p.numel() for p in trainable),
        }
    )
    best = evaluate(network, selection, args, log, {"step": 0, "samples": 0})
    best_value = best.value(args.auc_weight)
    network.save_trainable(args.out / "weights.pt")
    optimizer = torch.optim.AdamW(groups, lr=args.lr, weight_decay=args.weight_decay)
    budget, started = args.minutes * 60, time.time()
    last_eval, step, loss_sum, semantic_sum, kept_at = started, 0, 0.0, 0.0, 0
    network.module.train()
    while time.time() - started < budget:
        l_in, ab = sampler.batch(args.batch_size)
        near, weights = soft_encode_sparse(ab, bins)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(time.time() - started, budget, step, args.lr) * group["lr_scale"]
        logits = network.module(l_in)
        loss = sparse_rebalanced_cross_entropy(logits, near, weights, rebalance)
        if semantic is not None:
            semantic_loss = semantic(l_in, logits, ab)
            semantic_sum += semantic_loss.item()
            loss = loss + args.semantic_weight * semantic_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step, loss_sum = step + 1, loss_sum + loss.item()
        done = time.time() - started >= budget
        if done or time.time() - last_eval >= args.eval_minutes * 60:
            where = {"step": step, "samples": step * args.batch_size, "train_loss": round(loss_sum / step, 4)}
            if semantic is not None:
                where["semantic_loss"] = round(semantic_sum / step, 4)
            score = evaluate(network, selection, args, log, where)
            if score.value(args.auc_weight) > best_value:
                best, best_value, kept_at = score, score.value(args.auc_weight), step
                network.save_trainable(args.out / "weights.pt")
            last_eval = time.time()
    # the last weights too: the selection score cannot see what the semantic term is for
    network.save_trainable(args.out / "last.pt")
    network.load_trainable(args.out / "weights.pt")
    summary = {
        "command": args.command or "python -m models.training.finetune_onnx " + shlex.join(sys.argv[1:]),
        "options": {k: str(v) for k, v in vars(args).items() if k != "command"},
        "data": draws,
        "steps": step,
        "samples": step * args.batch_size,
        "seconds": round(time.time() - log.started, 1),
        "kept": {"step": kept_at, "samples": kept_at * args.batch_size, **best.record()},
        "selection": f"{args.val_per_source} photos per source of {args.val.name}: {sorted(set(selection.sources))}",
    }
    log.write({"summary": summary})
    return summary


def export_candidate(args: argparse.Namespace, summary: dict[str, Any]) -> Path:
    """OUT/model/: the shipped ONNX file with the kept weights, the new bin statistics and a
    manifest that is the shipped one with this run's training record."""
    network = OnnxNetwork.load(args.model)
    directory: Path = args.out / "model"
    network.write_onnx(directory / network.manifest["file"], torch.load(args.out / "weights.pt", map_location="cpu"))
    shutil.copyfile(args.out / "bin_stats.npz", directory / "bin_stats.npz")
    previous = {k: v for k, v in network.manifest.items() if k not in ("training", "sha256")}
    training = {**summary, "fine_tuned_from": network.manifest.get("training")}
    manifest = write_manifest(directory, {**previous, "name": args.name, "training": training})
    return manifest.path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="folder of the shipped model (manifest.json)")
    parser.add_argument("--data", type=Path, required=True, help="folder of colour training photos, by source")
    parser.add_argument("--val", type=Path, required=True, help="folder of held-out colour photos, by source")
    parser.add_argument("--out", type=Path, required=True, help="run folder; the exported model goes to OUT/model")
    parser.add_argument("--minutes", type=float, required=True, help="wall-clock training budget")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--train",
        nargs="+",
        default=["decoder=1"],
        help="top-level parts of the network that learn, as PART=SCALE of the learning rate (decoder=1 encoder=0.1)",
    )
    parser.add_argument("--source-size", type=int, default=144, help="side of the square crops held in memory")
    parser.add_argument("--size", type=int, default=128, help="side of the training views")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument(
        "--rebalance-mix", type=float, default=0.5, help="lambda: share of uniform in the rebalanced prior"
    )
    parser.add_argument(
        "--share",
        nargs="*",
        default=["utkface=0.2", "ccp=0.15"],
        help="SOURCE=SHARE of the drawn views; other sources share the rest by size",
    )
    parser.add_argument("--scan-share", type=float, default=1.0, help="scale of every scan effect's probability")
    parser.add_argument(
        "--semantic-weight", type=float, default=0.0, help="weight of the semantic term (models.training.semantic)"
    )
    parser.add_argument("--semantic-classifier", default="lite0", choices=["lite0", "lite1", "lite2"])
    parser.add_argument("--val-per-source", type=int, default=40)
    parser.add_argument("--eval-minutes", type=float, default=8.0)
    parser.add_argument("--auc-weight", type=float, default=0.2, help="dB of selection score per AuC point")
    parser.add_argument("--crops-cache", type=Path, help=".npz keeping the loaded crops between runs")
    parser.add_argument("--name", default="colorize-lite", help="name in the exported manifest")
    parser.add_argument("--command", default="", help="command recorded in the manifest (default: this one)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    path = export_candidate(args, train(args))
    print(f"exported {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
