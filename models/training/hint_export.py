"""Export a trained hint branch joined to its base model as one hint model.

    python -m models.training.hint_export --run runs/hints --base models/colorize-lite \\
        --name colorize-lite-hints --command "python -m models.training.train_hints ..."

The base graph is kept as it is, node for node; the branch (exported by torch) reads the
base's classifier features and the two hint inputs, and its offsets are added to the base
logits just before the decoding head, which keeps the base's prior bias and temperature.
The graph also outputs the head's bin probabilities (``probabilities``), from which the
service offers likely colours at a point.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import shutil
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx import TensorProto, compose, helper, numpy_helper

from models.onnx_head import head_logits_name, with_probabilities_output
from models.training.hint_branch import HintBranch
from models.training.hint_cache import base_classifier
from shared.colour.model_manifests import ModelManifest, load_manifest, write_manifest

BRANCH_PREFIX = "hint_branch/"
HINT_INPUTS = ("hint_ab", "hint_mask")
HINTED_LOGITS = "hinted_logits"


def load_branch(run: Path, pull_scale: float = 1.0) -> tuple[HintBranch, dict[str, Any]]:
    """The run's kept branch, its two pulls towards hinted colours multiplied by ``pull_scale``."""
    state = torch.load(run / "branch.pt", map_location="cpu", weights_only=False)
    config = state["config"]
    branch = HintBranch(config["feature_channels"], config["width"], tuple(config["dilations"]))
    branch.load_state_dict(state["branch"])
    with torch.no_grad():
        for pull in (branch.log_pull, branch.log_spread_pull):
            pull.add_(math.log(pull_scale))
    return branch.eval(), state["record"]


def shipped_branch_state(model_dir: Path) -> dict[str, torch.Tensor]:
    """The branch weights inside an exported hint model's file, as the state dict they came
    from, so a branch can go on learning on a new version of its base."""
    proto = onnx.load(str(model_dir / "model.onnx"))
    return {
        initialiser.name.removeprefix(BRANCH_PREFIX): torch.from_numpy(numpy_helper.to_array(initialiser).copy())
        for initialiser in proto.graph.initializer
        if initialiser.name.startswith(BRANCH_PREFIX)
    }


def branch_graph(branch: HintBranch, size: int) -> onnx.ModelProto:
    """The branch alone: features, hint_ab, hint_mask -> offsets."""
    channels = int(branch.feature_channels)
    example = (
        torch.zeros(1, channels, size // 4, size // 4),
        torch.zeros(1, 2, size, size),
        torch.zeros(1, 1, size, size),
    )
    buffer = io.BytesIO()
    torch.onnx.export(
        branch,
        example,
        buffer,  # type: ignore[arg-type, unused-ignore]
        dynamo=False,
        opset_version=17,
        input_names=["features", *HINT_INPUTS],
        output_names=["offsets"],
        dynamic_axes={
            "features": {0: "N", 2: "h", 3: "w"},
            "hint_ab": {0: "N", 2: "H", 3: "W"},
            "hint_mask": {0: "N", 2: "H", 3: "W"},
            "offsets": {0: "N", 2: "h", 3: "w"},
        },
    )
    return onnx.load_from_string(buffer.getvalue())


def joined(base: onnx.ModelProto, branch: onnx.ModelProto) -> onnx.ModelProto:
    """``base`` with ``branch`` feeding on its classifier features, its offsets added to the logits."""
    features = base_classifier(base).features
    logits = head_logits_name(base)
    prefixed = compose.add_prefix(branch, BRANCH_PREFIX)
    renames = {BRANCH_PREFIX + "features": features, **{BRANCH_PREFIX + name: name for name in HINT_INPUTS}}
    model = onnx.ModelProto()
    model.CopyFrom(base)
    graph = model.graph
    for node in graph.node:  # whatever read the logits (the head) now reads the hinted logits
        node.input[:] = [HINTED_LOGITS if name == logits else name for name in node.input]
    for node in prefixed.graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
    head_start = next(i for i, node in enumerate(graph.node) if HINTED_LOGITS in node.input)
    added = [*prefixed.graph.node, helper.make_node("Add", [logits, BRANCH_PREFIX + "offsets"], [HINTED_LOGITS])]
    for offset, node in enumerate(added):
        graph.node.insert(head_start + offset, node)
    graph.initializer.extend(prefixed.graph.initializer)
    graph.input.extend(
        [
            helper.make_tensor_value_info("hint_ab", TensorProto.FLOAT, ["N", 2, "H", "W"]),
            helper.make_tensor_value_info("hint_mask", TensorProto.FLOAT, ["N", 1, "H", "W"]),
        ]
    )
    return with_probabilities_output(model)


def export(
    run: Path,
    base_dir: Path,
    out_dir: Path,
    name: str,
    command: str,
    pull_scale: float = 1.0,
    branch_data: str = "",
) -> ModelManifest:
    """Write ``out_dir/name``: the joined graph, the base's bin statistics, and a manifest whose
    training data is the base's followed by ``branch_data`` (what the branch was trained on)."""
    base_manifest = load_manifest(base_dir.parent, base_dir.name)
    branch, record = load_branch(run, pull_scale)
    model = joined(onnx.load(str(base_manifest.path)), branch_graph(branch, base_manifest.input_size))
    onnx.checker.check_model(model)
    directory = out_dir / name
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(model, directory / "model.onnx")
    shutil.copy(base_dir / "bin_stats.npz", directory / "bin_stats.npz")
    summary = json.loads((run / "summary.json").read_text())
    data = dict(base_manifest.raw)
    data.pop("sha256", None)
    parameters = sum(p.numel() for p in branch.parameters())
    data.update(
        {
            "name": name,
            "description": (
                f"{base_manifest.name} with colour hints: its frozen network plus a hint branch at the decoder's "
                "stride-4 features (Zhang et al. 2017's hint inputs); trained by Colorize"
            ),
            "output": {**data["output"], "probabilities": "probabilities"},
            "hints": True,
            "training_data": f"Base network: {data.get('training_data', 'see the base model')} Hint branch: {branch_data}".strip(),
            "architecture": {
                **data["architecture"],
                "hint_branch": {**branch.config, "parameters": parameters},
                "parameters": data["architecture"]["parameters"] + parameters,
            },
            "training": {
                "command": command,
                "base": base_manifest.name,
                "base_sha256": base_manifest.sha256,
                "options": {k: _portable(v) for k, v in summary["options"].items()},
                "kept": record,
                "pull_scale": pull_scale,
                "steps": summary["steps"],
                "samples": summary["samples"],
                "seconds": summary["seconds"],
                "bin_statistics": "bin_stats.npz (the base model's)",
            },
        }
    )
    return write_manifest(directory, data)


def _portable(value: str) -> str:
    path = Path(value)
    return str(Path(*path.parts[-2:])) if path.is_absolute() else value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Export a trained hint branch and its base as one hint model.")
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--base", type=Path, required=True, help="the base model's folder")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--name", default="colorize-lite-hints")
    parser.add_argument("--command", default="", help="training command recorded in the manifest")
    parser.add_argument(
        "--pull-scale",
        type=float,
        default=1.0,
        help="multiply the learnt pulls towards hinted colours (a short run leaves them weak)",
    )
    parser.add_argument("--branch-data", default="", help="what the branch was trained on, and its terms")
    args = parser.parse_args(argv)
    manifest = export(args.run, args.base, args.out, args.name, args.command, args.pull_scale, args.branch_data)
    print(f"exported {manifest.path} ({manifest.path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
