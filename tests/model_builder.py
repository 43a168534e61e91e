"""A tiny deterministic ONNX colorization model for tests (never shipped).

One 4x4 stride-4 convolution maps mean L of each patch to 313 logits: bright patches lean
to warm bins (positive a, b), dark patches to cool ones, so outputs are predictable and
clearly not grey, without any trained weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models.onnx_head import append_annealed_mean_head
from shared.colour.bins import ab_bins
from shared.colour.model_manifests import ModelManifest, write_manifest


def build_test_model(models_dir: Path, name: str = "test-tiny", input_size: int = 64) -> ModelManifest:
    bins = ab_bins()
    warmth = (bins[:, 0] + bins[:, 1]) / 100.0  # (313,)
    weight = np.repeat(warmth[:, None, None, None] / 16.0 * 0.05, 16, axis=2).reshape(313, 1, 4, 4)
    bias = -np.hypot(bins[:, 0], bins[:, 1]).astype(np.float32) / 40.0  # prefer moderate chroma
    graph = helper.make_graph(
        [helper.make_node("Conv", ["l", "w", "b"], ["logits"], kernel_shape=[4, 4], strides=[4, 4])],
        "test_tiny",
        [helper.make_tensor_value_info("l", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 313, "h", "w"])],
        [numpy_helper.from_array(weight.astype(np.float32), "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model = append_annealed_mean_head(model, "logits", bins)
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
            "output": {"name": "ab", "downsample": 4},
            "bins": "eccv16-313",
            "temperature": 0.38,
            "licence": "MIT",
        },
    )
