"""Metadata read from inputs, written into results, and the output options (unit tests, no services)."""

from __future__ import annotations

import io
import struct
from xml.etree import ElementTree

import cv2
import numpy as np
import pytest
from PIL import Image, IptcImagePlugin, TiffImagePlugin

from shared.errors import InvalidRequest
from shared.imaging.encoding import encode_result, fitted_size
from shared.imaging.metadata import NO_METADATA, SourceMetadata, normalised_exif, normalised_xmp, read_metadata
from shared.imaging.metadata_embedding import MAX_SEGMENT_DATA
from shared.imaging.output_options import WEBP_MAX_SIDE, OutputFormat, OutputOptions, requested_output
from shared.imaging.provenance import NAMESPACE, Provenance, xmp_with_provenance
from shared.setting_types import Limits
from shared.settings import Settings
from tests.metadata_samples import (
    CAPTION,
    CREDIT,
    DATE_TAKEN,
    DATE_TIME_ORIGINAL,
    EXIF_IFD,
    IPTC_CAPTION,
    IPTC_CREDIT,
    ORIENTATION,
    XMP_CAPTION,
    iptc_records,
    photo_jpeg,
    srgb_profile,
    xmp_packet,
)

PROVENANCE = Provenance("test-tiny", "0123456789abcdef" * 4, 0.38)
FORMATS = {OutputFormat.JPEG: "JPEG", OutputFormat.PNG: "PNG", OutputFormat.WEBP: "WEBP"}


def colour_image(width: int = 60, height: int = 40) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    return np.dstack([x + 0 * y, y + 0 * x, (x + y) / 2]).astype(np.uint8)


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# --- reading --------------------------------------------------------------------------------


def test_reads_every_block_of_a_camera_jpeg_with_orientation_normalised() -> None:
    metadata = read_metadata(photo_jpeg(orientation=6))
    assert metadata.icc_profile == srgb_profile()
    assert metadata.iptc == iptc_records()
    exif = Image.Exif()
    assert metadata.exif is not None
    exif.load(metadata.exif)
    assert exif[ORIENTATION] == 1
    assert exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] == DATE_TAKEN
    assert metadata.xmp is not None
    assert b'tiff:Orientation="1"' in metadata.xmp and XMP_CAPTION.encode() in metadata.xmp


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_reads_png_and_webp_inputs(fmt: str) -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 8
    exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] = DATE_TAKEN
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10), (90, 90, 90)).save(buffer, fmt, exif=exif, icc_profile=srgb_profile())
    metadata = read_metadata(buffer.getvalue())
    assert metadata.icc_profile == srgb_profile()
    read = Image.Exif()
    assert metadata.exif is not None
    read.load(metadata.exif)
    assert read[ORIENTATION] == 1 and read.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] == DATE_TAKEN


def test_reads_a_scanned_tiff_leaving_its_layout_tags_behind() -> None:
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[0x010F], tags[0x8298], tags[ORIENTATION] = "Scanner maker", "(c) Family archive", 1
    tags[700], tags[33723] = xmp_packet(), iptc_records()
    tags.tagtype[700], tags.tagtype[33723] = 1, 7  # BYTE, UNDEFINED
    buffer = io.BytesIO()
    Image.new("L", (20, 10), 90).save(buffer, "TIFF", tiffinfo=tags, icc_profile=srgb_profile())
    metadata = read_metadata(buffer.getvalue())
    assert metadata.icc_profile == srgb_profile() and metadata.iptc == iptc_records()
    assert metadata.xmp is not None and XMP_CAPTION.encode() in metadata.xmp
    exif = Image.Exif()
    assert metadata.exif is not None
    exif.load(metadata.exif)
    assert dict(exif) == {0x010F: "Scanner maker", 0x8298: "(c) Family archive"}  # no strips, sizes, orientation


def test_an_image_without_metadata_has_none() -> None:
    ok, png = cv2.imencode(".png", colour_image())
    assert ok
    assert read_metadata(png.tobytes()) == NO_METADATA


