"""Importer of the released ECCV16 Caffe weights, and its download/install command.

Nothing here downloads: weights files are synthetic, written with the importer's own
protobuf schema for a narrow copy of the network, and downloads come from a local server.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format

from models import caffe_proto, install
from models.eccv16 import convert_caffemodel
from models.eccv16_checks import input_size, prototxt_mismatches
from models.eccv16_layers import ECCV16_LAYERS, LayerSpec, blob_shapes, width_scaled
from shared.colour.bins import ab_bins
from shared.colour.model_manifests import file_sha256, load_manifest
from shared.errors import ModelDownloadFailed, ModelFileError

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
NARROW = width_scaled(ECCV16_LAYERS, 16)
KINDS = {layer.name: layer.kind for layer in ECCV16_LAYERS}
BN_FACTOR = 999.982  # Caffe's running-average normaliser, as stored in trained BatchNorm layers


# --- synthetic Caffe files ---------------------------------------------------------------


def prototxt_text(layers: tuple[LayerSpec, ...], **overrides: dict[str, int]) -> str:
    """A deploy definition of ``layers``; ``overrides`` change a conv layer's parameters."""
    net = caffe_proto.NetParameter(name="LtoAB")
    for spec in layers:
        layer = net.layer.add(name=spec.name, type=spec.kind)
        layer.bottom.extend([spec.bottom] if spec.bottom else [])
        layer.top.extend([spec.top] if spec.top else [])
        if spec.kind == "Input":
            layer.input_param.shape.add().dim.extend([1, 1, 224, 224])
        elif spec.kind in ("Convolution", "Deconvolution"):
            values = {
                "num_output": spec.channels,
                "kernel_size": spec.kernel,
                "stride": spec.stride,
                "pad": spec.pad,
                "dilation": spec.dilation,
                **overrides.get(spec.name, {}),
            }
            param = layer.convolution_param
            param.num_output = values["num_output"]
            for key in ("kernel_size", "stride", "pad", "dilation"):
                getattr(param, key).append(values[key])
        elif spec.kind == "BatchNorm":
            layer.batch_norm_param.SetInParent()
        elif spec.kind == "Scale":
            layer.scale_param.bias_term = False
            layer.scale_param.filler.type = "constant"
            layer.scale_param.filler.value = 2.606
    return text_format.MessageToString(net)


def random_weights(layers: tuple[LayerSpec, ...], seed: int = 0) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shapes in blob_shapes(layers).items():
        if len(shapes) == 3:  # BatchNorm: running sums of mean and variance, and their divisor
            channels = shapes[0][0]
            weights[name] = [
                rng.normal(0.5, 0.3, channels) * BN_FACTOR,
                rng.uniform(0.2, 2.0, channels) * BN_FACTOR,
                np.array([BN_FACTOR]),
            ]
        elif len(shapes) == 2:
            weight_shape = shapes[0]
            fan_in = int(np.prod(weight_shape[1:])) if name != "conv8_1" else weight_shape[0] * 4
            weights[name] = [rng.normal(0, np.sqrt(2.0 / fan_in), weight_shape), rng.normal(0, 0.1, shapes[1])]
        else:
            weights[name] = [rng.normal(0, 1, shape) for shape in shapes]
    return {name: [blob.astype(np.float32) for blob in blobs] for name, blobs in weights.items()}


def legacy_blob(values: np.ndarray) -> object:
    """A blob with the 4-D num/channels/height/width shape of files from older Caffe."""
    blob = caffe_proto.BlobProto()
    blob.num, blob.channels, blob.height, blob.width = (1,) * (4 - values.ndim) + values.shape
    blob.data.extend(values.ravel().tolist())
    return blob


def write_caffemodel(
    path: Path,
    weights: dict[str, list[np.ndarray]],
    drop: tuple[str, ...] = (),
    legacy: tuple[str, ...] = ("bw_conv1_1", "conv1_2norm"),
) -> Path:
    net = caffe_proto.NetParameter(name="LtoAB")
    # Training-only layers with blobs, as in the released file: they must be ignored.
    extra = net.layer.add(name="data_l_meansub", type="Scale")
    extra.blobs.extend([caffe_proto.array_blob(np.ones(1)), caffe_proto.array_blob(np.full(1, -50.0))])
    for name, blobs in weights.items():
        if name in drop:
            continue
        layer = net.layer.add(name=name, type=KINDS[name])
        layer.blobs.extend((legacy_blob if name in legacy else caffe_proto.array_blob)(blob) for blob in blobs)
    path.write_bytes(net.SerializeToString())
    return path


