"""Conformance of a Caffe network definition and weights file to the ECCV16 deploy network.

``prototxt_mismatches`` compares a parsed ``.prototxt`` with the layer specification of
``models.eccv16_layers`` and ``check_weights`` the blobs of a parsed ``.caffemodel``; both
list every difference, so one error can report them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models import caffe_proto
from models.eccv16_layers import (
    ANNEALING_SCALE,
    BN_EPS,
    DECODING_LAYERS,
    ECCV16_LAYERS,
    INPUT_SIZE,
    LayerSpec,
    blob_shapes,
)

# --- checking the network definition -------------------------------------------------------


def _single(values: Sequence[int], default: int) -> int | None:
    """The one value of a repeated Caffe size field (None when it holds several)."""
    distinct = set(values) or {default}
    return distinct.pop() if len(distinct) == 1 else None


def _square(param: Any, prefix: str, repeated: str, default: int) -> int | None:
    """A size given either as Caffe's repeated field or as its ``_h``/``_w`` pair."""
    if param.HasField(f"{prefix}_h") or param.HasField(f"{prefix}_w"):
        height, width = getattr(param, f"{prefix}_h"), getattr(param, f"{prefix}_w")
        return height if height == width else None
    return _single(getattr(param, repeated), default)


def _conv_params(param: Any) -> dict[str, Any]:
    return {
        "num_output": param.num_output,
        "kernel_size": _square(param, "kernel", "kernel_size", 0),
        "stride": _square(param, "stride", "stride", 1),
        "pad": _square(param, "pad", "pad", 0),
        "dilation": _single(param.dilation, 1),
        "group": param.group,
        "bias_term": param.bias_term,
    }


def _layer_mismatches(spec: LayerSpec, layer: Any) -> list[str]:
    found: list[str] = []
    if layer.type != spec.kind:
        found.append(f"layer {spec.name}: type {layer.type!r}, expected {spec.kind!r}")
    if list(layer.bottom) != ([spec.bottom] if spec.bottom else []):
        found.append(f"layer {spec.name}: bottom {list(layer.bottom)}, expected {spec.bottom!r}")
    if list(layer.top) != ([spec.top] if spec.top else []):
        found.append(f"layer {spec.name}: top {list(layer.top)}, expected {spec.top!r}")
    if spec.kind in ("Convolution", "Deconvolution"):
        expected = {
            "num_output": spec.channels,
            "kernel_size": spec.kernel,
            "stride": spec.stride,
            "pad": spec.pad,
            "dilation": spec.dilation,
            "group": 1,
            "bias_term": True,
        }
        actual = _conv_params(layer.convolution_param)
        found += [
            f"layer {spec.name}: {key} {actual[key]}, expected {value}"
            for key, value in expected.items()
            if actual[key] != value
        ]
    elif spec.kind == "Input":
        dims = [list(shape.dim) for shape in layer.input_param.shape]
        if len(dims) != 1 or len(dims[0]) != 4 or dims[0][1] != spec.channels:
            found.append(f"layer {spec.name}: input shape {dims}, expected N x {spec.channels} x H x W")
    elif spec.kind == "Scale":
        scale = layer.scale_param
        if scale.bias_term or not np.isclose(scale.filler.value, ANNEALING_SCALE):
            found.append(
                f"layer {spec.name}: scale {scale.filler.value} with bias {scale.bias_term}, "
                f"expected {ANNEALING_SCALE} without bias"
            )
    elif spec.kind == "BatchNorm" and not np.isclose(layer.batch_norm_param.eps, BN_EPS):
        found.append(f"layer {spec.name}: eps {layer.batch_norm_param.eps}, expected {BN_EPS}")
    return found


def prototxt_mismatches(net: Any, layers: Sequence[LayerSpec] = ECCV16_LAYERS) -> list[str]:
    """Every difference between a parsed network definition and ``layers`` (empty: identical)."""
    found: list[str] = []
    defined = list(caffe_proto.net_layers(net))
    names = [layer.name for layer in defined]
    expected_names = [spec.name for spec in layers]
    if names != expected_names:
        missing = [n for n in expected_names if n not in names]
        extra = [n for n in names if n not in expected_names]
        found.append(
            f"layers differ: missing {missing}, unexpected {extra}"
            if missing or extra
            else "layers are in a different order"
        )
    by_name = {layer.name: layer for layer in defined}
    for spec in layers:
        if spec.name in by_name:
            found += _layer_mismatches(spec, by_name[spec.name])
    return found


def input_size(net: Any) -> int:
    """The square input side of a network definition (224 for the release)."""
    for layer in caffe_proto.net_layers(net):
        if layer.type == "Input" and layer.input_param.shape:
            return int(layer.input_param.shape[0].dim[-1])
    return INPUT_SIZE


# --- checking the weights ----------------------------------------------------------------


def _canonical(shape: Sequence[int]) -> tuple[int, ...]:
    # Legacy 4-D blobs pad vectors with leading ones: (1, 1, 1, C) is the vector (C,).
    shape = tuple(int(d) for d in shape)
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def _blob_mismatches(name: str, blobs: Sequence[Any], expected: list[tuple[int, ...]]) -> list[str]:
    if len(blobs) != len(expected):
        return [f"layer {name}: {len(blobs)} blobs, expected {len(expected)}"]
    found = []
    for index, (blob, shape) in enumerate(zip(blobs, expected)):
        actual = caffe_proto.blob_shape(blob)
        if _canonical(actual) != _canonical(shape):
            found.append(f"layer {name} blob {index}: shape {actual}, expected {shape}")
        elif caffe_proto.blob_size(blob) != int(np.prod(shape)):
            found.append(
                f"layer {name} blob {index}: {caffe_proto.blob_size(blob)} values, expected {int(np.prod(shape))}"
            )
    return found


@dataclass(frozen=True)
class WeightsCheck:
    mismatches: list[str]
    ignored: list[str]  # layers whose stored blobs are not used, and why


def check_weights(net: Any, layers: Sequence[LayerSpec] = ECCV16_LAYERS) -> WeightsCheck:
    """Compare each layer's blobs in a parsed weights file with the shapes ``layers`` need."""
    stored: dict[str, Any] = {}
    for layer in caffe_proto.net_layers(net):
        stored.setdefault(layer.name, layer)
    expected = blob_shapes(layers)
    mismatches: list[str] = []
    ignored: list[str] = []
    for name, shapes in expected.items():
        layer = stored.get(name)
        if name in DECODING_LAYERS:
            if layer is not None and len(layer.blobs):
                # The shape must still fit: a wrong one means a different network.
                mismatches += _blob_mismatches(name, layer.blobs[: len(shapes)], shapes[: len(layer.blobs)])
                ignored.append(f"{name}: stored blobs ignored, set from the bins and the network definition")
            continue
        if layer is None:
            mismatches.append(f"layer {name}: missing from the weights file")
            continue
        if isinstance(layer.type, str) and layer.type and layer.type != _kind_of(layers, name):
            mismatches.append(f"layer {name}: type {layer.type!r}, expected {_kind_of(layers, name)!r}")
        mismatches += _blob_mismatches(name, layer.blobs, shapes)
    ignored += [
        f"{name}: not part of the deploy network (training only)"
        for name, layer in stored.items()
        if name not in expected and len(layer.blobs)
    ]
    return WeightsCheck(mismatches, ignored)


def _kind_of(layers: Sequence[LayerSpec], name: str) -> str:
    return next(layer.kind for layer in layers if layer.name == name)
