"""A tiny deterministic ONNX colorization model for tests (never shipped).

One 4x4 stride-4 convolution maps mean L of each patch to 313 logits: bright patches lean
to warm bins (positive a, b), dark patches to cool ones, so outputs are predictable and
clearly not grey, without any trained weights.

With ``hints=True`` it takes the two hint planes too: a second 4x4 stride-4 convolution of
``hint_ab * hint_mask`` and ``hint_mask`` adds ``-HINT_GAIN * |bin - hint|^2`` (up to a
constant per patch) to each bin's logit for each hinted pixel, so a hinted patch takes about
the hint's colour and every other patch is as without hints. It also outputs its bin
probabilities, as hint models do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models.onnx_head import append_annealed_mean_head, with_probabilities_output
from shared.colour.bins import ab_bins
from shared.colour.model_manifests import ModelManifest, write_manifest

# Logit penalty per squared ab unit between a bin and a hinted pixel's ab: one hinted pixel
# of a patch outweighs the lightness term.
HINT_GAIN = 0.01


def build_test_model(
    models_dir: Path,
    name: str = "test-tiny",
    input_size: int = 64,
    hints: bool = False,
    base: ModelManifest | None = None,
) -> ModelManifest:
    bins = ab_bins()
    warmth = (bins[:, 0] + bins[:, 1]) / 100.0  # (313,)
    weight = np.repeat(warmth[:, None, None, None] / 16.0 * 0.05, 16, axis=2).reshape(313, 1, 4, 4)
    bias = -np.hypot(bins[:, 0], bins[:, 1]).astype(np.float32) / 40.0  # prefer moderate chroma
    nodes = [helper.make_node("Conv", ["l", "w", "b"], ["logits"], kernel_shape=[4, 4], strides=[4, 4])]
    inputs = [helper.make_tensor_value_info("l", TensorProto.FLOAT, ["N", 1, "H", "W"])]
    initializers = [numpy_helper.from_array(weight.astype(np.float32), "w"), numpy_helper.from_array(bias, "b")]
    if hints:
        nodes[0].output[0] = "lightness_logits"
        per_channel = np.concatenate([2 * bins, -(bins**2).sum(axis=1, keepdims=True)], axis=1) * HINT_GAIN
        hint_weight = np.repeat(per_channel[:, :, None, None], 4, axis=2).repeat(4, axis=3)
        nodes += [
            # Every marked pixel pulls alike, however the planes weigh a spot (the shipped hint
            # model spreads a spot over its area by attention; this one only where it is marked).
            helper.make_node("Ceil", ["hint_mask"], ["marked"]),
            helper.make_node("Mul", ["hint_ab", "marked"], ["masked_hint_ab"]),
            helper.make_node("Concat", ["masked_hint_ab", "marked"], ["hint_planes"], axis=1),
            helper.make_node("Conv", ["hint_planes", "hw"], ["hint_logits"], kernel_shape=[4, 4], strides=[4, 4]),
            helper.make_node("Add", ["lightness_logits", "hint_logits"], ["logits"]),
        ]
        inputs += [
            helper.make_tensor_value_info("hint_ab", TensorProto.FLOAT, ["N", 2, "H", "W"]),
            helper.make_tensor_value_info("hint_mask", TensorProto.FLOAT, ["N", 1, "H", "W"]),
        ]
        initializers.append(numpy_helper.from_array(hint_weight.astype(np.float32), "hw"))
    graph = helper.make_graph(
        nodes,
        "test_tiny",
        inputs,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 313, "h", "w"])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model = append_annealed_mean_head(model, "logits", bins)
    output: dict[str, object] = {"name": "ab", "downsample": 4}
    if hints:
        model = with_probabilities_output(model)
        output["probabilities"] = "probabilities"
    directory = models_dir / name
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(model, directory / "model.onnx")
    return write_manifest(
        directory,
        {
            "name": name,
            "description": "deterministic test model",
            "format": "onnx",
            "file": "model.onnx",
            "input": {"name": "l", "size": input_size, "normalisation": {"subtract": 50.0, "divide": 1.0}},
            "output": output,
            "bins": "eccv16-313",
            "temperature": 0.38,
            "licence": "MIT",
            "hints": hints,
            # A hint model colours as the test model of the same size without hints: its twin.
            **({"training": {"base": base.name, "base_sha256": base.sha256}} if base is not None else {}),
        },
    )
