"""The full-resolution image maths: L by table lookup and the compiled join give today's
float path (OpenCV's float conversions, guided upsampling at full size) within one level."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from shared.colour import colour_lightness
from shared.colour.ab_upsampling import guided_upsample_ab
from shared.colour.colorizer import colorize_batch, model_input, reduced_lightness
from shared.colour.engine import Engine
from shared.colour.grey_lightness import area_weights
from shared.colour.lab import Lightness, Workspace, bgr_to_lab, join_lightness_and_ab, lab_to_bgr, lightness
from shared.colour.model_manifests import load_manifest
from shared.settings import PROJECT_ROOT

skimage_data = pytest.importorskip("skimage.data")

VAL_PHOTOS = PROJECT_ROOT.parent / "shared" / "data" / "val"


def float_lightness(bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(bgr_to_lab(bgr)[..., 0])


def float_join(l_full: np.ndarray, ab_small: np.ndarray, guided: bool = True) -> np.ndarray:
    """The join as a whole-image float computation: ab upsampled at full size, merged, converted."""
    height, width = l_full.shape
    if guided:
        ab = guided_upsample_ab(l_full, ab_small)
    else:
        ab = cv2.resize(ab_small, (width, height), interpolation=cv2.INTER_LINEAR)
    return lab_to_bgr(cv2.merge([l_full, ab[..., 0], ab[..., 1]]))


def float_colorize(engine: Engine, images: list[np.ndarray]) -> list[np.ndarray]:
    """Colorizing the float way: L from OpenCV's float Lab, the guided join in float."""
    l_full = [float_lightness(image) for image in images]
    ab_small = engine.predict_ab(np.stack([model_input(l, engine.input_size) for l in l_full]))
    return [float_join(l, ab) for l, ab in zip(l_full, ab_small)]


def level_differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def grey(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def smooth_ab(seed: int, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.uniform(-50, 50, (size, size, 2)).astype(np.float32), (0, 0), 1.0)


def photos() -> list[np.ndarray]:
    rgb = [getattr(skimage_data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket")]
    return [cv2.cvtColor(p, cv2.COLOR_RGB2BGR) for p in rgb]


@pytest.fixture(scope="module")
def default_engine() -> Engine:
    manifest = load_manifest(PROJECT_ROOT / "models", "default")
    return Engine.load(manifest, device="cpu", threads=1)


def test_lightness_of_every_grey_level_is_opencvs_float_lightness() -> None:
    levels = cv2.cvtColor(np.arange(256, dtype=np.uint8)[None], cv2.COLOR_GRAY2BGR)
    np.testing.assert_array_equal(lightness(levels), float_lightness(levels))


def test_lightness_of_every_colour_is_opencvs_float_lightness() -> None:
    """All 2**24 8-bit colours, a blue level at a time (an image of every green and red)."""
    green, red = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8), indexing="ij")
    plane = np.stack([np.zeros_like(green), green, red], axis=-1).reshape(4096, 16, 3)
    for blue in range(256):
        plane[..., 0] = blue
        np.testing.assert_array_equal(lightness(plane), float_lightness(plane), err_msg=f"blue {blue}")


def test_a_grey_image_with_one_coloured_pixel_is_read_as_colour() -> None:
    image = grey(photos()[0])
    image[-1, -1] = (0, 0, 255)
    assert Lightness.of(image).table is colour_lightness.CODE_LIGHTNESS
    np.testing.assert_array_equal(lightness(image), float_lightness(image))


@pytest.mark.parametrize("colour", [True, False])
@pytest.mark.parametrize("size", [(1, 1), (5, 3), (37, 301), (321, 481), (512, 512), (1200, 1900)])
def test_area_resized_lightness_is_the_whole_image_resize(size: tuple[int, int], colour: bool) -> None:
    image = cv2.resize(photos()[1], size[::-1], interpolation=cv2.INTER_AREA)
    image = image if colour else grey(image)
    l_full = lightness(image)
    for target in ((160, 160), (128, 128), (40, 40), (32, 32), (size[1], 1)):
        (reduced,) = Lightness.of(image).area_resized([target])
        np.testing.assert_allclose(
            reduced, cv2.resize(l_full, target, interpolation=cv2.INTER_AREA), rtol=1e-5, atol=1e-4
        )


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (source, target)
        for source in (1, 7, 160, 161, 333, 512, 1000, 1024, 4000)
        for target in (1, 3, 32, 40, 128, 160)
        if target <= source  # area weights are for shrinking
    ],
)
def test_area_weights_are_opencvs(source: int, target: int) -> None:
    """A signal averaged with the listed weights is OpenCV's area resize of it."""
    signal = np.random.default_rng(source).uniform(0, 100, source).astype(np.float32)
    entries, weights = area_weights(source, target)
    averaged = np.zeros(target, np.float64)
    np.add.at(averaged, entries[:, 1], weights * signal[entries[:, 0]])
    expected = cv2.resize(signal[None], (target, 1), interpolation=cv2.INTER_AREA)[0]
    np.testing.assert_allclose(averaged, expected, atol=1e-4)


