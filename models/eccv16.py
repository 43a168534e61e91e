"""Conversion of the released ECCV16 Caffe weights of Zhang, Isola & Efros into a model of
this project.

``convert_caffemodel`` checks a weights file and a network definition against the deploy
network (``models.eccv16_layers``, with the checks of ``models.eccv16_checks``), rebuilds
the network as an ONNX graph up to the ``conv8_313`` logits and appends the project's
annealed-mean decoding head.

Two layers of the deploy network are decoding, not learning: ``conv8_313_rh`` multiplies the
logits by 2.606 (= 1/T, T = 0.38) and ``class8_ab`` holds the 313 bin centres. As in the
original demo, neither is taken from the weights file: the head gets the bins from
``shared.colour.bins`` and the 2.606 of the network definition becomes the manifest's default
temperature, which each job may override.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models import caffe_proto
from models.eccv16_checks import check_weights, input_size, prototxt_mismatches
from models.eccv16_layers import (
    BN_EPS,
    DECODING_LAYERS,
    DOWNSAMPLE,
    ECCV16_LAYERS,
    L_SUBTRACT,
    LOGITS_LAYER,
    TEMPERATURE_LAYER,
    LayerSpec,
    blob_shapes,
)
from models.onnx_head import append_annealed_mean_head
from shared.colour.bins import NUM_BINS, ab_bins
from shared.colour.model_manifests import ModelManifest, file_sha256, load_manifest, write_manifest
from shared.errors import ModelFileError

MODEL_FILE = "model.onnx"
INPUT_NAME = "l"

OPSET = 17
IR_VERSION = 8

LICENCE = "BSD-2-Clause, Copyright (c) 2016, Richard Zhang, Phillip Isola, Alexei A. Efros"
TRAINING_DATA = "ImageNet (research use)"


# --- reading the weights -----------------------------------------------------------------


def _weights(net: Any, layers: Sequence[LayerSpec]) -> dict[str, list[np.ndarray]]:
    stored: dict[str, Any] = {}
    for layer in caffe_proto.net_layers(net):
        stored.setdefault(layer.name, layer)
    return {
        name: [caffe_proto.blob_array(blob, shape) for blob, shape in zip(stored[name].blobs, shapes)]
        for name, shapes in blob_shapes(layers).items()
        if name not in DECODING_LAYERS
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
    tensor_of: dict[str | None, str] = {}  # Caffe blob name -> latest ONNX tensor holding it

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
        # The release's bin statistics (its ImageNet rebalancing weights) are not known here,
        # so its head has no prior correction.
        "prior_alpha": 0.0,
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
