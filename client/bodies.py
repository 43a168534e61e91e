"""Request bodies streamed from disk: a region of a file, and a multipart form around a file.

Both are read in blocks by urllib3 and support ``seek``/``tell``, so a retried request rewinds
its body instead of holding a copy of it in memory. ``on_position`` reports how far into the
body the reader is (after a rewind the position goes back, so a progress display stays true).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping
from typing import BinaryIO

from urllib3.fields import RequestField
from urllib3.filepost import choose_boundary

Position = Callable[[int], None]


class FileSlice:
    """Bytes ``offset .. offset + length`` of an open binary file, as a readable, seekable body."""

    def __init__(self, file: BinaryIO, offset: int, length: int, on_position: Position | None = None) -> None:
        self._file = file
        self._offset = offset
        self.length = length
        self._position = 0
        self._on_position = on_position

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        remaining = self.length - self._position
        if remaining <= 0:
            return b""
        size = remaining if size is None or size < 0 else min(size, remaining)
        self._file.seek(self._offset + self._position)
        data = self._file.read(size)
        self._position += len(data)
        if self._on_position is not None:
            self._on_position(self._position)
        return data

    def seek(self, position: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self.length}[whence]
        self._position = min(max(base + position, 0), self.length)
        if self._on_position is not None:
            self._on_position(self._position)
        return self._position

    def tell(self) -> int:
        return self._position


class MultipartFile:
    """A ``multipart/form-data`` body with text ``fields`` and one file field, streamed.

    The form's framing is rendered by urllib3 (the same encoding as its
    ``encode_multipart_formdata``); only the file's bytes are read from disk as they are sent.
    """

    def __init__(
        self,
        file: BinaryIO,
        size: int,
        filename: str,
        fields: Mapping[str, str],
        file_field: str = "file",
        on_position: Position | None = None,
    ) -> None:
        boundary = choose_boundary()
        self.content_type = f"multipart/form-data; boundary={boundary}"
        head = io.BytesIO()
        for name, value in fields.items():
            head.write(_part_header(boundary, RequestField(name=name, data=value)))
            head.write(value.encode("utf-8") + b"\r\n")
        head.write(
            _part_header(
                boundary, RequestField(name=file_field, data=b"", filename=filename), "application/octet-stream"
            )
        )
        tail = f"\r\n--{boundary}--\r\n".encode("ascii")
        self._segments: list[io.BytesIO | FileSlice] = [
            io.BytesIO(head.getvalue()),
            FileSlice(file, 0, size),
            io.BytesIO(tail),
        ]
        self._sizes = [len(head.getvalue()), size, len(tail)]
        self.length = sum(self._sizes)
        self._file_start = self._sizes[0]
        self._position = 0
        self._on_position = on_position

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        wanted = self.length - self._position if size is None or size < 0 else size
        chunks = []
        while wanted > 0 and self._position < self.length:
            segment, start = self._segment_at(self._position)
            segment.seek(self._position - start)
            data = segment.read(wanted)
            if not data:
                break
            chunks.append(data)
            self._position += len(data)
            wanted -= len(data)
        self._report()
        return b"".join(chunks)

    def seek(self, position: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self.length}[whence]
        self._position = min(max(base + position, 0), self.length)
        self._report()
        return self._position

    def tell(self) -> int:
        return self._position

    def _segment_at(self, position: int) -> tuple[io.BytesIO | FileSlice, int]:
        start = 0
        for segment, size in zip(self._segments, self._sizes):
            if position < start + size:
                return segment, start
            start += size
        return self._segments[-1], start - self._sizes[-1]

    def _report(self) -> None:
        """Progress counts the file's bytes only, not the form's framing."""
        if self._on_position is not None:
            self._on_position(min(max(self._position - self._file_start, 0), self._sizes[1]))


def _part_header(boundary: str, field: RequestField, content_type: str | None = None) -> bytes:
    field.make_multipart(content_type=content_type)
    return f"--{boundary}\r\n".encode("ascii") + field.render_headers().encode("utf-8")
