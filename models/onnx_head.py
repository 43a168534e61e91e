"""The annealed-mean decoding head appended to every model graph we ship.

Networks end in 313 raw logits per position. The head turns them into ab in the graph itself,
so decoding runs on the same device as the network and the engine copies 2 channels back
instead of 313:  ab = sum_q softmax((logits + bias) * inv_temperature)_q * bin_q.
``inv_temperature`` is a graph input (one value per image), so each job may choose T.

``bias`` is the prior correction, a constant of the graph: a network trained with class
rebalancing learns roughly the posterior times each bin's rebalancing weight w, so its
annealed mean drifts to mid-saturated colours where the truth is neutral; adding
``-alpha * log w`` to the logits undoes that in part (alpha = 1: all of it). Without a bias
(alpha = 0) the head has no node for it and decodes exactly as it always did.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INV_TEMPERATURE_INPUT = "inv_temperature"
AB_OUTPUT = "ab"
# A hint model's second output: the head's bin probabilities, for offering likely colours.
PROBABILITIES_OUTPUT = "probabilities"
HEAD_PROBABILITIES = "head_probabilities"
PRIOR_BIAS = "head_prior_bias"
PRIOR_CORRECTED_LOGITS = "head_prior_corrected_logits"
SCALED_LOGITS = "head_scaled_logits"


def prior_bias(bin_weights: np.ndarray, alpha: float) -> np.ndarray:
    """The per-bin logit bias ``-alpha * log w`` of a model's rebalancing weights ``w`` (313,)."""
    weights = np.asarray(bin_weights, dtype=np.float64)
    if weights.ndim != 1 or not np.all(weights > 0):
        raise ValueError("rebalancing weights must be one positive value per bin")
    bias: np.ndarray = (-alpha * np.log(weights)).astype(np.float32)
    return bias


def append_annealed_mean_head(
    model: onnx.ModelProto, logits_name: str, bins: np.ndarray, bias: np.ndarray | None = None
) -> onnx.ModelProto:
    """Return a copy of ``model`` whose only output is ``ab`` (N, 2, h, w) decoded from ``logits_name``,
    with ``bias`` (one value per bin) added to the logits before the temperature when given."""
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
            helper.make_node("Mul", [logits_name, "head_scale"], [SCALED_LOGITS]),
            helper.make_node("Softmax", [SCALED_LOGITS], [HEAD_PROBABILITIES], axis=1),
            helper.make_node("Conv", [HEAD_PROBABILITIES, "head_bins"], [AB_OUTPUT], kernel_shape=[1, 1]),
        ]
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(AB_OUTPUT, TensorProto.FLOAT, ["N", 2, "h", "w"]))
    if bias is not None:
        return with_prior_bias(head, bias)
    onnx.checker.check_model(head)
    return head


def with_probabilities_output(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a copy of a headed model that also outputs the head's bin probabilities
    (N, 313, h, w) as ``probabilities``, after ``ab`` (unchanged where it already does)."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    graph = exposed.graph
    if any(output.name == PROBABILITIES_OUTPUT for output in graph.output):
        return exposed
    graph.node.append(helper.make_node("Identity", [HEAD_PROBABILITIES], [PROBABILITIES_OUTPUT]))
    graph.output.append(helper.make_tensor_value_info(PROBABILITIES_OUTPUT, TensorProto.FLOAT, ["N", "bins", "h", "w"]))
    onnx.checker.check_model(exposed)
    return exposed


def with_prior_bias(model: onnx.ModelProto, bias: np.ndarray | None) -> onnx.ModelProto:
    """Return a copy of a model with the head above whose prior bias is ``bias`` (313,), or has
    none when ``bias`` is None; any bias it had before is replaced."""
    headed = onnx.ModelProto()
    headed.CopyFrom(model)
    graph = headed.graph
    _remove_prior_bias(graph)
    if bias is not None:
        scale = _scale_node(graph)
        values = np.asarray(bias, dtype=np.float32).reshape(1, -1, 1, 1)
        graph.initializer.append(numpy_helper.from_array(values, PRIOR_BIAS))
        add = helper.make_node("Add", [scale.input[0], PRIOR_BIAS], [PRIOR_CORRECTED_LOGITS])
        graph.node.insert(list(graph.node).index(scale), add)
        scale.input[0] = PRIOR_CORRECTED_LOGITS
    onnx.checker.check_model(headed)
    return headed


def head_prior_bias(model: onnx.ModelProto) -> np.ndarray | None:
    """The prior bias (313,) in a headed model's graph, None when it has none."""
    for initializer in model.graph.initializer:
        if initializer.name == PRIOR_BIAS:
            values: np.ndarray = numpy_helper.to_array(initializer).reshape(-1)
            return values
    return None


def head_logits_name(model: onnx.ModelProto) -> str:
    """The network's logits tensor that the head decodes (before any prior bias)."""
    for node in model.graph.node:
        if PRIOR_CORRECTED_LOGITS in node.output:
            return str(node.input[0])
    return str(_scale_node(model.graph).input[0])


def _scale_node(graph: onnx.GraphProto) -> onnx.NodeProto:
    for node in graph.node:
        if SCALED_LOGITS in node.output:
            scale: onnx.NodeProto = node
            return scale
    raise ValueError("the graph has no annealed-mean head")


def _remove_prior_bias(graph: onnx.GraphProto) -> None:
    add = next((node for node in graph.node if PRIOR_CORRECTED_LOGITS in node.output), None)
    if add is None:
        return
    _scale_node(graph).input[0] = add.input[0]
    graph.node.remove(add)
    for initializer in list(graph.initializer):
        if initializer.name == PRIOR_BIAS:
            graph.initializer.remove(initializer)


def annealed_mean(
    logits: np.ndarray, bins: np.ndarray, temperature: float, bias: np.ndarray | None = None
) -> np.ndarray:
    """NumPy reference of the head for one image: logits (313, h, w) -> ab (2, h, w)."""
    corrected = logits.astype(np.float64)
    if bias is not None:
        corrected = corrected + np.asarray(bias, dtype=np.float64)[:, None, None]
    scaled = corrected / temperature
    scaled -= scaled.max(axis=0, keepdims=True)
    weights = np.exp(scaled)
    weights /= weights.sum(axis=0, keepdims=True)
    ab: np.ndarray = np.einsum("qhw,qc->chw", weights, np.asarray(bins, dtype=np.float64)).astype(np.float32)
    return ab
