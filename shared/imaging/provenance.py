"""What every result says about how it was made, as XMP: the model and the temperature.

The properties live in the project's own namespace (``NAMESPACE``, prefix ``colorize``) in
an ``rdf:Description`` of their own: ``colorize:model`` (the model's name),
``colorize:modelSha256`` (the sha256 of its ONNX file, from its manifest) and
``colorize:temperature``. An input that had an XMP packet keeps it, with that description
added inside its ``rdf:RDF`` (XMP allows any number of descriptions of the same resource),
and a description of ours an earlier colorization left there is replaced. A packet that has
no ``rdf:RDF`` to add to is not XMP we can extend: the result gets a packet of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

NAMESPACE = "https://colorize.invalid/ns/1.0/"
PREFIX = "colorize"

_PACKET = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
    "{description}"
    "</rdf:RDF>\n"
    "</x:xmpmeta>\n"
    '<?xpacket end="w"?>'
)
_RDF_END = re.compile(rb"</rdf:RDF\s*>")
# A description this module wrote (it always writes it on one line, as below).
_OURS = re.compile(rb'<rdf:Description rdf:about="" xmlns:colorize="[^"]*"[^\n]*/>\n?')


@dataclass(frozen=True)
class Provenance:
    model: str
    model_sha256: str
    temperature: float

    def description(self) -> bytes:
        """Our ``rdf:Description``, one line."""
        attributes = {
            f"{PREFIX}:model": self.model,
            f"{PREFIX}:modelSha256": self.model_sha256,
            f"{PREFIX}:temperature": f"{self.temperature:g}",
        }
        shown = " ".join(f"{name}={quoteattr(value)}" for name, value in attributes.items())
        return f'<rdf:Description rdf:about="" xmlns:{PREFIX}="{NAMESPACE}" {shown}/>\n'.encode()


def xmp_with_provenance(xmp: bytes | None, provenance: Provenance) -> bytes:
    """The input's XMP packet with our description added, or a packet with ours alone."""
    ours = provenance.description()
    if xmp:
        ends = list(_RDF_END.finditer(xmp))
        if ends:
            at = ends[-1].start()
            head = _OURS.sub(b"", xmp[:at])
            return head + ours + xmp[at:]
    return _PACKET.format(description=ours.decode()).encode()


def provenance_only(provenance: Provenance) -> bytes:
    """A packet with our description alone (when the input's does not fit the result)."""
    return xmp_with_provenance(None, provenance)
