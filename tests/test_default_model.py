"""The shipped default model colorizes real photos: not grey, and closer to the truth than a tint.

The photos are the sample images bundled with scikit-image and scikit-learn.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from shared.colour.colorizer import colorize
from shared.colour.engine import Engine
from shared.colour.lab import bgr_to_lab, lab_to_bgr
from shared.colour.model_manifests import DEFAULT_MODEL, load_manifest
from shared.settings import Settings

skimage_data = pytest.importorskip("skimage.data")
sklearn_datasets = pytest.importorskip("sklearn.datasets")

SEPIA_AB = (8.0, 22.0)  # a fixed sepia tint in Lab


def sample_photos() -> list[np.ndarray]:
    rgb = [getattr(skimage_data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket")]
    rgb += list(sklearn_datasets.load_sample_images().images)  # china, flower
    return [cv2.cvtColor(photo, cv2.COLOR_RGB2BGR) for photo in rgb]


def with_ab(lab: np.ndarray, ab: tuple[float, float]) -> np.ndarray:
    toned = lab.copy()
    toned[..., 1], toned[..., 2] = ab
    return lab_to_bgr(toned)


def ab_correlation(output: np.ndarray, truth_lab: np.ndarray) -> float:
    """Mean over a and b of the Pearson correlation between output and true chroma (0 if constant)."""
    predicted = bgr_to_lab(output)
    values = []
    for channel in (1, 2):
        p, t = predicted[..., channel].ravel(), truth_lab[..., channel].ravel()
        values.append(0.0 if p.std() < 1e-3 or t.std() < 1e-3 else float(np.corrcoef(p, t)[0, 1]))
    return float(np.mean(values))


@pytest.fixture(scope="module")
def results() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    settings = Settings()
    engine = Engine.load(load_manifest(settings.models_dir, "default"), device="cpu")
    assert engine.manifest.name == DEFAULT_MODEL
    photos = sample_photos()
    truths = [bgr_to_lab(photo) for photo in photos]
    greys = [with_ab(truth, (0.0, 0.0)) for truth in truths]
    return list(zip(truths, greys, colorize(engine, greys, batch_size=4)))


def test_default_model_output_is_coloured(results) -> None:
    for truth, grey, output in results:
        assert output.shape == grey.shape
        chroma = np.hypot(*bgr_to_lab(output)[..., 1:].transpose(2, 0, 1))
        assert chroma.mean() > 5, "output is (nearly) grey"
        assert np.abs(bgr_to_lab(output)[..., 0] - truth[..., 0]).mean() < 3, "lightness changed"


def test_default_model_correlates_with_true_colours_better_than_grey_or_sepia(results) -> None:
    ours = np.mean([ab_correlation(output, truth) for truth, _, output in results])
    grey = np.mean([ab_correlation(grey, truth) for truth, grey, _ in results])
    sepia = np.mean([ab_correlation(with_ab(truth, SEPIA_AB), truth) for truth, _, _ in results])
    assert ours > max(grey, sepia) + 0.1, (ours, grey, sepia)


def test_default_model_gives_a_face_skin_colour() -> None:
    """The default model colours the astronaut's face (skimage) like skin: warm, between red and
    yellow; not grey, not blue or purple (colorize-small's hue here is about -47 degrees), not
    yellow-green."""
    settings = Settings()
    engine = Engine.load(load_manifest(settings.models_dir, "default"), device="cpu")
    truth = bgr_to_lab(cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR))
    output = colorize(engine, [with_ab(truth, (0.0, 0.0))], batch_size=1)[0]
    a, b = bgr_to_lab(output)[75:155, 185:260, 1:].reshape(-1, 2).mean(axis=0)
    hue = float(np.degrees(np.arctan2(b, a)))
    assert np.hypot(a, b) > 8, ("face nearly grey", a, b)
    assert 25 < hue < 85, ("not a skin hue (the original face's is about 64 degrees)", hue, a, b)
