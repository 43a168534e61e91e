"""CPU a worker spends on an input's metadata, for crafted inputs built to make it slow.

    python bench/metadata_cost.py [--repeat 3]

Each input is a small grey PNG whose metadata is hostile: an XMP packet of about 1 MiB (the
most that is read) made of what makes a careless reader slow, one with as many elements and
attributes as a packet may hold, or text and ICC chunks that inflate past the 1 MiB a block
may have. For each, the worker's path without the model:
``decode_image``, ``read_metadata`` and ``encode_result`` (a PNG result, its metadata and
provenance included), timed in CPU seconds (the best of ``--repeat`` runs), with the input's
size and the result's XMP size. The bar is under 1 s for every input.
"""

from __future__ import annotations

import argparse
import struct
import time
import zlib
from collections.abc import Callable

import cv2
import numpy as np

from shared.imaging.decoding import decode_image
from shared.imaging.encoding import encode_result
from shared.imaging.metadata import read_metadata
from shared.imaging.output_options import OutputFormat, OutputOptions
from shared.imaging.provenance import Provenance
from shared.imaging.xmp import MAX_NODES
from shared.setting_types import Limits

XMP_BYTES = 1024**2 - 1024  # just under what a PNG text chunk may inflate to
RDF = 'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"'
OURS = 'xmlns:colorize="https://colorize.invalid/ns/1.0/"'
PROVENANCE = Provenance("bench", "0" * 64, 0.38)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def grey_png_with(*chunks: bytes) -> bytes:
    """A 64x48 grey PNG with ``chunks`` after its IHDR."""
    ok, encoded = cv2.imencode(".png", np.full((48, 64), 90, np.uint8))
    assert ok
    png = encoded.tobytes()
    ihdr_end = 8 + 8 + 13 + 4
    return png[:ihdr_end] + b"".join(chunks) + png[ihdr_end:]


def compressed_xmp(packet: bytes) -> bytes:
    """An iTXt chunk keyed for XMP, deflated."""
    return png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x01\x00\x00\x00" + zlib.compress(packet, 9))


def repeated(head: str, unit: str, tail: str) -> bytes:
    count = (XMP_BYTES - len(head) - len(tail)) // len(unit)
    return (head + unit * count + tail).encode()


def open_descriptions() -> bytes:
    """Repeated ``rdf:Description`` openings, never closed, with a closing ``rdf:RDF`` at the end."""
    return repeated(
        f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF {RDF}>', f'<rdf:Description rdf:about="" {OURS} ', "</rdf:RDF>"
    )


def deep_nesting() -> bytes:
    """Well-formed, about 100,000 levels deep."""
    count = (XMP_BYTES - 200) // 26
    return f"<rdf:RDF {RDF}>{'<rdf:Bag><x>' * count}{'</x></rdf:Bag>' * count}</rdf:RDF>".encode()[:XMP_BYTES]


def planted_descriptions() -> bytes:
    """Tens of thousands of descriptions in our namespace, each to be removed."""
    head, tail = f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF {RDF}>', "</rdf:RDF></x:xmpmeta>"
    return repeated(head, f'<rdf:Description rdf:about="" {OURS} colorize:model="FAKE"/>', tail)


def many_properties() -> bytes:
    """An ordinary packet, only large: one description with a long list of keywords."""
    head = f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF {RDF}><rdf:Description rdf:about="" '
    head += 'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag>'
    return repeated(
        head, "<rdf:li>harbour &amp; boats</rdf:li>", "</rdf:Bag></dc:subject></rdf:Description></rdf:RDF></x:xmpmeta>"
    )


def most_elements() -> bytes:
    """As many elements, each with an attribute, as a packet may hold (``MAX_NODES``), less a few."""
    head = f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF {RDF}><rdf:Description rdf:about="">'
    count = MAX_NODES // 2 - 10
    return (head + '<rdf:li a="1"/>' * count + "</rdf:Description></rdf:RDF></x:xmpmeta>").encode()


def inflating_chunks() -> bytes:
    """A zTXt, an iTXt and an iCCP chunk, each inflating to 8 MiB."""
    bomb = zlib.compress(b"\x00" * 8 * 1024**2, 9)
    return grey_png_with(
        png_chunk(b"zTXt", b"Comment\x00\x00" + bomb),
        png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x01\x00\x00\x00" + bomb),
        png_chunk(b"iCCP", b"ICC profile\x00\x00" + bomb),
    )


INPUTS: dict[str, Callable[[], bytes]] = {
    "open rdf:Description x 20,000": lambda: grey_png_with(compressed_xmp(open_descriptions())),
    "nesting 100,000 deep": lambda: grey_png_with(compressed_xmp(deep_nesting())),
    "planted colorize descriptions": lambda: grey_png_with(compressed_xmp(planted_descriptions())),
    "29,000 keywords": lambda: grey_png_with(compressed_xmp(many_properties())),
    "25,000 elements, 25,000 attributes": lambda: grey_png_with(compressed_xmp(most_elements())),
    "text and ICC inflating to 8 MiB": inflating_chunks,
}


def worker_path(data: bytes) -> bytes:
    """Decode, read the metadata, write the result with it: what a worker does but colorize."""
    image = decode_image(data, Limits())
    metadata = read_metadata(data)
    return encode_result(image, OutputOptions(OutputFormat.PNG), 90, metadata, PROVENANCE)


def result_xmp_bytes(result: bytes) -> int:
    start = result.find(b"iTXtXML:com.adobe.xmp")
    return int.from_bytes(result[start - 4 : start], "big") - len(b"XML:com.adobe.xmp") - 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'input':<36} {'file':>9} {'CPU s':>7} {'result XMP':>11}")
    for name, make in INPUTS.items():
        data = make()
        best, outcome = float("inf"), ""
        for _ in range(args.repeat):
            started = time.process_time()
            try:
                outcome = f"{result_xmp_bytes(worker_path(data)):>11,}"
            except Exception as exc:  # noqa: BLE001 - the image failing is what is reported
                outcome = f"fails: {type(exc).__name__}"
            best = min(best, time.process_time() - started)
        print(f"{name:<36} {len(data):>9,} {best:>7.3f} {outcome:>11}")


if __name__ == "__main__":
    main()
