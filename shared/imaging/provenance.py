"""What every result says about how it was made, as XMP: the model, the temperature and the
colour hints.

The properties live in the project's own namespace (``NAMESPACE``, prefix ``colorize``) in
an ``rdf:Description`` of their own: ``colorize:model`` (the model's name),
``colorize:modelSha256`` (the sha256 of its ONNX file, from its manifest),
``colorize:temperature`` and, for a result colorized with hints, ``colorize:hints`` (how many;
the hints themselves are in the job and its ``manifest.json``). An input that had an XMP packet keeps what of it parses as XMP
(``shared.imaging.xmp``: no DOCTYPE, no comment), with that description added as the last
child of its ``rdf:RDF`` (XMP allows any number of descriptions of the same resource). Only
that description speaks for our namespace: every attribute and element in it that the input
had, an earlier colorization's description or one planted, is left out as the packet is read.
An input packet that does not parse, or has no ``rdf:RDF`` to add to, is not XMP we can
extend: the result gets a packet of its own, as it does when the packet written would exceed
``MAX_XMP_BYTES``.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from shared.imaging.xmp import PROVENANCE_NAMESPACE, XmpDocument, packet, parse_xmp

NAMESPACE = PROVENANCE_NAMESPACE
PREFIX = "colorize"
# As much as a result's XMP may hold: what an input's may (shared.imaging.metadata).
MAX_XMP_BYTES = 1024**2


@dataclass(frozen=True)
class Provenance:
    model: str
    model_sha256: str
    temperature: float
    hints: int = 0  # how many colour hints the result was given

    def description(self) -> str:
        """Our ``rdf:Description``, one line."""
        attributes = {
            f"{PREFIX}:model": self.model,
            f"{PREFIX}:modelSha256": self.model_sha256,
            f"{PREFIX}:temperature": f"{self.temperature:g}",
        }
        if self.hints:
            attributes[f"{PREFIX}:hints"] = str(self.hints)
        shown = " ".join(f"{name}={quoteattr(value)}" for name, value in attributes.items())
        return f'\n<rdf:Description rdf:about="" xmlns:{PREFIX}="{NAMESPACE}" {shown}/>\n'


def xmp_with_provenance(xmp: bytes | None, provenance: Provenance) -> bytes:
    """The input's XMP packet, as parsed, with our description added; or a packet with ours alone."""
    document = parse_xmp(xmp) if xmp else None
    if document is None:
        return provenance_only(provenance)
    written = packet(document, provenance.description())
    return written if len(written) <= MAX_XMP_BYTES else provenance_only(provenance)


def provenance_only(provenance: Provenance) -> bytes:
    """A packet with our description alone (when the input's does not fit the result)."""
    return packet(XmpDocument(), provenance.description())
