"""File objects over stored objects: a forward-only stream of a GET's body, a seekable reader
served by ranged GETs, and a reader that counts what an upload took."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import smart_open.s3

from shared.storage.s3_errors import translated_errors


class StreamingBodyReader(io.RawIOBase):
    """A botocore response body as a raw stream, so callers get an ordinary buffered file."""

    def __init__(self, body: Any, key: str) -> None:
        self._body = body
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        with translated_errors(self._key):
            data = self._body.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


@contextmanager
def _translated_reader_errors(key: str) -> Iterator[None]:
    """As translated_errors, for smart_open, which wraps botocore's ClientError in an OSError."""
    with translated_errors(key):
        try:
            yield
        except OSError as exc:
            backend_error = getattr(exc, "backend_error", None)
            if backend_error is None:
                raise
            raise backend_error from exc


class SeekableObject(smart_open.s3.Reader):
    """smart_open's seekable S3 reader, failing with this project's error types."""

    def read(self, size: int | None = -1) -> bytes:
        with _translated_reader_errors(self.name):
            return super().read(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        with _translated_reader_errors(self.name):
            return super().seek(offset, whence)


class CountingReader:
    """Counts the bytes a transfer reads from a file object."""

    def __init__(self, fileobj: IO[bytes]) -> None:
        self._fileobj = fileobj
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._fileobj.read(size)
        self.count += len(data)
        return data
