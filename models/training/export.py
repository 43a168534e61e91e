"""Export a training checkpoint as a served model: ONNX file, manifest, model card, curve.

    python -m models.training.export --run runs/small --name colorize-small --command "..."
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import onnx
import torch

from models.onnx_head import append_annealed_mean_head
from models.training.network import ColorNet, Widths
from shared.bins import ab_bins
from shared.models import ModelManifest, write_manifest

# The network is fully convolutional; it is fed L at the scale it was trained on (photos
# with a short side of 128), which on held-out photos beat feeding it 224 on every metric.
INPUT_SIZE = 128
TEMPERATURE = 0.38
TRAINING_DATA = (
    "17,877 photos: Imagenette train (ImageNet subset), Intel Image Classification train, "
    "one ImageNet sample photo per class, BSDS500 train+test. Research use only "
    "(ImageNet terms of access apply to the ImageNet-derived sets)."
)


def load_network(weights: Path) -> ColorNet:
    state = torch.load(weights, map_location="cpu", weights_only=False)
    model = ColorNet(Widths(*state["widths"]))
    model.load_state_dict(state["model"])
    return model.eval()


def to_onnx(model: ColorNet, size: int = INPUT_SIZE) -> onnx.ModelProto:
    buffer = io.BytesIO()
    torch.onnx.export(
        model, (torch.zeros(1, 1, size, size),), buffer,
        dynamo=False, opset_version=17, input_names=["l"], output_names=["logits"],
        dynamic_axes={"l": {0: "N", 2: "H", 3: "W"}, "logits": {0: "N", 2: "h", 3: "w"}},
    )
    graph = onnx.load_from_string(buffer.getvalue())
    return append_annealed_mean_head(graph, "logits", ab_bins())


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]


def plot_curve(log: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5), dpi=100)
    epochs = [r["epoch"] for r in log]
    axis.plot(epochs, [r["train_loss"] for r in log], label="train")
    if any(r["val_loss"] is not None for r in log):
        axis.plot(epochs, [r["val_loss"] for r in log], label="validation")
    axis.set_xlabel("epoch")
    axis.set_ylabel("rebalanced cross-entropy")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def export(run: Path, out_dir: Path, name: str, command: str, input_size: int = INPUT_SIZE) -> ModelManifest:
    checkpoint = run / "weights.pt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    log = read_log(run)
    stats = np.load(run / "bin_stats.npz")
    directory = out_dir / name
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(to_onnx(load_network(checkpoint)), directory / "model.onnx")
    np.savez_compressed(directory / "bin_stats.npz", **{k: stats[k] for k in stats.files})
    plot_curve(log, directory / "training_curve.png")
    final = log[-1]
    manifest = write_manifest(directory, {
        "name": name,
        "description": "Narrow ECCV16-family network (Zhang et al. 2016), trained by Colorize",
        "format": "onnx",
        "file": "model.onnx",
        "input": {"name": "l", "size": input_size, "normalisation": {"subtract": 50.0, "divide": 1.0}},
        "output": {"name": "ab", "downsample": 4, "kind": "annealed_mean_ab"},
        "bins": "eccv16-313",
        "temperature": TEMPERATURE,
        "architecture": {"family": "eccv16", "widths": state["widths"],
                         "parameters": sum(p.numel() for p in load_network(checkpoint).parameters())},
        "licence": "MIT (weights); see training_data for the terms of the data",
        "training_data": TRAINING_DATA,
        "training": {
            "command": command,
            "steps": final["step"], "epochs": final["epoch"], "samples": final["samples"],
            "final_train_loss": round(final["train_loss"], 4),
            "final_val_loss": None if final["val_loss"] is None else round(final["val_loss"], 4),
            "seconds": final["seconds"],
            "options": state["args"],
            "bin_statistics": "bin_stats.npz (counts, smoothed distribution, rebalancing weights)",
        },
    })
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Export a training run as a served model.")
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--name", default="colorize-small")
    parser.add_argument("--command", default="", help="training command recorded in the manifest")
    parser.add_argument("--input-size", type=int, default=INPUT_SIZE, help="side of the L input the engine feeds")
    args = parser.parse_args(argv)
    manifest = export(args.run, args.out, args.name, args.command, args.input_size)
    print(f"exported {manifest.path} ({manifest.path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
