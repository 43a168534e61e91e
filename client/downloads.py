"""Results written to local files: where each goes, streamed downloads, atomic writes.

A body cut off midway is fetched again; a file is renamed into place only once complete, so an
interrupted download never leaves a partial result behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

from urllib3.exceptions import HTTPError

from client.errors import CONNECTION_ERROR, UNSAFE_PATH, ClientError
from client.transport import Transport
from client.types import Item

DOWNLOAD_CHUNK_BYTES = 256 * 1024

BytesDownloaded = Callable[[int], None]  # bytes written so far


def download_item(http: Transport, item: Item, target: Path) -> None:
    """The result URL answers with a redirect to a presigned storage URL, fetched without our credentials."""
    assert item.result_url is not None  # only items with a result are downloaded
    redirect = http.request("GET", item.result_url, idempotent=True)
    location = redirect.headers.get("Location")
    if redirect.status in (301, 302, 303, 307, 308) and location:
        stream_to(http, http.url(location), target, authorize=False)
    else:
        write_atomically(target, [redirect.data])


def stream_to(
    http: Transport, url: str, target: Path, authorize: bool, on_bytes: BytesDownloaded | None = None
) -> None:
    """GET ``url`` into ``target`` (via a temporary file); a body cut off midway is fetched again."""
    retry = http.streaming_retry()
    while True:
        response = http.request("GET", url, idempotent=True, stream=True, authorize=authorize)
        try:
            write_atomically(target, response.stream(DOWNLOAD_CHUNK_BYTES), on_bytes)
            return
        except HTTPError as exc:
            try:
                retry = retry.increment("GET", url, error=exc)
            except HTTPError:
                raise ClientError(CONNECTION_ERROR, f"download of {target.name} was cut off: {exc}") from exc
            retry.sleep()
        finally:
            response.release_conn()


def local_path(dest: Path, output_path: str) -> Path:
    """Where a result goes under ``dest``; a path that would leave it is refused, whatever the server says."""
    relative = PurePosixPath(output_path.replace("\\", "/"))
    if relative.is_absolute() or not relative.parts or any(part in ("", ".", "..") for part in relative.parts):
        raise ClientError(UNSAFE_PATH, f"refusing to write a result to {output_path!r}")
    return dest.joinpath(*relative.parts)


def write_atomically(target: Path, chunks: Iterable[bytes], on_bytes: BytesDownloaded | None = None) -> None:
    """Write to a temporary file beside ``target`` and rename: an interrupted download leaves no partial file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    written = 0
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                written += len(chunk)
                if on_bytes is not None:
                    on_bytes(written)
        os.replace(name, target)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
