"""A shipped ONNX model run in PyTorch to train it, and its weights written back into its graph.

The repository ships models as ONNX files with batch norm folded into the convolutions and the
annealed-mean head (``onnx_head``) appended; there is no PyTorch checkpoint. ``OnnxNetwork``
interprets the graph up to the logits node by node with torch ops, its float initialisers held
as tensors, so the parts chosen to train (the decoder: nodes under ``/decoder/``) get gradients
while the rest stays as shipped. ``write_onnx`` stores the trained values in the same
initialisers of a copy of the file: the graph, the head and every other weight are unchanged,
so the engine serves the result as it serves the original.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

ONNX_DTYPES = {1: torch.float32, 6: torch.int32, 7: torch.int64, 9: torch.bool}
Op = Callable[[list[Any], dict[str, Any]], torch.Tensor]


def _conv(x: list[Any], a: dict[str, Any]) -> torch.Tensor:
    pads = a.get("pads", [0, 0, 0, 0])
    if pads[:2] != pads[2:]:
        raise NotImplementedError(f"asymmetric Conv padding {pads}")
    bias = x[2] if len(x) > 2 else None
    return F.conv2d(x[0], x[1], bias, a.get("strides", 1), pads[:2], a.get("dilations", 1), a.get("group", 1))


def _gemm(x: list[Any], a: dict[str, Any]) -> torch.Tensor:
    left = x[0].T if a.get("transA", 0) else x[0]
    right = x[1].T if a.get("transB", 0) else x[1]
    out: torch.Tensor = a.get("alpha", 1.0) * (left @ right)
    return out + a.get("beta", 1.0) * x[2] if len(x) > 2 else out


def _slice(x: list[Any], a: dict[str, Any]) -> torch.Tensor:
    data, starts, ends = x[0], x[1].tolist(), x[2].tolist()
    axes = x[3].tolist() if len(x) > 3 else list(range(len(starts)))
    steps = x[4].tolist() if len(x) > 4 else [1] * len(starts)
    index = [slice(None)] * data.dim()
    for axis, start, end, step in zip(axes, starts, ends, steps):
        index[axis] = slice(start, min(end, data.shape[axis]), step)
    sliced: torch.Tensor = data[tuple(index)]
    return sliced


def _resize(x: list[Any], a: dict[str, Any]) -> torch.Tensor:
    if a.get("mode") != b"linear" or a.get("coordinate_transformation_mode") != b"half_pixel":
        raise NotImplementedError(f"Resize {a}")
    sizes = [int(v) for v in x[3].tolist()[2:]]
    return F.interpolate(x[0], size=sizes, mode="bilinear", align_corners=False)


def _unsqueeze(x: list[Any], a: dict[str, Any]) -> torch.Tensor:
    out: torch.Tensor = x[0]
    for axis in sorted(int(v) for v in x[1].reshape(-1).tolist()):
        out = out.unsqueeze(axis)
    return out


OPS: dict[str, Op] = {
    "Conv": _conv,
    "Gemm": _gemm,
    "Slice": _slice,
    "Resize": _resize,
    "Unsqueeze": _unsqueeze,
    "Clip": lambda x, a: torch.clamp(x[0], x[1], x[2]),
    "Relu": lambda x, a: torch.relu(x[0]),
    "Add": lambda x, a: x[0] + x[1],
    "Sub": lambda x, a: x[0] - x[1],
    "Mul": lambda x, a: x[0] * x[1],
    "Div": lambda x, a: x[0] / x[1],
    "ReduceMean": lambda x, a: x[0].mean(dim=a["axes"], keepdim=bool(a.get("keepdims", 1))),
    "Shape": lambda x, a: torch.tensor(x[0].shape, dtype=torch.int64),
    "Gather": lambda x, a: torch.index_select(x[0], a.get("axis", 0), x[1].reshape(-1)).reshape(
        x[0].shape[: a.get("axis", 0)] + x[1].shape + x[0].shape[a.get("axis", 0) + 1 :]
    ),
    "Concat": lambda x, a: torch.cat(x, dim=a["axis"]),
    "Cast": lambda x, a: x[0].to(ONNX_DTYPES[a["to"]]),
    "Constant": lambda x, a: torch.from_numpy(numpy_helper.to_array(a["value"]).copy()),
}


def network_nodes(graph: onnx.GraphProto) -> tuple[list[onnx.NodeProto], str]:
    """The nodes before the decoding head and the name of the logits they end in: the one
    tensor the head's nodes (those writing ``head_*`` tensors or ``ab``, and those reading them) read from the network."""
    head_outputs = {o for n in graph.node for o in n.output if o.startswith("head_") or o == "ab"}
    for node in graph.node:  # and whatever reads them (another output of the head): nodes are in order
        if set(node.input) & head_outputs:
            head_outputs.update(node.output)
    network = [n for n in graph.node if not set(n.output) & head_outputs]
    produced = {o for n in network for o in n.output}
    head_inputs = {i for n in graph.node if set(n.output) & head_outputs for i in n.input}
    logits = sorted(head_inputs & produced)
    if len(logits) != 1:
        raise ValueError(f"expected one tensor from the network into the head, found {logits}")
    return network, logits[0]