@pytest.fixture
def narrow_files(tmp_path: Path) -> tuple[Path, Path, dict[str, list[np.ndarray]]]:
    weights = random_weights(NARROW)
    # The decoding layers hold nonsense on purpose: the importer must not use them.
    weights["conv8_313_rh"] = [np.full(313, 7.0, np.float32)]
    weights["class8_ab"] = [np.zeros((2, 313, 1, 1), np.float32), np.full(2, 30.0, np.float32)]
    caffemodel = write_caffemodel(tmp_path / "narrow.caffemodel", weights)
    prototxt = tmp_path / "narrow.prototxt"
    prototxt.write_text(prototxt_text(NARROW))
    return caffemodel, prototxt, weights


# --- independent NumPy forward pass of the Caffe network ---------------------------------


def np_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int, dilation: int) -> np.ndarray:
    c_out, _, k, _ = w.shape
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    h = (x.shape[1] - dilation * (k - 1) - 1) // stride + 1
    wd = (x.shape[2] - dilation * (k - 1) - 1) // stride + 1
    out = np.zeros((c_out, h, wd))
    for i in range(k):
        for j in range(k):
            patch = x[
                :,
                i * dilation : i * dilation + stride * (h - 1) + 1 : stride,
                j * dilation : j * dilation + stride * (wd - 1) + 1 : stride,
            ]
            out += np.einsum("oc,chw->ohw", w[:, :, i, j], patch)
    return out + b[:, None, None]


def np_deconv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int) -> np.ndarray:
    _, c_out, k, _ = w.shape
    h, wd = x.shape[1:]
    full = np.zeros((c_out, (h - 1) * stride + k, (wd - 1) * stride + k))
    for i in range(k):
        for j in range(k):  # each input pixel scatters the kernel onto the output
            full[:, i : i + stride * (h - 1) + 1 : stride, j : j + stride * (wd - 1) + 1 : stride] += np.einsum(
                "co,chw->ohw", w[:, :, i, j], x
            )
    return full[:, pad : full.shape[1] - pad, pad : full.shape[2] - pad] + b[:, None, None]


def caffe_forward(
    l_centred: np.ndarray, weights: dict[str, list[np.ndarray]], layers: tuple[LayerSpec, ...], scale: float
) -> np.ndarray:
    """ab (2, h, w) of one image as the deploy network with the demo's class8_ab computes it."""
    blobs = {"data_l": l_centred[None].astype(np.float64)}
    for spec in layers:
        if spec.kind == "Convolution" and spec.name not in ("class8_ab",):
            w, b = (a.astype(np.float64) for a in weights[spec.name])
            blobs[spec.top] = np_conv(blobs[spec.bottom], w, b, spec.stride, spec.pad, spec.dilation)
        elif spec.kind == "Deconvolution":
            w, b = (a.astype(np.float64) for a in weights[spec.name])
            blobs[spec.top] = np_deconv(blobs[spec.bottom], w, b, spec.stride, spec.pad)
        elif spec.kind == "ReLU":
            blobs[spec.top] = np.maximum(blobs[spec.bottom], 0)
        elif spec.kind == "BatchNorm":
            mean, var, factor = (a.astype(np.float64) for a in weights[spec.name])
            mean, var = mean / factor[0], var / factor[0]
            blobs[spec.top] = (blobs[spec.bottom] - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5)
    logits = blobs["conv8_313"] * scale
    probabilities = np.exp(logits - logits.max(axis=0))
    probabilities /= probabilities.sum(axis=0)
    pts_in_hull = ab_bins().astype(np.float64)
    return np.einsum("qhw,qc->chw", probabilities, pts_in_hull)


# --- the network definition ----------------------------------------------------------------


def test_spec_matches_the_released_deploy_definition() -> None:
    path = REFERENCE / "colorization_deploy_v2.prototxt"
    if not path.is_file():
        pytest.skip(f"reference files absent ({REFERENCE}), as on a fresh clone")
    net = caffe_proto.read_prototxt(path)
    assert prototxt_mismatches(net) == []
    assert input_size(net) == 224


def test_bins_are_in_the_order_the_released_weights_expect() -> None:
    path = REFERENCE / "pts_in_hull.npy"
    if not path.is_file():
        pytest.skip(f"reference files absent ({REFERENCE}), as on a fresh clone")
    np.testing.assert_array_equal(ab_bins(), np.load(path).astype(np.float32))


