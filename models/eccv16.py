"""The ECCV16 network of Zhang, Isola & Efros and the importer of its released Caffe weights.

``ECCV16_LAYERS`` is the deploy network (``colorization_deploy_v2.prototxt``) as data, layer
by layer. ``convert_caffemodel`` checks a weights file and a network definition against it,
rebuilds the network as an ONNX graph up to the ``conv8_313`` logits and appends the
project's annealed-mean decoding head.

Two layers of the deploy network are decoding, not learning: ``conv8_313_rh`` multiplies the
logits by 2.606 (= 1/T, T = 0.38) and ``class8_ab`` holds the 313 bin centres. As in the
original demo, neither is taken from the weights file: the head gets the bins from
``shared.bins`` and the 2.606 of the network definition becomes the manifest's default
temperature, which each job may override.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models import caffe_proto
from models.onnx_head import append_annealed_mean_head
from shared.bins import NUM_BINS, ab_bins
from shared.errors import ModelFileError
from shared.manifests import ModelManifest, file_sha256, load_manifest, write_manifest

MODEL_FILE = "model.onnx"
INPUT_NAME = "l"
INPUT_SIZE = 224
L_SUBTRACT = 50.0  # the network sees L - 50
DOWNSAMPLE = 4
LOGITS_LAYER = "conv8_313"
TEMPERATURE_LAYER = "conv8_313_rh"
BINS_LAYER = "class8_ab"
# The factor conv8_313_rh applies in the deploy network: 1/T for T = 0.38.
ANNEALING_SCALE = 2.606
BN_EPS = 1e-5  # Caffe's BatchNorm default; the deploy network keeps it

OPSET = 17
IR_VERSION = 8

LICENCE = "BSD-2-Clause, Copyright (c) 2016, Richard Zhang, Phillip Isola, Alexei A. Efros"
TRAINING_DATA = "ImageNet (research use)"


@dataclass(frozen=True)
class LayerSpec:
    """One layer of the deploy network, named and typed as in the Caffe definition."""

    name: str
    kind: str  # the Caffe layer type
    bottom: str | None
    top: str | None
    channels: int = 0  # output channels of a Convolution / Deconvolution
    kernel: int = 0
    stride: int = 1
    pad: int = 0
    dilation: int = 1


def _input(name: str) -> LayerSpec:
    return LayerSpec(name, "Input", None, name, channels=1)


def _conv(
    name: str,
    bottom: str,
    top: str,
    channels: int,
    kernel: int = 3,
    stride: int = 1,
    pad: int = 1,
    dilation: int = 1,
    kind: str = "Convolution",
) -> LayerSpec:
    return LayerSpec(name, kind, bottom, top, channels, kernel, stride, pad, dilation)


def _relu(name: str, blob: str) -> LayerSpec:
    return LayerSpec(name, "ReLU", blob, blob)


def _bn(name: str, bottom: str) -> LayerSpec:
    return LayerSpec(name, "BatchNorm", bottom, name)


ECCV16_LAYERS: tuple[LayerSpec, ...] = (
    _input("data_l"),
    _conv("bw_conv1_1", "data_l", "conv1_1", 64),
    _relu("relu1_1", "conv1_1"),
    _conv("conv1_2", "conv1_1", "conv1_2", 64, stride=2),
    _relu("relu1_2", "conv1_2"),
    _bn("conv1_2norm", "conv1_2"),
    _conv("conv2_1", "conv1_2norm", "conv2_1", 128),
    _relu("relu2_1", "conv2_1"),
    _conv("conv2_2", "conv2_1", "conv2_2", 128, stride=2),
    _relu("relu2_2", "conv2_2"),
    _bn("conv2_2norm", "conv2_2"),
    _conv("conv3_1", "conv2_2norm", "conv3_1", 256),
    _relu("relu3_1", "conv3_1"),
    _conv("conv3_2", "conv3_1", "conv3_2", 256),
    _relu("relu3_2", "conv3_2"),
    _conv("conv3_3", "conv3_2", "conv3_3", 256, stride=2),
    _relu("relu3_3", "conv3_3"),
    _bn("conv3_3norm", "conv3_3"),
    _conv("conv4_1", "conv3_3norm", "conv4_1", 512),
    _relu("relu4_1", "conv4_1"),
    _conv("conv4_2", "conv4_1", "conv4_2", 512),
    _relu("relu4_2", "conv4_2"),
    _conv("conv4_3", "conv4_2", "conv4_3", 512),
    _relu("relu4_3", "conv4_3"),
    _bn("conv4_3norm", "conv4_3"),
    _conv("conv5_1", "conv4_3norm", "conv5_1", 512, pad=2, dilation=2),
    _relu("relu5_1", "conv5_1"),
    _conv("conv5_2", "conv5_1", "conv5_2", 512, pad=2, dilation=2),
    _relu("relu5_2", "conv5_2"),
    _conv("conv5_3", "conv5_2", "conv5_3", 512, pad=2, dilation=2),
    _relu("relu5_3", "conv5_3"),
    _bn("conv5_3norm", "conv5_3"),
    _conv("conv6_1", "conv5_3norm", "conv6_1", 512, pad=2, dilation=2),
    _relu("relu6_1", "conv6_1"),
    _conv("conv6_2", "conv6_1", "conv6_2", 512, pad=2, dilation=2),
    _relu("relu6_2", "conv6_2"),
    _conv("conv6_3", "conv6_2", "conv6_3", 512, pad=2, dilation=2),
    _relu("relu6_3", "conv6_3"),
    _bn("conv6_3norm", "conv6_3"),
    _conv("conv7_1", "conv6_3norm", "conv7_1", 512),
    _relu("relu7_1", "conv7_1"),
    _conv("conv7_2", "conv7_1", "conv7_2", 512),
    _relu("relu7_2", "conv7_2"),
    _conv("conv7_3", "conv7_2", "conv7_3", 512),
    _relu("relu7_3", "conv7_3"),
    _bn("conv7_3norm", "conv7_3"),
    _conv("conv8_1", "conv7_3norm", "conv8_1", 256, kernel=4, stride=2, pad=1, kind="Deconvolution"),
    _relu("relu8_1", "conv8_1"),
    _conv("conv8_2", "conv8_1", "conv8_2", 256),
    _relu("relu8_2", "conv8_2"),
    _conv("conv8_3", "conv8_2", "conv8_3", 256),
    _relu("relu8_3", "conv8_3"),
    _conv(LOGITS_LAYER, "conv8_3", "conv8_313", NUM_BINS, kernel=1, pad=0),
    LayerSpec(TEMPERATURE_LAYER, "Scale", "conv8_313", "conv8_313_rh"),
    LayerSpec("class8_313_rh", "Softmax", "conv8_313_rh", "class8_313_rh"),
    _conv(BINS_LAYER, "class8_313_rh", "class8_ab", 2, kernel=1, pad=0),
    LayerSpec("Silence", "Silence", "class8_ab", None),
)

_DECODING_LAYERS = (TEMPERATURE_LAYER, BINS_LAYER)
_FIXED_WIDTH_LAYERS = (LOGITS_LAYER, BINS_LAYER)  # 313 bins, 2 ab channels


def width_scaled(layers: Sequence[LayerSpec], divisor: int) -> tuple[LayerSpec, ...]:
    """The same network with hidden layers ``divisor`` times narrower: a small stand-in for tests."""
    return tuple(
        replace(layer, channels=layer.channels // divisor)
        if layer.kind in ("Convolution", "Deconvolution") and layer.name not in _FIXED_WIDTH_LAYERS
        else layer
        for layer in layers
    )


def blob_shapes(layers: Sequence[LayerSpec]) -> dict[str, list[tuple[int, ...]]]:
    """Shapes of the blobs Caffe stores for each layer that has any, in Caffe's order."""
    channels: dict[str, int] = {}
    shapes: dict[str, list[tuple[int, ...]]] = {}
    for layer in layers:
        c_in = channels.get(layer.bottom, 0) if layer.bottom else 0
        c_out = c_in
        if layer.kind == "Input":
            c_out = layer.channels
        elif layer.kind == "Convolution":
            c_out = layer.channels
            shapes[layer.name] = [(c_out, c_in, layer.kernel, layer.kernel), (c_out,)]
        elif layer.kind == "Deconvolution":
            # Caffe stores a deconvolution's weights input-channels first, as ONNX ConvTranspose does.
            c_out = layer.channels
            shapes[layer.name] = [(c_in, c_out, layer.kernel, layer.kernel), (c_out,)]
        elif layer.kind == "BatchNorm":
            shapes[layer.name] = [(c_in,), (c_in,), (1,)]  # mean, variance, scale factor
        elif layer.kind == "Scale":
            shapes[layer.name] = [(c_in,)]
        if layer.top:
            channels[layer.top] = c_out
    return shapes


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
        if name in _DECODING_LAYERS:
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


