"""XMP packets from customers' files, parsed as XML and written back as XML we made.

An input's packet is never copied as bytes: ``parse_xmp`` reads it with defusedxml's parser,
which refuses entity definitions and external references, into a tree of its ``rdf:RDF``;
``packet`` writes that tree out in a packet of our own. Whatever is not part of the tree is
left behind: the DOCTYPE, comments, processing instructions, and anything around the
``x:xmpmeta`` element. Parsing and writing are linear in the packet's size (no regular
expression reads it, no recursion walks it).

A packet that is not well-formed XML, defines entities, nests deeper than ``MAX_DEPTH``
elements, holds more than ``MAX_NODES`` elements and attributes or ``MAX_NAMESPACES``
namespaces, or has no ``rdf:RDF`` (as its root or as a child of its root, ``x:xmpmeta``) is not
parsed: the caller carries nothing of it over. The attributes of an ``x:xmpmeta`` root (such as
``x:xmptk``) are kept.

Prefixes stay as the input declared them, so a ``tiff:Orientation`` stays ``tiff:Orientation``;
a prefix the input used for more than one namespace, or for a namespace other than the one
``RESERVED_PREFIXES`` gives it (``x``, ``rdf``, ``xml`` and ``colorize``, the provenance's), is
renamed (``ns1``, ...). Every namespace is declared once, on ``x:xmpmeta``, so a packet written
here grows over the one read only by what escaping adds. Quotes are escaped in text and
attribute values alike: ``colorize:model="`` appears in a packet's bytes only as the attribute
it is, for readers that search the bytes as much as for those that parse them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, TreeBuilder
from xml.sax.saxutils import escape

from defusedxml.ElementTree import DefusedXMLParser

log = logging.getLogger(__name__)

X_NAMESPACE = "adobe:ns:meta/"
RDF_NAMESPACE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XML_NAMESPACE = "http://www.w3.org/XML/1998/namespace"
PROVENANCE_NAMESPACE = "https://colorize.invalid/ns/1.0/"
RESERVED_PREFIXES = {X_NAMESPACE: "x", RDF_NAMESPACE: "rdf", XML_NAMESPACE: "xml", PROVENANCE_NAMESPACE: "colorize"}
# Real packets nest a dozen elements deep (structures in arrays in descriptions), hold a few
# thousand elements and attributes at most (long edit histories) in a few dozen namespaces; a
# packet beyond any of these is not a photo's metadata, and refusing it early bounds the time
# one takes.
MAX_DEPTH = 100
MAX_NODES = 50_000
MAX_NAMESPACES = 1_000

_PROVENANCE = f"{{{PROVENANCE_NAMESPACE}}}"
_RDF = f"{{{RDF_NAMESPACE}}}RDF"
_DESCRIPTION = f"{{{RDF_NAMESPACE}}}Description"
_ABOUT = f"{{{RDF_NAMESPACE}}}about"
_PACKET_BEGIN = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
_PACKET_END = '<?xpacket end="w"?>'
# Text and attribute values are written as parsed (white space that a reader would normalise,
# escaped) and with every quote escaped.
_TEXT_ENTITIES = {'"': "&quot;", "\r": "&#13;"}
_ATTRIBUTE_ENTITIES = {'"': "&quot;", "\r": "&#13;", "\n": "&#10;", "\t": "&#9;"}


@dataclass
class XmpDocument:
    """An XMP packet's ``rdf:RDF`` element, the attributes of the ``x:xmpmeta`` around it, and
    the prefix each namespace is written with."""

    rdf: Element = field(default_factory=lambda: Element(_RDF))
    meta_attributes: dict[str, str] = field(default_factory=dict)
    prefixes: dict[str, str] = field(default_factory=lambda: dict(RESERVED_PREFIXES))

    def set_value(self, name: str, value: str) -> None:
        """Set the property ``name`` ("{namespace}local") to ``value`` wherever the packet has it,
        as an attribute or as a simple element."""
        for element in self.rdf.iter():
            if name in element.attrib:
                element.set(name, value)
            if element.tag == name and len(element) == 0:
                element.text = value


def parse_xmp(packet: bytes) -> XmpDocument | None:
    """The packet as a document, or None (logged) where it is not XMP that can be carried over.
    Nothing in the provenance's namespace is read: no attribute, no element (with what it holds),
    and no description left holding nothing else."""
    builder = _Builder()
    parser = DefusedXMLParser(target=builder, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    try:
        # Packets padded with NULs after their trailer are common in files written in place.
        parser.feed(packet.rstrip(b"\x00"))
        root: Element = parser.close()
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - expat, defusedxml and the limits each raise their own
        log.warning("the image's XMP is not carried over: it is not well-formed XML we accept (%s)", exc)
        return None
    rdf = root if root.tag == _RDF else root.find(_RDF)
    if rdf is None:
        log.warning("the image's XMP is not carried over: it has no rdf:RDF element")
        return None
    if builder.provenance_declared:
        rdf[:] = [child for child in rdf if not _empty_description(child)]
    meta_attributes = dict(root.attrib) if root.tag.startswith(f"{{{X_NAMESPACE}}}") else {}
    return XmpDocument(rdf=rdf, meta_attributes=meta_attributes, prefixes=builder.prefixes)


def packet(document: XmpDocument, description: str = "") -> bytes:
    """``document`` as an XMP packet (UTF-8), with ``description`` (well-formed XML, written by
    the caller) as the last child of its ``rdf:RDF``."""
    writer = _Writer(document.prefixes)
    body = writer.children(document.rdf)
    rdf_attributes = writer.attributes(document.rdf.attrib)
    meta_attributes = writer.attributes(document.meta_attributes)
    declarations = "".join(
        f' xmlns:{prefix}="{escape(namespace, _ATTRIBUTE_ENTITIES)}"'
        for namespace, prefix in sorted(writer.used.items(), key=lambda item: item[1])
        if namespace not in (X_NAMESPACE, RDF_NAMESPACE, XML_NAMESPACE)
    )
    return (
        f"{_PACKET_BEGIN}"
        f'<x:xmpmeta xmlns:x="{X_NAMESPACE}" xmlns:rdf="{RDF_NAMESPACE}"{declarations}{meta_attributes}>\n'
        f"<rdf:RDF{rdf_attributes}>{body}{description}</rdf:RDF>\n"
        f"</x:xmpmeta>\n{_PACKET_END}"
    ).encode()


class _Refused(ValueError):
    pass


class _Builder:
    """The parser's target: a tree builder that records prefixes, leaves out what is in the
    provenance's namespace, and refuses deep or large packets. It has no ``comment`` or ``pi``
    method, so the parser drops comments and instructions."""

    def __init__(self) -> None:
        self._tree = TreeBuilder()
        self._depth = 0
        self._nodes = 0
        self._skipped_depth = 0  # inside an element of the provenance's namespace
        self.prefixes: dict[str, str] = dict(RESERVED_PREFIXES)
        self._taken = set(self.prefixes.values())
        self.provenance_declared = False

    def start_ns(self, prefix: str, namespace: str) -> None:
        if namespace == PROVENANCE_NAMESPACE:
            self.provenance_declared = True
        if namespace in self.prefixes:
            return
        if len(self.prefixes) >= MAX_NAMESPACES:
            raise _Refused(f"more than {MAX_NAMESPACES} namespaces")
        if not prefix or prefix in self._taken:
            prefix = self._fresh_prefix()
        self.prefixes[namespace] = prefix
        self._taken.add(prefix)

    def start(self, tag: str, attributes: dict[str, str]) -> None:
        self._depth += 1
        self._nodes += 1 + len(attributes)
        if self._depth > MAX_DEPTH:
            raise _Refused(f"elements nested more than {MAX_DEPTH} deep")
        if self._nodes > MAX_NODES:
            raise _Refused(f"more than {MAX_NODES} elements and attributes")
        if self._skipped_depth or tag.startswith(_PROVENANCE):
            self._skipped_depth += 1
            return
        if self.provenance_declared:
            attributes = {name: value for name, value in attributes.items() if not name.startswith(_PROVENANCE)}
        self._tree.start(tag, attributes)

    def end(self, tag: str) -> None:
        self._depth -= 1
        if self._skipped_depth:
            self._skipped_depth -= 1
        else:
            self._tree.end(tag)

    def data(self, text: str) -> None:
        if not self._skipped_depth:
            self._tree.data(text)

    def close(self) -> Element:
        return self._tree.close()

    def _fresh_prefix(self) -> str:
        number = len(self._taken)
        while f"ns{number}" in self._taken:
            number += 1
        return f"ns{number}"


class _Writer:
    """Writes elements with the document's prefixes, noting the namespaces it used."""

    def __init__(self, prefixes: dict[str, str]) -> None:
        self._prefixes = prefixes
        self._names: dict[str, str] = {}
        self.used: dict[str, str] = {}

    def children(self, parent: Element) -> str:
        """``parent``'s text and its children, with their tails; iterative, so any depth is written."""
        out = [_text(parent.text)]
        pending: list[Element | str] = list(reversed(parent))
        while pending:
            element = pending.pop()
            if isinstance(element, str):  # a closing tag and the tail after it
                out.append(element)
                continue
            name = self._names.get(element.tag) or self._name(element.tag)
            attributes = self.attributes(element.attrib) if element.attrib else ""
            if len(element) == 0 and not element.text:
                out.append(f"<{name}{attributes}/>{_text(element.tail)}")
            else:
                out.append(f"<{name}{attributes}>{_text(element.text)}")
                pending.append(f"</{name}>{_text(element.tail)}")
                pending.extend(reversed(element))
        return "".join(out)

    def attributes(self, attributes: dict[str, str]) -> str:
        return "".join(
            f' {self._names.get(name) or self._name(name)}="{escape(value, _ATTRIBUTE_ENTITIES)}"'
            for name, value in attributes.items()
        )

    def _name(self, qualified: str) -> str:
        name = qualified
        if qualified.startswith("{"):
            namespace, local = qualified[1:].split("}", 1)
            prefix = self._prefixes[namespace]
            self.used[namespace] = prefix
            name = f"{prefix}:{local}"
        self._names[qualified] = name
        return name


def _text(text: str | None) -> str:
    return escape(text, _TEXT_ENTITIES) if text else ""


def _empty_description(element: Element) -> bool:
    return (
        element.tag == _DESCRIPTION
        and len(element) == 0
        and not (element.text or "").strip()
        and set(element.attrib) <= {_ABOUT}
    )