def test_blob_shapes_follow_caffe_layouts() -> None:
    shapes = blob_shapes(ECCV16_LAYERS)
    assert shapes["bw_conv1_1"] == [(64, 1, 3, 3), (64,)]
    assert shapes["conv4_3norm"] == [(512,), (512,), (1,)]
    assert shapes["conv8_1"] == [(512, 256, 4, 4), (256,)]  # deconvolution: input channels first
    assert shapes["conv8_313"] == [(313, 256, 1, 1), (313,)]
    learned = sum(
        int(np.prod(s)) for name, blobs in shapes.items() if name not in ("class8_ab", "conv8_313_rh") for s in blobs
    )
    assert learned == 32_235_392  # 128.9 MB of float32: the bulk of the ~129 MB released file


# --- conversion ----------------------------------------------------------------------------


def test_converted_model_computes_what_the_caffe_network_computes(narrow_files, tmp_path: Path) -> None:
    caffemodel, prototxt, weights = narrow_files
    manifest = convert_caffemodel(
        caffemodel,
        prototxt,
        tmp_path / "models",
        "eccv16",
        provenance={"source_url": "http://mirror.invalid/x"},
        layers=NARROW,
    )

    rng = np.random.default_rng(1)
    l_centred = rng.uniform(-50, 50, (2, 1, 32, 32)).astype(np.float32)
    session = ort.InferenceSession(str(manifest.path), providers=["CPUExecutionProvider"])
    inv_temperature = np.array([1 / manifest.temperature, 1.0], np.float32)
    (ab,) = session.run(["ab"], {"l": l_centred, "inv_temperature": inv_temperature})

    assert ab.shape == (2, 2, 8, 8)
    for image, scale in enumerate(inv_temperature):
        expected = caffe_forward(l_centred[image, 0], weights, NARROW, float(scale))
        np.testing.assert_allclose(ab[image], expected, atol=0.05, rtol=1e-3)
    assert np.ptp(ab) > 5  # the decoding is not collapsed onto one colour


def test_temperature_and_bins_come_from_the_definition_not_the_weights(narrow_files, tmp_path: Path) -> None:
    caffemodel, prototxt, weights = narrow_files
    manifest = convert_caffemodel(caffemodel, prototxt, tmp_path, "eccv16", layers=NARROW)

    assert manifest.temperature == pytest.approx(1 / 2.606)
    ignored = " ".join(manifest.raw["provenance"]["ignored_blobs"])
    assert "conv8_313_rh" in ignored and "class8_ab" in ignored and "data_l_meansub" in ignored
    # With a 0-weight, 30-bias class8_ab every ab would be (30, 30); the bins give a spread.
    session = ort.InferenceSession(str(manifest.path), providers=["CPUExecutionProvider"])
    l_centred = np.random.default_rng(2).uniform(-50, 50, (1, 1, 16, 16)).astype(np.float32)
    (ab,) = session.run(["ab"], {"l": l_centred, "inv_temperature": np.array([2.606], np.float32)})
    np.testing.assert_allclose(ab[0], caffe_forward(l_centred[0, 0], weights, NARROW, 2.606), atol=0.05)


def test_manifest_describes_the_installed_file(narrow_files, tmp_path: Path) -> None:
    caffemodel, prototxt, _ = narrow_files
    models_dir = tmp_path / "models"
    convert_caffemodel(
        caffemodel,
        prototxt,
        models_dir,
        "eccv16",
        provenance={"source_url": "http://example.invalid/w.caffemodel"},
        layers=NARROW,
    )

    manifest = load_manifest(models_dir, "eccv16")
    raw = json.loads((models_dir / "eccv16" / "manifest.json").read_text())
    manifest.verify_file()
    assert (raw["format"], raw["file"], raw["bins"]) == ("onnx", "model.onnx", "eccv16-313")
    assert raw["input"] == {"name": "l", "size": 224, "normalisation": {"subtract": 50.0, "divide": 1.0}}
    assert raw["output"] == {"name": "ab", "downsample": 4}
    assert raw["training_data"] == "ImageNet (research use)"
    assert "BSD-2-Clause" in raw["licence"]
    assert raw["provenance"]["source_url"] == "http://example.invalid/w.caffemodel"
    assert raw["provenance"]["caffemodel_sha256"] == file_sha256(caffemodel)
    assert sorted(p.name for p in models_dir.iterdir()) == ["eccv16"]  # no staging left behind