def test_unreadable_metadata_counts_as_absent() -> None:
    assert read_metadata(b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00garbage") == NO_METADATA


@pytest.mark.parametrize("order", ["<", ">"])
def test_exif_orientation_and_thumbnail_patched_in_place_in_either_byte_order(order: str) -> None:
    header = (b"II*\x00" if order == "<" else b"MM\x00*") + struct.pack(order + "I", 8)
    entries = struct.pack(order + "HHIHH", ORIENTATION, 3, 1, 8, 0) + struct.pack(order + "HHII", 0x010F, 2, 4, 0)
    ifd1 = struct.pack(order + "H", 1) + struct.pack(order + "HHII", 0x0201, 4, 1, 0) + b"\x00" * 4  # a thumbnail
    exif = header + struct.pack(order + "H", 2) + entries + struct.pack(order + "I", 38) + ifd1
    patched = normalised_exif(exif)
    assert len(patched) == len(exif)
    assert struct.unpack_from(order + "H", patched, 10 + 8)[0] == 1
    assert struct.unpack_from(order + "I", patched, 34)[0] == 0  # the thumbnail's IFD is unlinked
    assert patched[:18] + patched[20:34] + patched[38:] == exif[:18] + exif[20:34] + exif[38:]  # nothing else


def test_exif_without_orientation_or_malformed_is_kept_as_it_is() -> None:
    assert normalised_exif(b"not a tiff structure") == b"not a tiff structure"
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    raw = exif.tobytes()[6:]  # without the "Exif\0\0" identifier
    assert normalised_exif(raw) == raw


def test_xmp_orientation_as_attribute_or_element_becomes_1() -> None:
    as_attribute = normalised_xmp(xmp_packet(orientation=8))
    assert as_attribute is not None and b'tiff:Orientation="1"' in as_attribute
    as_element = xmp_packet().replace(b' tiff:Orientation="6">', b"><tiff:Orientation>6</tiff:Orientation>")
    written = normalised_xmp(as_element)
    assert written is not None and b"<tiff:Orientation>1</tiff:Orientation>" in written


# --- provenance -----------------------------------------------------------------------------


def test_provenance_joins_the_input_packet_and_replaces_an_earlier_one_of_ours() -> None:
    once = xmp_with_provenance(xmp_packet(), PROVENANCE)
    assert XMP_CAPTION.encode() in once and NAMESPACE.encode() in once
    again = xmp_with_provenance(once, Provenance("other", "f" * 64, 0.5))
    assert again.count(NAMESPACE.encode()) == 1 and b'colorize:model="other"' in again
    assert XMP_CAPTION.encode() in again


def test_provenance_alone_when_the_input_packet_cannot_be_extended() -> None:
    packet = xmp_with_provenance(b"<not-xmp/>", PROVENANCE)
    assert b"<not-xmp/>" not in packet and b'colorize:temperature="0.38"' in packet
    assert packet.startswith(b"<?xpacket begin=")


def test_provenance_packet_is_xml_with_the_values_as_given() -> None:
    packet = xmp_with_provenance(None, Provenance('a"<b>&', "0" * 64, 1.0))
    root = ElementTree.fromstring(packet.decode().split("?>", 1)[1].rsplit("<?xpacket", 1)[0])
    (description,) = root.iter("{http://www.w3.org/1999/02/22-rdf-syntax-ns#}Description")
    assert description.get(f"{{{NAMESPACE}}}model") == 'a"<b>&'
    assert description.get(f"{{{NAMESPACE}}}temperature") == "1"


# --- writing --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_results_carry_icc_exif_xmp_and_provenance_in_every_format(fmt: OutputFormat) -> None:
    metadata = read_metadata(photo_jpeg())
    quality = None if fmt == OutputFormat.PNG else 85
    data = encode_result(colour_image(), OutputOptions(fmt, quality), 90, metadata, PROVENANCE)
    image = opened(data)
    assert image.format == FORMATS[fmt] and image.size == (60, 40)
    assert image.info["icc_profile"] == srgb_profile()
    exif = image.getexif()
    assert exif[ORIENTATION] == 1
    assert exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] == DATE_TAKEN
    xmp = image.info["xmp"]
    assert XMP_CAPTION.encode() in xmp and b'tiff:Orientation="1"' in xmp
    assert b'colorize:model="test-tiny"' in xmp and PROVENANCE.model_sha256.encode() in xmp
    assert b'colorize:temperature="0.38"' in xmp
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # another reader accepts the file
    assert decoded.shape == (40, 60, 3)
    if fmt == OutputFormat.PNG:
        assert np.array_equal(decoded, colour_image())  # lossless


