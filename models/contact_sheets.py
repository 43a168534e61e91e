"""Contact sheets: photos side by side with what each method made of them, to be looked at.

``colorize eval`` draws one from the photos it scores (grey input | models | original) and,
with ``--sheet-only``, pages of them for a folder without colour truth (input | models), such
as scans of old black-and-white photographs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

Colorizer = Callable[[list[np.ndarray]], list[np.ndarray]]


def contact_sheet(
    rows: list[list[np.ndarray]], labels: list[str], box: int = 192, captions: Sequence[str] = ()
) -> np.ndarray:
    """One row per photo, one column per label; each photo fitted into a ``box`` square, the
    row's caption (when given) written under its first photo."""

    def tile(img: np.ndarray, caption: str) -> np.ndarray:
        scale = box / max(img.shape[:2])
        small = cv2.resize(
            img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA
        )
        canvas = np.full((box + 4, box + 4, 3), 255, np.uint8)
        top, left = (box + 4 - small.shape[0]) // 2, (box + 4 - small.shape[1]) // 2
        canvas[top : top + small.shape[0], left : left + small.shape[1]] = small
        if caption:
            cv2.rectangle(canvas, (0, box - 14), (box + 4, box + 4), (255, 255, 255), -1)
            cv2.putText(canvas, caption, (4, box), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        return canvas

    title = np.full((24, (box + 4) * len(labels), 3), 255, np.uint8)
    for i, label in enumerate(labels):
        cv2.putText(title, label, (i * (box + 4) + 4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    captions = list(captions) or [""] * len(rows)
    lines = [
        np.hstack([tile(img, caption if j == 0 else "") for j, img in enumerate(row)])
        for row, caption in zip(rows, captions)
    ]
    return np.vstack([title, *lines])


def folder_sheets(
    files: Sequence[Path], methods: dict[str, Colorizer], per_page: int, box: int = 256, batch: int = 16
) -> list[np.ndarray]:
    """Pages of ``per_page`` rows (the photo as it is, then each method's colorization of it),
    for photos without colour truth; files that cannot be read as images are left out."""
    rows: list[list[np.ndarray]] = []
    captions: list[str] = []
    for start in range(0, len(files), batch):
        loaded = [(path, cv2.imread(str(path), cv2.IMREAD_COLOR)) for path in files[start : start + batch]]
        photos = [image for _, image in loaded if image is not None]
        captions += [path.name for path, image in loaded if image is not None]
        outputs = [colorize(photos) for colorize in methods.values()]
        rows += [[photo, *(output[i] for output in outputs)] for i, photo in enumerate(photos)]
    labels = ["input", *methods]
    return [
        contact_sheet(rows[i : i + per_page], labels, box, captions[i : i + per_page])
        for i in range(0, len(rows), per_page)
    ]