def test_weights_with_missing_layers_or_wrong_shapes_are_refused_with_every_difference(tmp_path: Path) -> None:
    weights = random_weights(NARROW)
    weights["conv3_1"][0] = weights["conv3_1"][0][:, :4]
    weights["conv6_3norm"] = weights["conv6_3norm"][:2]
    caffemodel = write_caffemodel(tmp_path / "bad.caffemodel", weights, drop=("conv5_2",))
    prototxt = tmp_path / "narrow.prototxt"
    prototxt.write_text(prototxt_text(NARROW))

    with pytest.raises(ModelFileError) as caught:
        convert_caffemodel(caffemodel, prototxt, tmp_path / "models", layers=NARROW)
    message = caught.value.message
    assert "conv5_2: missing" in message
    assert "conv3_1 blob 0: shape (16, 4, 3, 3), expected (16, 8, 3, 3)" in message
    assert "conv6_3norm: 2 blobs, expected 3" in message
    assert len(caught.value.details["mismatches"]) == 3
    assert not (tmp_path / "models" / "eccv16").exists()


def test_full_width_weights_are_refused_by_a_narrow_definition_and_vice_versa(narrow_files, tmp_path: Path) -> None:
    caffemodel, _, _ = narrow_files
    full_prototxt = tmp_path / "full.prototxt"
    full_prototxt.write_text(prototxt_text(ECCV16_LAYERS))
    with pytest.raises(ModelFileError, match="bw_conv1_1 blob 0: shape \\(4, 1, 3, 3\\), expected \\(64, 1, 3, 3\\)"):
        convert_caffemodel(caffemodel, full_prototxt, tmp_path)


def test_a_definition_that_differs_from_the_network_is_refused(narrow_files, tmp_path: Path) -> None:
    caffemodel, prototxt, _ = narrow_files
    prototxt.write_text(prototxt_text(NARROW, conv6_1={"dilation": 1}, conv8_1={"stride": 1}))
    with pytest.raises(ModelFileError) as caught:
        convert_caffemodel(caffemodel, prototxt, tmp_path, layers=NARROW)
    assert "layer conv6_1: dilation 1, expected 2" in caught.value.message
    assert "layer conv8_1: stride 1, expected 2" in caught.value.message


def test_a_file_that_is_not_caffe_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.caffemodel"
    junk.write_bytes(b"\xff" * 64)
    with pytest.raises(ModelFileError, match="not a Caffe weights file"):
        caffe_proto.read_caffemodel(junk)


# --- downloads from a local server ----------------------------------------------------------


