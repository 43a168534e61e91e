"""The annealed-mean decoding head appended to every model graph we ship.

Networks end in 313 raw logits per position. The head turns them into ab in the graph itself,
so decoding runs on the same device as the network and the engine copies 2 channels back
instead of 313:  ab = sum_q softmax(logits * inv_temperature)_q * bin_q.
``inv_temperature`` is a graph input (one value per image), so each job may choose T.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INV_TEMPERATURE_INPUT = "inv_temperature"
AB_OUTPUT = "ab"


def append_annealed_mean_head(model: onnx.ModelProto, logits_name: str, bins: np.ndarray) -> onnx.ModelProto:
    """Return a copy of ``model`` whose only output is ``ab`` (N, 2, h, w) decoded from ``logits_name``."""
    head = onnx.ModelProto()
    head.CopyFrom(model)
    graph = head.graph
    bins = np.asarray(bins, dtype=np.float32)
    graph.initializer.extend(
        [
            numpy_helper.from_array(bins.T.reshape(2, len(bins), 1, 1).copy(), "head_bins"),
            numpy_helper.from_array(np.array([-1, 1, 1, 1], dtype=np.int64), "head_scale_shape"),
        ]
    )
    graph.input.append(helper.make_tensor_value_info(INV_TEMPERATURE_INPUT, TensorProto.FLOAT, ["N"]))
    graph.node.extend(
        [
            helper.make_node("Reshape", [INV_TEMPERATURE_INPUT, "head_scale_shape"], ["head_scale"]),
            helper.make_node("Mul", [logits_name, "head_scale"], ["head_scaled_logits"]),
            helper.make_node("Softmax", ["head_scaled_logits"], ["head_probabilities"], axis=1),
            helper.make_node("Conv", ["head_probabilities", "head_bins"], [AB_OUTPUT], kernel_shape=[1, 1]),
        ]
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(AB_OUTPUT, TensorProto.FLOAT, ["N", 2, "h", "w"]))
    onnx.checker.check_model(head)
    return head


def annealed_mean(logits: np.ndarray, bins: np.ndarray, temperature: float) -> np.ndarray:
    """NumPy reference of the head for one image: logits (313, h, w) -> ab (2, h, w)."""
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max(axis=0, keepdims=True)
    weights = np.exp(scaled)
    weights /= weights.sum(axis=0, keepdims=True)
    ab: np.ndarray = np.einsum("qhw,qc->chw", weights, np.asarray(bins, dtype=np.float64)).astype(np.float32)
    return ab
