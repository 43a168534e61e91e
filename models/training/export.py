"""Export a training checkpoint as a served model: ONNX file, manifest, model card, curve.

python -m models.training.export --run runs/small --name colorize-small --command "..."
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import torch

from models.onnx_head import append_annealed_mean_head
from models.training.network import ColorNet, Widths
from models.training.unet import DecoderWidths, PretrainedColorNet
from shared.colour.bins import ab_bins
from shared.colour.model_manifests import ModelManifest, write_manifest

if TYPE_CHECKING:  # matplotlib comes with the train extra
    from matplotlib.axes import Axes

# The network is fully convolutional; it is fed L at the scale it was trained on (photos
# with a short side of 128), which on held-out photos beat feeding it 224 on every metric.
INPUT_SIZE = 128
TEMPERATURE = 0.38
TRAINING_DATA = (
    "17,877 photos: Imagenette train (ImageNet subset), Intel Image Classification train, "
    "one ImageNet sample photo per class, BSDS500 train+test. Research use only "
    "(ImageNet terms of access apply to the ImageNet-derived sets)."
)


def load_network(weights: Path) -> torch.nn.Module:
    """The trained network of a run's ``weights.pt``: a ColorNet or a PretrainedColorNet."""
    state = torch.load(weights, map_location="cpu", weights_only=False)
    if "config" in state:
        config = state["config"]
        model: torch.nn.Module = PretrainedColorNet(
            config["encoder"], DecoderWidths(**config["decoder_widths"]), pretrained=False
        )
    else:
        model = ColorNet(Widths(*state["widths"]))
    model.load_state_dict(state["model"])
    return model.eval()


def architecture(state: dict[str, Any], model: torch.nn.Module) -> dict[str, Any]:
    parameters = sum(p.numel() for p in model.parameters())
    if "config" in state:
        return {
            "family": "efficientnet-lite-unet",
            "encoder": f"efficientnet-{state['config']['encoder']}",
            "decoder_widths": state["config"]["decoder_widths"],
            "parameters": parameters,
        }
    return {"family": "eccv16", "widths": state["widths"], "parameters": parameters}


def portable_options(options: dict[str, str]) -> dict[str, str]:
    """Training options as recorded in a manifest: paths only by their last parts, never the
    training machine's absolute paths."""

    def portable(value: str) -> str:
        path = Path(value)
        return str(Path(*path.parts[-2:])) if path.is_absolute() else value

    return {key: portable(value) for key, value in options.items()}


def to_onnx(model: torch.nn.Module, size: int = INPUT_SIZE) -> onnx.ModelProto:
    buffer = io.BytesIO()
    # torch's annotation of f omits the file objects its TorchScript exporter writes to; the
    # ignore is unused where torch is not installed.
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, size, size),),
        buffer,  # type: ignore[arg-type, unused-ignore]
        dynamo=False,
        opset_version=17,
        input_names=["l"],
        output_names=["logits"],
        dynamic_axes={"l": {0: "N", 2: "H", 3: "W"}, "logits": {0: "N", 2: "h", 3: "w"}},
    )
    graph = onnx.load_from_string(buffer.getvalue())
    return append_annealed_mean_head(graph, "logits", ab_bins())


def read_log(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]


def plot_curve(log: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5), dpi=100)
    if any("val_auc_rebalanced" in r for r in log):
        _plot_two_stage(axis, log)
    else:
        epochs = [r["epoch"] for r in log]
        axis.plot(epochs, [r["train_loss"] for r in log], label="train")
        if any(r["val_loss"] is not None for r in log):
            axis.plot(epochs, [r["val_loss"] for r in log], label="validation")
        axis.set_xlabel("epoch")
        axis.set_ylabel("rebalanced cross-entropy")
        axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _plot_two_stage(axis: Axes, log: list[dict[str, Any]]) -> None:
    """Training loss and held-out rebalanced AuC against samples seen, stage 2 after stage 1."""
    scored = [r for r in log if "val_auc_rebalanced" in r]
    stage1_samples = max((r["samples"] for r in scored if r["stage"] == 1), default=0)
    samples = [r["samples"] + (stage1_samples if r["stage"] == 2 else 0) for r in scored]
    losses = [(x, r["train_loss"]) for x, r in zip(samples, scored) if r["train_loss"] is not None]
    axis.plot([x / 1e3 for x, _ in losses], [y for _, y in losses], color="tab:blue", label="training loss")
    axis.set_xlabel("thousand samples (decoder alone, then end to end)")
    axis.set_ylabel("rebalanced cross-entropy", color="tab:blue")
    if stage1_samples:
        axis.axvline(stage1_samples / 1e3, color="grey", linestyle=":")
    right = axis.twinx()
    right.plot([x / 1e3 for x in samples], [r["val_auc_rebalanced"] for r in scored], color="tab:orange", marker=".")
    right.set_ylabel("held-out rebalanced AuC (%)", color="tab:orange")