class RangeServer:
    """Serves fixed bytes with HTTP Range support; can cut off or ignore ranges on demand."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.ranges: list[str | None] = []
        self.cut_after: list[int] = []  # byte counts at which the next responses stop
        self.honour_range = True
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                requested = self.headers.get("Range")
                server.ranges.append(requested)
                start = int(requested.split("=")[1].rstrip("-")) if requested and server.honour_range else 0
                if start >= len(body) and requested:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                limit = server.cut_after.pop(0) if server.cut_after else len(body)
                self.wfile.write(body[start : start + limit])
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def payload() -> bytes:
    return np.random.default_rng(3).bytes(300_000)


@pytest.fixture
def server(payload: bytes) -> Iterator[RangeServer]:
    with RangeServer({"/file.bin": payload}) as running:
        yield running


def sha1_of(data: bytes) -> str:
    import hashlib

    return hashlib.sha1(data).hexdigest()


def test_a_cut_off_download_resumes_where_it_stopped(server: RangeServer, payload: bytes, tmp_path: Path) -> None:
    server.cut_after = [100_000, 50_000]
    result = install.download(server.url + "/file.bin", tmp_path / "file.bin", sha1=sha1_of(payload))

    assert (tmp_path / "file.bin").read_bytes() == payload
    assert server.ranges == [None, "bytes=100000-", "bytes=150000-"]
    assert result.size == len(payload) and result.sha1 == sha1_of(payload)
    assert not (tmp_path / "file.bin.part").exists()


def test_a_partial_file_from_an_earlier_run_is_continued(server: RangeServer, payload: bytes, tmp_path: Path) -> None:
    (tmp_path / "file.bin.part").write_bytes(payload[:123_456])
    install.download(server.url + "/file.bin", tmp_path / "file.bin")
    assert server.ranges == ["bytes=123456-"]
    assert (tmp_path / "file.bin").read_bytes() == payload


def test_a_complete_partial_file_needs_no_more_bytes(server: RangeServer, payload: bytes, tmp_path: Path) -> None:
    (tmp_path / "file.bin.part").write_bytes(payload)
    install.download(server.url + "/file.bin", tmp_path / "file.bin", sha1=sha1_of(payload))
    assert server.ranges == [f"bytes={len(payload)}-"]
    assert (tmp_path / "file.bin").read_bytes() == payload


def test_a_server_without_range_support_restarts_the_file(server: RangeServer, payload: bytes, tmp_path: Path) -> None:
    server.honour_range = False
    (tmp_path / "file.bin.part").write_bytes(b"stale bytes")
    install.download(server.url + "/file.bin", tmp_path / "file.bin", sha1=sha1_of(payload))
    assert (tmp_path / "file.bin").read_bytes() == payload


def test_a_download_that_keeps_failing_keeps_its_bytes_for_the_next_run(
    server: RangeServer, payload: bytes, tmp_path: Path
) -> None:
    server.cut_after = [1000, 1000]
    with pytest.raises(ModelDownloadFailed, match="run again to resume"):
        install.download(server.url + "/file.bin", tmp_path / "file.bin", attempts=2)
    assert (tmp_path / "file.bin.part").stat().st_size == 2000
    with pytest.raises(ModelDownloadFailed, match="HTTP 404"):
        install.download(server.url + "/missing.bin", tmp_path / "missing.bin")


def test_a_download_with_the_wrong_checksum_is_discarded(server: RangeServer, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="different file"):
        install.download(server.url + "/file.bin", tmp_path / "file.bin", sha1="0" * 40)
    assert not (tmp_path / "file.bin").exists() and not (tmp_path / "file.bin.part").exists()


# --- install -----------------------------------------------------------------------------------


def test_install_from_files_on_disk(narrow_files, tmp_path: Path) -> None:
    caffemodel, prototxt, _ = narrow_files
    manifest = install.install_eccv16(tmp_path / "models", caffemodel, prototxt, layers=NARROW)
    assert manifest.name == "eccv16" and manifest.path.is_file()
    provenance = manifest.raw["provenance"]
    assert provenance["source_path"] == str(caffemodel.resolve())
    assert provenance["matches_published_release"] is False
    assert caffemodel.exists()  # the user's own files are left alone


def test_install_from_urls_downloads_converts_and_cleans_up(narrow_files, tmp_path: Path) -> None:
    caffemodel, prototxt, _ = narrow_files
    files = {"/w.caffemodel": caffemodel.read_bytes(), "/d.prototxt": prototxt.read_bytes()}
    with RangeServer(files) as local:
        local.cut_after = [2000]
        manifest = install.install_eccv16(
            tmp_path / "models", local.url + "/w.caffemodel", local.url + "/d.prototxt", layers=NARROW
        )
    assert manifest.raw["provenance"]["source_url"] == local.url + "/w.caffemodel"
    assert manifest.raw["provenance"]["caffemodel_sha256"] == file_sha256(caffemodel)
    assert list((tmp_path / "models" / ".downloads").iterdir()) == []


def test_a_mirror_must_serve_the_published_release(narrow_files, tmp_path: Path) -> None:
    caffemodel, prototxt, _ = narrow_files
    files = {
        f"/m/{install.CAFFEMODEL_NAME}": caffemodel.read_bytes(),
        f"/m/{install.PROTOTXT_NAME}": prototxt.read_bytes(),
    }
    with RangeServer(files) as mirror:
        with pytest.raises(ModelFileError, match=install.CAFFEMODEL_SHA1):
            install.install_eccv16(tmp_path / "models", mirror=mirror.url + "/m/", layers=NARROW)
        assert mirror.ranges == [None]  # only the mirror was asked
    assert not (tmp_path / "models" / "eccv16").exists()


def test_main_reports_errors_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = install.main(
        [
            "--caffemodel",
            str(tmp_path / "absent.caffemodel"),
            "--prototxt",
            str(tmp_path / "absent.prototxt"),
            "--models-dir",
            str(tmp_path),
        ]
    )
    assert code == 1
    assert "absent.caffemodel does not exist" in capsys.readouterr().err
