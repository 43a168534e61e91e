"""The ECCV16 network of Zhang, Isola & Efros as data: the deploy network
(``colorization_deploy_v2.prototxt``) layer by layer, and the blob shapes its weights have.

Two layers of the deploy network are decoding, not learning: ``conv8_313_rh`` multiplies the
logits by 2.606 (= 1/T, T = 0.38) and ``class8_ab`` holds the 313 bin centres.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from shared.colour.bins import NUM_BINS

INPUT_SIZE = 224
L_SUBTRACT = 50.0  # the network sees L - 50
DOWNSAMPLE = 4
LOGITS_LAYER = "conv8_313"
TEMPERATURE_LAYER = "conv8_313_rh"
BINS_LAYER = "class8_ab"
# The factor conv8_313_rh applies in the deploy network: 1/T for T = 0.38.
ANNEALING_SCALE = 2.606
BN_EPS = 1e-5  # Caffe's BatchNorm default; the deploy network keeps it


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


def _block(
    number: int,
    bottom: str,
    channels: int,
    convs: int,
    *,
    last_stride: int = 1,
    dilation: int = 1,
    first_name: str | None = None,
) -> tuple[LayerSpec, ...]:
    """Block ``number`` of the encoder: 3x3 convolutions ``conv<number>_1`` .. ``conv<number>_<convs>``,
    each followed by its ReLU ``relu<number>_<i>``, then the BatchNorm ``conv<number>_<convs>norm``.

    Only the last convolution has ``last_stride``; padding equals ``dilation``, so the others keep
    the map's size. ``first_name`` renames the first convolution (its output keeps its name).
    """
    layers: list[LayerSpec] = []
    for index in range(1, convs + 1):
        top = f"conv{number}_{index}"
        name = first_name if index == 1 and first_name else top
        stride = last_stride if index == convs else 1
        layers.append(_conv(name, bottom, top, channels, stride=stride, pad=dilation, dilation=dilation))
        layers.append(_relu(f"relu{number}_{index}", top))
        bottom = top
    layers.append(_bn(f"{bottom}norm", bottom))
    return tuple(layers)


ECCV16_LAYERS: tuple[LayerSpec, ...] = (
    _input("data_l"),
    *_block(1, "data_l", 64, convs=2, last_stride=2, first_name="bw_conv1_1"),
    *_block(2, "conv1_2norm", 128, convs=2, last_stride=2),
    *_block(3, "conv2_2norm", 256, convs=3, last_stride=2),
    *_block(4, "conv3_3norm", 512, convs=3),
    *_block(5, "conv4_3norm", 512, convs=3, dilation=2),
    *_block(6, "conv5_3norm", 512, convs=3, dilation=2),
    *_block(7, "conv6_3norm", 512, convs=3),
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

# Set from the bins and the network definition, never from a weights file.
DECODING_LAYERS = (TEMPERATURE_LAYER, BINS_LAYER)
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