def _weights(net: Any, layers: Sequence[LayerSpec]) -> dict[str, list[np.ndarray]]:
    stored: dict[str, Any] = {}
    for layer in caffe_proto.net_layers(net):
        stored.setdefault(layer.name, layer)
    return {
        name: [caffe_proto.blob_array(blob, shape) for blob, shape in zip(stored[name].blobs, shapes)]
        for name, shapes in blob_shapes(layers).items()
        if name not in _DECODING_LAYERS
    }


# --- building the ONNX graph -------------------------------------------------------------


def _batchnorm_statistics(blobs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    mean, variance, factor = blobs
    # Caffe stores running sums; the third blob is the factor they are divided by (0: unused).
    scale = 0.0 if factor.reshape(-1)[0] == 0 else 1.0 / float(factor.reshape(-1)[0])
    return (mean * scale).astype(np.float32), (variance * scale).astype(np.float32)


def build_graph(
    weights: Mapping[str, list[np.ndarray]], layers: Sequence[LayerSpec] = ECCV16_LAYERS, eps: float = BN_EPS
) -> onnx.ModelProto:
    """ONNX model from input ``l`` (N, 1, H, W) = L - 50 to the ``conv8_313`` logits."""
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    tensor_of: dict[str, str] = {}  # Caffe blob name -> latest ONNX tensor holding it

    def const(name: str, value: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name))
        return name

    for layer in layers:
        if layer.kind == "Input":
            tensor_of[layer.top] = INPUT_NAME
            continue
        source = tensor_of[layer.bottom]
        # Caffe's ReLUs work in place; the graph gives every layer its own output tensor.
        output = layer.name
        if layer.kind in ("Convolution", "Deconvolution"):
            weight, bias = weights[layer.name]
            nodes.append(
                helper.make_node(
                    "Conv" if layer.kind == "Convolution" else "ConvTranspose",
                    [source, const(f"{layer.name}.weight", weight), const(f"{layer.name}.bias", bias)],
                    [output],
                    name=layer.name,
                    kernel_shape=[layer.kernel] * 2,
                    strides=[layer.stride] * 2,
                    pads=[layer.pad] * 4,
                    dilations=[layer.dilation] * 2,
                )
            )
        elif layer.kind == "ReLU":
            nodes.append(helper.make_node("Relu", [source], [output], name=layer.name))
        elif layer.kind == "BatchNorm":
            # A ReLU sits between each convolution and its BatchNorm, and the next convolution
            # zero-pads the normalised map, so folding into either conv would change the result.
            mean, variance = _batchnorm_statistics(weights[layer.name])
            ones, zeros = np.ones_like(mean), np.zeros_like(mean)
            nodes.append(
                helper.make_node(
                    "BatchNormalization",
                    [
                        source,
                        const(f"{layer.name}.scale", ones),
                        const(f"{layer.name}.shift", zeros),
                        const(f"{layer.name}.mean", mean),
                        const(f"{layer.name}.variance", variance),
                    ],
                    [output],
                    name=layer.name,
                    epsilon=eps,
                )
            )
        tensor_of[layer.top] = output
        if layer.name == LOGITS_LAYER:
            break
    else:
        raise ValueError(f"network has no {LOGITS_LAYER} layer")

    graph = helper.make_graph(
        nodes,
        "eccv16",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info(LOGITS_LAYER, TensorProto.FLOAT, ["N", NUM_BINS, "h", "w"])],
        initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="colorize-eccv16-importer"
    )
    model.ir_version = IR_VERSION
    return model