def training_summary(state: dict[str, Any], log: list[dict[str, Any]], command: str) -> dict[str, Any]:
    """What the manifest records of the run that made the weights."""
    summary: dict[str, Any] = {"command": command, "options": portable_options(state["args"])}
    if "score" in state:  # two-stage run, best checkpoint kept by held-out colour metric
        scored = [r for r in log if "val_auc_rebalanced" in r]
        summary.update(
            {
                "kept": {**state["at"], "held_out_auc_rebalanced": round(state["score"]["auc_rebalanced"], 3)},
                "stage1_samples": max((r["samples"] for r in scored if r["stage"] == 1), default=0),
                "stage2_samples": max((r["samples"] for r in scored if r["stage"] == 2), default=0),
                "seconds": max(r["seconds"] for r in log),
            }
        )
    else:
        final = log[-1]
        summary.update(
            {
                "steps": final["step"],
                "epochs": final["epoch"],
                "samples": final["samples"],
                "final_train_loss": round(final["train_loss"], 4),
                "final_val_loss": None if final["val_loss"] is None else round(final["val_loss"], 4),
                "seconds": final["seconds"],
            }
        )
    summary["bin_statistics"] = "bin_stats.npz (counts, smoothed distribution, rebalancing weights)"
    return summary


def export(
    run: Path, out_dir: Path, name: str, command: str, input_size: int = INPUT_SIZE, temperature: float = TEMPERATURE
) -> ModelManifest:
    checkpoint = run / "weights.pt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = load_network(checkpoint)
    log = read_log(run)
    stats = np.load(run / "bin_stats.npz")
    directory = out_dir / name
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(to_onnx(model, input_size), directory / "model.onnx")
    np.savez_compressed(directory / "bin_stats.npz", **{k: stats[k] for k in stats.files})
    plot_curve(log, directory / "training_curve.png")
    pretrained = "config" in state
    return write_manifest(
        directory,
        {
            "name": name,
            "description": (
                "ImageNet-pretrained EfficientNet-Lite encoder with a U-Net decoder, predicting Zhang et "
                "al.'s 313 ab bins; trained by Colorize"
            )
            if pretrained
            else "Narrow ECCV16-family network (Zhang et al. 2016), trained by Colorize",
            "format": "onnx",
            "file": "model.onnx",
            "input": {"name": "l", "size": input_size, "normalisation": {"subtract": 50.0, "divide": 1.0}},
            "output": {"name": "ab", "downsample": 4, "kind": "annealed_mean_ab"},
            "bins": "eccv16-313",
            "temperature": temperature,
            "architecture": architecture(state, model),
            "licence": (
                "MIT (weights), fine-tuned from the Apache-2.0 EfficientNet-Lite ImageNet weights; see "
                "training_data for the terms of the data"
            )
            if pretrained
            else "MIT (weights); see training_data for the terms of the data",
            "training_data": TRAINING_DATA,
            "training": training_summary(state, log, command),
        },
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Export a training run as a served model.")
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--name", default="colorize-small")
    parser.add_argument("--command", default="", help="training command recorded in the manifest")
    parser.add_argument("--input-size", type=int, default=INPUT_SIZE, help="side of the L input the engine feeds")
    parser.add_argument("--temperature", type=float, default=TEMPERATURE, help="default decoding temperature")
    args = parser.parse_args(argv)
    manifest = export(args.run, args.out, args.name, args.command, args.input_size, args.temperature)
    print(f"exported {manifest.path} ({manifest.path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