def test_jpeg_results_keep_iptc() -> None:
    metadata = read_metadata(photo_jpeg())
    data = encode_result(colour_image(), OutputOptions(), 90, metadata, PROVENANCE)
    iptc = IptcImagePlugin.getiptcinfo(opened(data))
    assert iptc is not None
    assert iptc[IPTC_CAPTION] == CAPTION.encode() and iptc[IPTC_CREDIT] == CREDIT.encode()


def test_every_result_has_provenance_even_without_input_metadata() -> None:
    for fmt in OutputFormat:
        data = encode_result(colour_image(), OutputOptions(fmt), 90, NO_METADATA, PROVENANCE)
        image = opened(data)
        assert b'colorize:model="test-tiny"' in image.info["xmp"]
        assert "icc_profile" not in image.info or not image.info["icc_profile"]
        assert ORIENTATION not in image.getexif()


def test_a_large_icc_profile_is_split_over_jpeg_segments() -> None:
    profile = srgb_profile() + bytes(range(256)) * 600  # 150 KB: three APP2 segments
    data = encode_result(colour_image(), OutputOptions(), 90, SourceMetadata(icc_profile=profile), PROVENANCE)
    assert data.count(b"ICC_PROFILE\x00") == 3
    assert opened(data).info["icc_profile"] == profile


def test_an_xmp_packet_too_large_for_a_jpeg_segment_leaves_the_provenance_alone() -> None:
    big = xmp_packet().replace(XMP_CAPTION.encode(), b"x" * MAX_SEGMENT_DATA)
    data = encode_result(colour_image(), OutputOptions(), 90, SourceMetadata(xmp=big), PROVENANCE)
    xmp = opened(data).info["xmp"]
    assert b"xxxx" not in xmp and b'colorize:model="test-tiny"' in xmp


# --- sizes and options ----------------------------------------------------------------------


def test_fitted_size_scales_down_keeping_aspect_and_never_up() -> None:
    assert fitted_size(4000, 3000, 1000) == (1000, 750)
    assert fitted_size(3000, 4000, 1000) == (750, 1000)
    assert fitted_size(800, 600, 1000) == (800, 600)
    assert fitted_size(800, 600, None) == (800, 600)
    assert fitted_size(10_000, 3, 100) == (100, 1)


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_max_side_scales_results_down(fmt: OutputFormat) -> None:
    data = encode_result(colour_image(60, 40), OutputOptions(fmt, max_side=30), 90, NO_METADATA, PROVENANCE)
    assert opened(data).size == (30, 20)
    data = encode_result(colour_image(60, 40), OutputOptions(fmt, max_side=500), 90, NO_METADATA, PROVENANCE)
    assert opened(data).size == (60, 40)


def test_webp_results_fit_the_format() -> None:
    assert OutputOptions(OutputFormat.WEBP).longest_side() == WEBP_MAX_SIDE
    assert OutputOptions(OutputFormat.WEBP, max_side=100).longest_side() == 100
    assert OutputOptions(OutputFormat.PNG).longest_side() is None


def test_quality_reaches_the_encoder() -> None:
    image = (np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)
    for fmt in (OutputFormat.JPEG, OutputFormat.WEBP):
        low = encode_result(image, OutputOptions(fmt, 10), 90, NO_METADATA, PROVENANCE)
        high = encode_result(image, OutputOptions(fmt, 95), 90, NO_METADATA, PROVENANCE)
        assert len(low) < len(high) / 2


def test_requested_output_defaults_and_record_round_trip() -> None:
    settings = Settings(jpeg_quality=77)
    assert requested_output(settings) == OutputOptions(OutputFormat.JPEG, 77, None)
    assert requested_output(settings, "png") == OutputOptions(OutputFormat.PNG, None, None)
    chosen = requested_output(settings, "webp", 60, 1024)
    assert chosen == OutputOptions(OutputFormat.WEBP, 60, 1024)
    assert OutputOptions.from_record(chosen.record_fields()) == chosen
    assert OutputOptions.from_record({}) == OutputOptions()  # jobs recorded before the options existed


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"format": "gif"}, "format"),
        ({"quality": 0}, "quality"),
        ({"quality": 101}, "quality"),
        ({"format": "png", "quality": 80}, "quality"),
        ({"max_side": 0}, "max_side"),
        ({"max_side": 501}, "max_side"),
    ],
)
def test_bad_output_options_name_their_field(options: dict, field: str) -> None:
    settings = Settings(limits=Limits(max_side=500))
    with pytest.raises(InvalidRequest) as caught:
        requested_output(settings, **options)
    assert caught.value.details["field"] == field
