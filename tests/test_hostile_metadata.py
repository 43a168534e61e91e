"""Metadata built to break the reader (unit tests, no services): XMP that is not what it says,
and PNG chunks that inflate past what may be read. Each input's image is processed; its
result's XMP is well-formed, has no DOCTYPE, and only our provenance speaks for our namespace."""

from __future__ import annotations

import io
import logging
import zlib
from xml.etree import ElementTree

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from shared.imaging.decoding import decode_image
from shared.imaging.encoding import encode_result
from shared.imaging.metadata import read_metadata
from shared.imaging.output_options import OutputFormat, OutputOptions
from shared.imaging.provenance import NAMESPACE, Provenance, xmp_with_provenance
from shared.setting_types import Limits
from tests.metadata_samples import (
    PLANTED_MODEL,
    RDF_NAMESPACE,
    XMP_CAPTION,
    grey_png_with,
    inflating,
    open_descriptions_xmp,
    planted_xmp,
    png_chunk,
    srgb_profile,
    stored_pixels,
    xmp_chunk,
    xmp_packet,
)

PROVENANCE = Provenance("test-tiny", "0123456789abcdef" * 4, 0.38)
MODEL = f"{{{NAMESPACE}}}model"
OVER_THE_LIMIT = PngImagePlugin.MAX_TEXT_CHUNK + 1


def processed(data: bytes, fmt: OutputFormat = OutputFormat.PNG) -> Image.Image:
    """What a worker makes of ``data`` but for colorizing: decoded, written with its metadata."""
    image = decode_image(data, Limits())
    result = encode_result(image, OutputOptions(fmt), 90, read_metadata(data), PROVENANCE)
    opened = Image.open(io.BytesIO(result))
    opened.load()
    return opened


def parsed(packet: bytes) -> ElementTree.Element:
    """The packet as XML (it must be well-formed), checked to declare no DOCTYPE or entity."""
    assert b"<!DOCTYPE" not in packet and b"<!ENTITY" not in packet and b"<!--" not in packet
    return ElementTree.fromstring(packet)


def models_named(packet: bytes) -> list[str]:
    """Every value the packet gives a property of our namespace, as an attribute or an element."""
    root = parsed(packet)
    attributes = [element.get(MODEL) for element in root.iter() if element.get(MODEL) is not None]
    elements = [element.text or "" for element in root.iter() if str(element.tag).startswith(f"{{{NAMESPACE}}}")]
    return [str(value) for value in attributes] + elements


# --- XMP: read in linear time, written well-formed ------------------------------------------


def test_a_megabyte_of_open_descriptions_leaves_a_well_formed_packet_with_the_provenance() -> None:
    data = grey_png_with(xmp_chunk(open_descriptions_xmp()))
    assert len(data) < 16 * 1024  # a small file, a megabyte of XMP
    xmp = processed(data).info["xmp"]
    assert models_named(xmp) == ["test-tiny"]


def test_entity_definitions_are_not_carried_over() -> None:
    doctype = b'<!DOCTYPE x:xmpmeta [<!ENTITY who "Someone else">]>'
    packet = xmp_packet().replace(b"<x:xmpmeta", doctype + b"<x:xmpmeta").replace(XMP_CAPTION.encode(), b"&who;")
    written = xmp_with_provenance(packet, PROVENANCE)
    assert b"Someone else" not in written and models_named(written) == ["test-tiny"]


def test_a_doctype_without_entities_is_dropped_and_the_packet_kept() -> None:
    packet = xmp_packet().replace(b"<x:xmpmeta", b"<!DOCTYPE x:xmpmeta><x:xmpmeta")
    written = xmp_with_provenance(packet, PROVENANCE)
    assert XMP_CAPTION.encode() in written and models_named(written) == ["test-tiny"]


@pytest.mark.parametrize(
    "malformed",
    [
        xmp_packet().replace(b"</dc:description>", b""),  # an element left open
        xmp_packet().replace(b'tiff:Orientation="6"', b"tiff:Orientation=6"),  # an unquoted value
        xmp_packet().replace(b"<rdf:li", b"<undeclared:li").replace(b"</rdf:li>", b"</undeclared:li>"),
        xmp_packet().replace(b"</x:xmpmeta>", b"</x:xmpmeta><trailing/>"),
    ],
)
def test_a_malformed_packet_gives_a_well_formed_one_with_the_provenance_alone(malformed: bytes) -> None:
    xmp = processed(grey_png_with(xmp_chunk(malformed))).info["xmp"]
    assert XMP_CAPTION.encode() not in xmp and models_named(xmp) == ["test-tiny"]


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_a_planted_model_is_removed_and_a_trailing_comment_hides_nothing(fmt: OutputFormat) -> None:
    xmp = processed(grey_png_with(xmp_chunk(planted_xmp())), fmt).info["xmp"]
    assert models_named(xmp) == ["test-tiny"] and PLANTED_MODEL.encode() not in xmp
    assert XMP_CAPTION.encode() in xmp


