"""Reads Caffe network files (binary ``.caffemodel``, text ``.prototxt``) without Caffe.

Only the part of ``caffe.proto`` the ECCV16 importer needs is declared, with Caffe's own
field numbers and defaults, so the binary weights file parses with the ordinary protobuf
runtime and no code generation step. Fields left out are kept as unknown fields by the
binary parser and skipped by the text parser.

The messages live in a private descriptor pool: another library that registers the full
``caffe.proto`` in the default pool cannot clash with this subset.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf.message import DecodeError

from shared.errors import ModelFileError

_F = descriptor_pb2.FieldDescriptorProto

# (name, number, label, type, message type or None, default or None, packed)
_Field = tuple[str, int, int, int, "str | None", "str | None", bool]

_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_STRING, _FLOAT, _DOUBLE, _BOOL = _F.TYPE_STRING, _F.TYPE_FLOAT, _F.TYPE_DOUBLE, _F.TYPE_BOOL
_INT32, _INT64, _UINT32, _MESSAGE = _F.TYPE_INT32, _F.TYPE_INT64, _F.TYPE_UINT32, _F.TYPE_MESSAGE

# Field numbers and defaults as in BVLC caffe/src/caffe/proto/caffe.proto.
_MESSAGES: dict[str, list[_Field]] = {
    "BlobShape": [
        ("dim", 1, _REPEATED, _INT64, None, None, True),
    ],
    "BlobProto": [
        ("shape", 7, _OPTIONAL, _MESSAGE, "BlobShape", None, False),
        ("data", 5, _REPEATED, _FLOAT, None, None, True),
        ("diff", 6, _REPEATED, _FLOAT, None, None, True),
        ("double_data", 8, _REPEATED, _DOUBLE, None, None, True),
        ("double_diff", 9, _REPEATED, _DOUBLE, None, None, True),
        # Legacy 4-D shape of blobs written before BlobShape existed.
        ("num", 1, _OPTIONAL, _INT32, None, "0", False),
        ("channels", 2, _OPTIONAL, _INT32, None, "0", False),
        ("height", 3, _OPTIONAL, _INT32, None, "0", False),
        ("width", 4, _OPTIONAL, _INT32, None, "0", False),
    ],
    "FillerParameter": [
        ("type", 1, _OPTIONAL, _STRING, None, "constant", False),
        ("value", 2, _OPTIONAL, _FLOAT, None, "0", False),
    ],
    "ParamSpec": [
        ("name", 1, _OPTIONAL, _STRING, None, None, False),
        ("lr_mult", 3, _OPTIONAL, _FLOAT, None, "1", False),
        ("decay_mult", 4, _OPTIONAL, _FLOAT, None, "1", False),
    ],
    "InputParameter": [
        ("shape", 1, _REPEATED, _MESSAGE, "BlobShape", None, False),
    ],
    "ConvolutionParameter": [
        ("num_output", 1, _OPTIONAL, _UINT32, None, None, False),
        ("bias_term", 2, _OPTIONAL, _BOOL, None, "true", False),
        ("pad", 3, _REPEATED, _UINT32, None, None, False),
        ("kernel_size", 4, _REPEATED, _UINT32, None, None, False),
        ("group", 5, _OPTIONAL, _UINT32, None, "1", False),
        ("stride", 6, _REPEATED, _UINT32, None, None, False),
        ("weight_filler", 7, _OPTIONAL, _MESSAGE, "FillerParameter", None, False),
        ("bias_filler", 8, _OPTIONAL, _MESSAGE, "FillerParameter", None, False),
        ("pad_h", 9, _OPTIONAL, _UINT32, None, "0", False),
        ("pad_w", 10, _OPTIONAL, _UINT32, None, "0", False),
        ("kernel_h", 11, _OPTIONAL, _UINT32, None, None, False),
        ("kernel_w", 12, _OPTIONAL, _UINT32, None, None, False),
        ("stride_h", 13, _OPTIONAL, _UINT32, None, None, False),
        ("stride_w", 14, _OPTIONAL, _UINT32, None, None, False),
        ("axis", 16, _OPTIONAL, _INT32, None, "1", False),
        ("dilation", 18, _REPEATED, _UINT32, None, None, False),
    ],
    "BatchNormParameter": [
        ("use_global_stats", 1, _OPTIONAL, _BOOL, None, None, False),
        ("moving_average_fraction", 2, _OPTIONAL, _FLOAT, None, "0.999", False),
        ("eps", 3, _OPTIONAL, _FLOAT, None, "1e-05", False),
    ],
    "ScaleParameter": [
        ("axis", 1, _OPTIONAL, _INT32, None, "1", False),
        ("num_axes", 2, _OPTIONAL, _INT32, None, "1", False),
        ("filler", 3, _OPTIONAL, _MESSAGE, "FillerParameter", None, False),
        ("bias_term", 4, _OPTIONAL, _BOOL, None, "false", False),
        ("bias_filler", 5, _OPTIONAL, _MESSAGE, "FillerParameter", None, False),
    ],
    "SoftmaxParameter": [
        ("axis", 2, _OPTIONAL, _INT32, None, "1", False),
    ],
    "LayerParameter": [
        ("name", 1, _OPTIONAL, _STRING, None, None, False),
        ("type", 2, _OPTIONAL, _STRING, None, None, False),
        ("bottom", 3, _REPEATED, _STRING, None, None, False),
        ("top", 4, _REPEATED, _STRING, None, None, False),
        ("loss_weight", 5, _REPEATED, _FLOAT, None, None, False),
        ("param", 6, _REPEATED, _MESSAGE, "ParamSpec", None, False),
        ("blobs", 7, _REPEATED, _MESSAGE, "BlobProto", None, False),
        ("convolution_param", 106, _OPTIONAL, _MESSAGE, "ConvolutionParameter", None, False),
        ("softmax_param", 125, _OPTIONAL, _MESSAGE, "SoftmaxParameter", None, False),
        ("batch_norm_param", 139, _OPTIONAL, _MESSAGE, "BatchNormParameter", None, False),
        ("scale_param", 142, _OPTIONAL, _MESSAGE, "ScaleParameter", None, False),
        ("input_param", 143, _OPTIONAL, _MESSAGE, "InputParameter", None, False),
    ],
    # Layers of files written by Caffe before 2015; only what identifies a layer and its blobs.
    "V1LayerParameter": [
        ("bottom", 2, _REPEATED, _STRING, None, None, False),
        ("top", 3, _REPEATED, _STRING, None, None, False),
        ("name", 4, _OPTIONAL, _STRING, None, None, False),
        ("type", 5, _OPTIONAL, _INT32, None, None, False),  # an enum in caffe.proto
        ("blobs", 6, _REPEATED, _MESSAGE, "BlobProto", None, False),
        ("convolution_param", 10, _OPTIONAL, _MESSAGE, "ConvolutionParameter", None, False),
    ],
    "NetParameter": [
        ("name", 1, _OPTIONAL, _STRING, None, None, False),
        ("layers", 2, _REPEATED, _MESSAGE, "V1LayerParameter", None, False),
        ("input", 3, _REPEATED, _STRING, None, None, False),
        ("input_dim", 4, _REPEATED, _INT32, None, None, False),
        ("input_shape", 8, _REPEATED, _MESSAGE, "BlobShape", None, False),
        ("layer", 100, _REPEATED, _MESSAGE, "LayerParameter", None, False),
    ],
}

_PACKAGE = "caffe"


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name="colorize/caffe_subset.proto", package=_PACKAGE, syntax="proto2")
    for message_name, fields in _MESSAGES.items():
        message = proto.message_type.add(name=message_name)
        for name, number, label, kind, type_name, default, packed in fields:
            field = message.field.add(name=name, number=number, label=label, type=kind)
            if type_name is not None:
                field.type_name = f".{_PACKAGE}.{type_name}"
            if default is not None:
                field.default_value = default
            if packed:
                field.options.packed = True
    return proto


def _message_classes() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file_descriptor())
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}")) for name in _MESSAGES
    }


_CLASSES = _message_classes()
NetParameter = _CLASSES["NetParameter"]
LayerParameter = _CLASSES["LayerParameter"]
BlobProto = _CLASSES["BlobProto"]
BlobShape = _CLASSES["BlobShape"]


def read_caffemodel(path: Path) -> Any:
    """Parse a binary ``.caffemodel`` into a ``NetParameter``."""
    net = NetParameter()
    try:
        net.ParseFromString(Path(path).read_bytes())
    except DecodeError as exc:
        raise ModelFileError(f"{path} is not a Caffe weights file: {exc}") from exc
    return net


def read_prototxt(path: Path) -> Any:
    """Parse a text ``.prototxt`` network definition into a ``NetParameter``."""
    net = NetParameter()
    try:
        text_format.Parse(Path(path).read_text(encoding="utf-8"), net, allow_unknown_field=True)
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path} is not a Caffe network definition: {exc}") from exc
    return net


def net_layers(net: Any) -> Iterable[Any]:
    """The layers of ``net`` whichever generation of the format wrote it."""
    layers: Iterable[Any] = net.layer if len(net.layer) else net.layers
    return layers


def blob_shape(blob: Any) -> tuple[int, ...]:
    """Shape of a blob; legacy blobs (num, channels, height, width) included."""
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim)
    return (blob.num, blob.channels, blob.height, blob.width)


def blob_size(blob: Any) -> int:
    """Number of values stored in a blob."""
    return len(blob.data) or len(blob.double_data)


def blob_array(blob: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Values of a blob as float32, reshaped to ``shape`` (the size must already be checked)."""
    values = blob.data if len(blob.data) else blob.double_data
    return np.asarray(values, dtype=np.float32).reshape(shape)


def array_blob(values: np.ndarray) -> Any:
    """A ``BlobProto`` holding ``values`` with their shape, as Caffe writes it."""
    blob = BlobProto()
    blob.shape.dim.extend(int(d) for d in values.shape)
    blob.data.extend(np.asarray(values, dtype=np.float32).ravel().tolist())
    return blob