@pytest.mark.parametrize("size", [(128, 128), (321, 481), (700, 1000), (129, 4000), (3000, 2000)])
def test_the_guide_is_the_photos_own_area_average(size: tuple[int, int]) -> None:
    """Reduced via the model's input or straight from the photo, the guide is the same."""
    for photo in (photos()[1], grey(photos()[0])):
        image = cv2.resize(photo, size[::-1], interpolation=cv2.INTER_AREA)
        model_l, guide = reduced_lightness(Lightness.of(image), 128, 32, Workspace())
        l_full = lightness(image)
        np.testing.assert_allclose(guide, cv2.resize(l_full, (32, 32), interpolation=cv2.INTER_AREA), atol=1e-3)
        np.testing.assert_allclose(model_l, model_input(l_full, 128), atol=1e-3)


@pytest.mark.parametrize("guided", [True, False])
@pytest.mark.parametrize("size", [(5, 3), (37, 301), (512, 512), (700, 1000), (1500, 1500)])
def test_join_is_the_float_join_within_one_level(size: tuple[int, int], guided: bool) -> None:
    image = cv2.resize(photos()[0], size[::-1], interpolation=cv2.INTER_CUBIC)
    ab = smooth_ab(seed=size[0])
    l_full = float_lightness(image)
    expected = float_join(l_full, ab, guided)
    assert level_differences(join_lightness_and_ab(l_full, ab, guided), expected).max() <= 1
    from_lookup = join_lightness_and_ab(Lightness.of(image), ab, guided)
    assert level_differences(from_lookup, expected).max() <= 1


def test_colorizing_sample_photos_matches_the_float_path_within_one_level(default_engine: Engine) -> None:
    images = photos()
    images += [grey(p) for p in images]
    for output, expected in zip(colorize_batch(default_engine, images), float_colorize(default_engine, images)):
        differences = level_differences(output, expected)
        assert differences.max() <= 1
        assert (differences > 0).mean() < 0.02


@pytest.mark.skipif(not VAL_PHOTOS.is_dir(), reason="../shared/data/val (validation photos) not present")
def test_the_val_photos_join_as_in_the_float_path_within_one_level(default_engine: Engine) -> None:
    """Every validation photo, and the first of every 16 in grey: the model's input is the float
    path's (to float rounding), so one prediction serves both joins (the whole of
    ``colorize_batch`` is compared on the sample photos above)."""
    files = sorted(VAL_PHOTOS.rglob("*.jpg"))
    assert len(files) > 900
    size, grid = default_engine.input_size, default_engine.input_size // default_engine.manifest.downsample
    worst, changed, pixels = 0, 0, 0
    for start in range(0, len(files), 16):
        images = [cv2.imread(str(f)) for f in files[start : start + 16]]
        images.append(grey(images[0]))
        workspace = Workspace()
        sources = [Lightness.of(image) for image in images]
        reduced = [reduced_lightness(source, size, grid, workspace) for source in sources]
        l_full = [float_lightness(image) for image in images]
        model_l = np.stack([model_input(l, size) for l in l_full])
        np.testing.assert_allclose(np.stack([fast_l for fast_l, _ in reduced]), model_l, atol=1e-4)
        ab_small = default_engine.predict_ab(model_l)
        for source, (_, guide), l, ab in zip(sources, reduced, l_full, ab_small):
            output = join_lightness_and_ab(source, ab, guide=guide, workspace=workspace)
            differences = level_differences(output, float_join(l, ab))
            worst = max(worst, int(differences.max()))
            changed += int(np.count_nonzero(differences))
            pixels += differences.size
    assert worst <= 1
    # The compiled join reads the sRGB curve from a table (shared.colour.lab_join.GAMMA_STEPS): about
    # 0.2 % of values round to the other side of OpenCV's.
    assert changed / pixels < 0.005


WARMED_RUN = """
import json, sys
from shared.colour import colour_lightness, grey_lightness, lab_join
from shared.colour.lab import warm_up
from shared.colour.model_manifests import load_manifest
from shared.settings import PROJECT_ROOT
from tests.test_lab import grey, photos
from shared.colour.colorizer import colorize_batch
from shared.colour.engine import Engine

# The kernels called from Python (the row kernel is compiled into the joins that call it).
kernels = {
    "join_float": lab_join._compiled_join_float,
    "join_coded": lab_join._compiled_join_coded,
    "grey": grey_lightness._compiled_grey,
    "area_average": grey_lightness._compiled_area_average,
    "colour_lightness": colour_lightness._compiled_lightness_codes,
}
warm_up()
warmed = {name: len(kernel.signatures) for name, kernel in kernels.items()}
engine = Engine.load(load_manifest(PROJECT_ROOT / "models", "default"), device="cpu", threads=1)
images = photos()
colorize_batch(engine, images + [grey(p) for p in images])
json.dump({"warmed": warmed, "after": {name: len(k.signatures) for name, k in kernels.items()}}, sys.stdout)
"""


def test_warming_up_compiles_every_kernel_the_colorizer_calls() -> None:
    """A pool process warms the kernels as it starts; a type the warm-up missed would be compiled
    (seconds) in the middle of its first chunk instead. In a fresh process, so that kernels
    compiled by other tests do not hide it."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", WARMED_RUN], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    counts = json.loads(done.stdout)
    assert all(count >= 1 for count in counts["warmed"].values()), counts
    assert counts["after"] == counts["warmed"]