def test_our_namespace_in_elements_and_our_prefix_on_another_namespace_speak_for_nothing() -> None:
    packet = xmp_packet().replace(
        b"<dc:description>",
        b'<colorize:model xmlns:colorize="https://colorize.invalid/ns/1.0/">FAKE-MODEL</colorize:model>'
        b'<colorize:temperature xmlns:colorize="https://elsewhere.invalid/">2</colorize:temperature>'
        b"<dc:description>",
    )
    written = xmp_with_provenance(packet, PROVENANCE)
    assert models_named(written) == ["test-tiny"] and PLANTED_MODEL.encode() not in written
    assert written.count(b"colorize:temperature=") == 1 and b"<colorize:" not in written  # the other one renamed
    assert parsed(written).find(".//{https://elsewhere.invalid/}temperature") is not None


def test_our_attribute_appears_in_the_bytes_only_as_our_attribute() -> None:
    quoted = 'see colorize:model="FAKE-MODEL"'
    packet = (
        xmp_packet()
        .replace(XMP_CAPTION.encode(), quoted.encode())
        .replace(b"<rdf:li", f"<rdf:li title='{quoted}'".encode())
    )
    written = xmp_with_provenance(packet, PROVENANCE)
    assert written.count(b'colorize:model="') == 1 and models_named(written) == ["test-tiny"]
    (li,) = parsed(written).iter(f"{{{RDF_NAMESPACE}}}li")
    assert li.text == quoted and li.get("title") == quoted


def test_descriptions_of_ours_left_by_earlier_colorizations_are_replaced_however_written() -> None:
    earlier = (
        b'<rdf:Description xmlns:colorize="https://colorize.invalid/ns/1.0/"\n  colorize:model="first"'
        b' rdf:about=""></rdf:Description>'
    )
    packet = xmp_packet().replace(b"</rdf:RDF>", earlier + b"</rdf:RDF>")
    again = xmp_with_provenance(packet, PROVENANCE)
    assert models_named(again) == ["test-tiny"] and XMP_CAPTION.encode() in again
    assert len(parsed(again).findall(f".//{{{RDF_NAMESPACE}}}Description")) == 2  # the camera's and ours


@pytest.mark.parametrize(
    "filling",
    [b"<rdf:Bag><rdf:li>" * 10_000 + b"</rdf:li></rdf:Bag>" * 10_000, b"<rdf:li/>" * 60_000],
    ids=["deep", "many-elements"],
)
def test_xmp_too_deep_or_too_large_to_be_a_photos_is_not_carried_over(filling: bytes) -> None:
    packet = xmp_packet().replace(b"<rdf:Alt>", b"<rdf:Alt>" + filling)
    written = xmp_with_provenance(packet, PROVENANCE)
    assert models_named(written) == ["test-tiny"] and XMP_CAPTION.encode() not in written


# --- PNG chunks that inflate past the limit: the block is left out, never the image ----------


@pytest.mark.parametrize(
    "chunk",
    [
        png_chunk(b"zTXt", b"Comment\x00\x00" + inflating(OVER_THE_LIMIT)),
        png_chunk(b"iTXt", b"Comment\x00\x01\x00\x00\x00" + inflating(OVER_THE_LIMIT)),
        png_chunk(b"iCCP", b"ICC profile\x00\x00" + inflating(OVER_THE_LIMIT)),
        png_chunk(b"zTXt", b"Comment\x00\x07" + inflating(100)),  # an unknown compression method
        png_chunk(b"tEXt", b"Comment\x00text")[:-1] + b"\x00",  # a wrong checksum
    ],
    ids=["zTXt", "iTXt", "iCCP", "unknown-method", "checksum"],
)
def test_a_text_or_icc_chunk_pillow_refuses_leaves_the_image_and_its_other_metadata(chunk: bytes) -> None:
    data = grey_png_with(chunk, xmp_chunk(xmp_packet()))
    assert np.array_equal(decode_image(data, Limits())[..., 0], stored_pixels(32, 24))
    metadata = read_metadata(data)
    assert metadata.xmp is not None and XMP_CAPTION.encode() in metadata.xmp


def test_an_inflating_xmp_or_icc_profile_is_left_out_with_a_note(caplog: pytest.LogCaptureFixture) -> None:
    data = grey_png_with(
        png_chunk(b"iCCP", b"ICC profile\x00\x00" + inflating(OVER_THE_LIMIT)),
        xmp_chunk(b"<x:xmpmeta>" + b" " * OVER_THE_LIMIT + b"</x:xmpmeta>"),
    )
    with caplog.at_level(logging.WARNING):
        result = processed(data)
    assert not result.info.get("icc_profile") and models_named(result.info["xmp"]) == ["test-tiny"]
    notes = [record.getMessage() for record in caplog.records]
    assert any("ICC profile (iCCP chunk) inflates past" in note for note in notes), notes
    assert any("XMP packet (iTXt chunk) inflates past" in note for note in notes), notes


def test_text_adding_up_past_what_pillow_reads_leaves_the_image() -> None:
    count = PngImagePlugin.MAX_TEXT_MEMORY // PngImagePlugin.MAX_TEXT_CHUNK + 1
    chunk = png_chunk(b"zTXt", b"Comment\x00\x00" + inflating(PngImagePlugin.MAX_TEXT_CHUNK))
    data = grey_png_with(png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(srgb_profile())), *[chunk] * count)
    assert decode_image(data, Limits()).shape == (24, 32, 3)
    assert read_metadata(data).icc_profile == srgb_profile()