class OnnxGraph(nn.Module):
    """The network of an ONNX graph up to its logits, as torch ops over its initialisers."""

    def __init__(self, proto: onnx.ModelProto) -> None:
        super().__init__()
        self.nodes, self.logits = network_nodes(proto.graph)
        self.input_name = proto.graph.input[0].name
        self.names: list[str] = []
        self.weights = nn.ParameterList()
        self.constants: dict[str, torch.Tensor] = {}
        for initialiser in proto.graph.initializer:
            value = torch.from_numpy(numpy_helper.to_array(initialiser).copy())
            if value.is_floating_point():
                self.names.append(initialiser.name)
                self.weights.append(nn.Parameter(value, requires_grad=False))
            else:
                self.constants[initialiser.name] = value
        self.attributes = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in self.nodes]

    def named_weights(self) -> dict[str, nn.Parameter]:
        return dict(zip(self.names, self.weights))

    def forward(self, l: torch.Tensor) -> torch.Tensor:
        values: dict[str, Any] = {**self.constants, **self.named_weights(), self.input_name: l}
        for node, attributes in zip(self.nodes, self.attributes):
            inputs = [values[name] if name else None for name in node.input]
            while inputs and inputs[-1] is None:
                inputs.pop()
            values[node.output[0]] = OPS[node.op_type](inputs, attributes)
        logits: torch.Tensor = values[self.logits]
        return logits


class OnnxNetwork:
    """A model folder (manifest and ONNX file) with its network ready to train in PyTorch."""

    def __init__(self, directory: Path, manifest: dict[str, Any], proto: onnx.ModelProto) -> None:
        self.directory = directory
        self.manifest = manifest
        self.proto = proto
        self.module = OnnxGraph(proto)

    @classmethod
    def load(cls, directory: Path) -> OnnxNetwork:
        manifest = json.loads((directory / "manifest.json").read_text())
        return cls(directory, manifest, onnx.load(str(directory / manifest["file"])))

    @property
    def input_size(self) -> int:
        return int(self.manifest["input"]["size"])

    @property
    def temperature(self) -> float:
        return float(self.manifest["temperature"])

    def train_only(self, *parts: str) -> list[nn.Parameter]:
        """Let the initialisers read by nodes under ``/part/`` learn, for each of ``parts``;
        freeze every other one. Returns the learning ones, in the order of ``parts``."""
        return [weight for group in self.train_parts({part: 1.0 for part in parts}) for weight in group["params"]]

    def train_parts(self, scales: dict[str, float]) -> list[dict[str, Any]]:
        """Optimizer parameter groups, one per top-level part named in ``scales`` (its weights
        learning at ``lr_scale`` times the peak rate); every other initialiser is frozen."""
        weights = self.module.named_weights()
        for weight in weights.values():
            weight.requires_grad_(False)
        groups = []
        for part, scale in scales.items():
            read = {i for n in self.module.nodes if n.name.startswith(f"/{part}/") for i in n.input}
            chosen = [weight for name, weight in weights.items() if name in read and not weight.requires_grad]
            if not chosen:
                raise ValueError(f"no weights under /{part}/ in {self.directory}")
            for weight in chosen:
                weight.requires_grad_(True)
            groups.append({"params": chosen, "lr_scale": scale})
        return groups

    def trainable(self) -> dict[str, torch.Tensor]:
        return {k: w.detach().clone() for k, w in self.module.named_weights().items() if w.requires_grad}

    def save_trainable(self, path: Path) -> None:
        torch.save(self.trainable(), path)

    def load_trainable(self, path: Path) -> None:
        saved: dict[str, torch.Tensor] = torch.load(path, map_location="cpu")
        weights = self.module.named_weights()
        with torch.no_grad():
            for name, value in saved.items():
                weights[name].copy_(value)

    def write_onnx(self, path: Path, values: dict[str, torch.Tensor]) -> None:
        """A copy of the shipped file with ``values`` in the initialisers of those names."""
        model = onnx.ModelProto()
        model.CopyFrom(self.proto)
        for initialiser in model.graph.initializer:
            if initialiser.name in values:
                array = values[initialiser.name].numpy().astype(np.float32)
                initialiser.CopyFrom(numpy_helper.from_array(array, initialiser.name))
        onnx.checker.check_model(model)
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(path))
