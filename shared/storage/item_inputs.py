"""Where an archive item's bytes are in storage, as the expander records them with the item.

No item gets an object of its own. A zip member is read where it lies in the job's source
object (zip archives are seekable): its local header and compressed data, unpacked by the
worker. The images of a tar chunk, which can only be read in one pass, are stored back to back
in one input object per chunk (:func:`shared.storage.object_keys.input_object_key`) and read by range.

An item of a source by reference (:mod:`shared.storage.sources`) is read where the tenant keeps
it: its input names the object or URL (``reference``) and no object of the store.

A location is kept in the job store as a short string, ``<object>;<offset>,<length>[,<zip member>]``
or ``;<offset>,<length>;<reference>`` (``<object>`` empty for the source object): the job
scripts read the object part to count the items each input object still serves.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ZipMember:
    """How a zip member is packed: what the worker needs to unpack it without the directory."""

    method: int
    compressed_size: int
    size: int
    crc: int
    flags: int


@dataclass(frozen=True)
class ItemInput:
    """``length`` bytes at ``offset`` of the job's source object (``object`` None) or of the
    input object named ``object``; ``member`` set: they are a zip member's local header and
    compressed data, not the image itself; ``reference`` set: the item is read from there
    (``offset`` 0, ``length`` its listed size or 0)."""

    object: str | None
    offset: int
    length: int
    member: ZipMember | None = None
    reference: str | None = None

    @property
    def end(self) -> int:
        return self.offset + self.length

    def encode(self) -> str:
        fields = [self.offset, self.length]
        if self.member is not None:
            m = self.member
            fields += [m.method, m.compressed_size, m.size, m.crc, m.flags]
        text = f"{self.object or ''};" + ",".join(str(value) for value in fields)
        return text if self.reference is None else f"{text};{self.reference}"

    @classmethod
    def decode(cls, text: str) -> ItemInput:
        name, _, rest = text.partition(";")
        numbers, marked, reference = rest.partition(";")
        values = [int(value) for value in numbers.split(",")]
        member = ZipMember(*values[2:7]) if len(values) == 7 else None
        return cls(
            object=name or None,
            offset=values[0],
            length=values[1],
            member=member,
            reference=reference if marked else None,
        )