# --- conversion ----------------------------------------------------------------------------


def _raise_mismatches(what: Path, mismatches: list[str]) -> None:
    if mismatches:
        listing = "\n".join(f"  - {m}" for m in mismatches)
        raise ModelFileError(
            f"{what} does not match the ECCV16 network ({len(mismatches)} differences):\n{listing}",
            file=str(what),
            mismatches=mismatches,
        )


def convert_caffemodel(
    caffemodel: Path,
    prototxt: Path,
    out_dir: Path,
    name: str = "eccv16",
    *,
    provenance: Mapping[str, Any] | None = None,
    layers: Sequence[LayerSpec] = ECCV16_LAYERS,
) -> ModelManifest:
    """Convert released ECCV16 Caffe weights into ``out_dir/<name>/`` (model.onnx + manifest.json).

    Both files are checked against ``layers`` first; any difference raises ModelFileError
    listing all of them, and nothing is written. ``provenance`` (source URLs, published
    checksums) is recorded in the manifest next to the sha256 of the weights file.
    ``layers`` other than the default serve only to test the converter on a narrow network.
    """
    caffemodel, prototxt, out_dir = Path(caffemodel), Path(prototxt), Path(out_dir)
    definition = caffe_proto.read_prototxt(prototxt)
    _raise_mismatches(prototxt, prototxt_mismatches(definition, layers))
    net = caffe_proto.read_caffemodel(caffemodel)
    check = check_weights(net, layers)
    _raise_mismatches(caffemodel, check.mismatches)

    scale = next(l.scale_param.filler.value for l in caffe_proto.net_layers(definition) if l.name == TEMPERATURE_LAYER)
    model = build_graph(_weights(net, layers), layers)
    del net
    model = append_annealed_mean_head(model, LOGITS_LAYER, ab_bins())
    onnx.checker.check_model(model)

    manifest = {
        "name": name,
        "description": "Zhang, Isola & Efros, Colorful Image Colorization (ECCV 2016), released weights",
        "format": "onnx",
        "file": MODEL_FILE,
        "input": {
            "name": INPUT_NAME,
            "size": input_size(definition),
            "normalisation": {"subtract": L_SUBTRACT, "divide": 1.0},
        },
        "output": {"name": "ab", "downsample": DOWNSAMPLE},
        "bins": "eccv16-313",
        "temperature": 1.0 / float(scale),
        "licence": LICENCE,
        "training_data": TRAINING_DATA,
        "provenance": {
            **dict(provenance or {}),
            "caffemodel_file": caffemodel.name,
            "caffemodel_sha256": file_sha256(caffemodel),
            "prototxt_file": prototxt.name,
            "prototxt_sha256": file_sha256(prototxt),
            "converter": "models/eccv16.py",
            "ignored_blobs": check.ignored,
        },
    }
    return _write_model(out_dir, name, model, manifest)


def _write_model(out_dir: Path, name: str, model: onnx.ModelProto, manifest: dict[str, Any]) -> ModelManifest:
    """Write the model beside its final place, then swap it in, so no half model is ever seen."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out_dir))
    try:
        onnx.save(model, staging / MODEL_FILE)
        write_manifest(staging, manifest)
        target = out_dir / name
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{name}-old-", dir=out_dir))
            target.rename(retired / name)
            staging.rename(target)
            shutil.rmtree(retired)
        else:
            staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return load_manifest(out_dir, name)
