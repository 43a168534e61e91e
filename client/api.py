"""``Client``: submit images, archives or folders, follow jobs, download results.

from client import Client
client = Client("http://127.0.0.1:8000")
job = client.submit("photos/")            # a folder is packed into a zip on the fly
job = client.wait(job.id, on_progress=lambda j: print(j.counts.done, "/", j.counts.total))
client.download(job.id, "colorized/")     # one JPEG per item, in the archive's folder layout
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any, Self
from urllib.parse import urlencode

from urllib3.exceptions import HTTPError

from client.bodies import FileSlice, MultipartFile
from client.errors import CONNECTION_ERROR, UNSAFE_PATH, ClientError, WaitTimeout
from client.packing import pack_zip
from client.transport import Transport
from client.types import Connection, Destination, Health, Item, Job, Model

# Up to this size a single file goes in the job request itself; beyond, it is uploaded
# straight to object storage through presigned URLs.
DIRECT_UPLOAD_LIMIT = 32 * 1024**2
DOWNLOAD_CHUNK_BYTES = 256 * 1024
ITEMS_PAGE = 500

UploadProgress = Callable[[int, int], None]  # (bytes sent, bytes in all)
ItemDownloaded = Callable[[Item, Path], None]
BytesDownloaded = Callable[[int], None]  # bytes written so far


class Client:
    """The Colorize API over HTTP.

    ``retries`` applies to every idempotent request (GETs, presigned uploads, job creation
    with its Idempotency-Key), with exponential backoff from ``backoff_s`` plus jitter, on
    connection errors, 5xx and 429 (honouring ``Retry-After``). Failures raise ``ClientError``.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 4,
        backoff_s: float = 0.5,
        direct_upload_limit: int = DIRECT_UPLOAD_LIMIT,
        download_concurrency: int = 4,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.direct_upload_limit = direct_upload_limit
        self.download_concurrency = max(1, download_concurrency)
        self._http = Transport(
            self.base_url, api_key, timeout, retries, backoff_s, connections_per_host=self.download_concurrency
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- submitting ---------------------------------------------------------------------

    def submit(
        self,
        path_or_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        model: str | None = None,
        temperature: float | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        on_upload: UploadProgress | None = None,
        events: Sequence[str] | None = None,
        destination: Destination | None = None,
        format: str | None = None,
        quality: int | None = None,
        max_side: int | None = None,
    ) -> Job:
        """Create a job from one image or archive file, or from folders/several files (packed into a zip).

        ``callback_url`` receives signed webhook deliveries of ``events`` (started, progress,
        completed; all when None). ``format`` (jpeg, png or webp; default jpeg), ``quality``
        (1-100, jpeg and webp) and ``max_side`` (results scaled down to fit it) say how the
        results are written; None leaves each to the server. ``idempotency_key`` defaults to a
        fresh one per call, so the call's own retries can never create two jobs.
        ``destination``: results are also (or only) written to a stored connection; the file
        then goes through a presigned upload, as a JSON job request names it. Raises
        FileNotFoundError for a missing path, ClientError when the API refuses.
        """
        paths = (
            [Path(path_or_paths)] if isinstance(path_or_paths, (str, os.PathLike)) else [Path(p) for p in path_or_paths]
        )
        if not paths:
            raise FileNotFoundError("no path given")
        options = _job_options(model, temperature, callback_url, events)
        if destination is not None:
            options["destination"] = destination.to_json()
        options.update(_output_options(format, quality, max_side))
        # One key for every attempt of this call: a retried request returns the same job.
        key = idempotency_key or uuid.uuid4().hex
        if len(paths) == 1 and paths[0].is_file():
            return self._submit_file(paths[0], paths[0].name, options, key, on_upload)
        packed = pack_zip(paths)
        try:
            return self._submit_file(packed, _packed_name(paths), options, key, on_upload)
        finally:
            packed.unlink(missing_ok=True)

    def submit_references(
        self,
        *,
        connection: str | None = None,
        prefix: str = "",
        keys: Sequence[str] | None = None,
        urls: Sequence[str] | None = None,
        destination: Destination | None = None,
        model: str | None = None,
        temperature: float | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        events: Sequence[str] | None = None,
        format: str | None = None,
        quality: int | None = None,
        max_side: int | None = None,
    ) -> Job:
        """Create a job from images the service reads where they are: the objects under
        ``prefix`` (or the ``keys``) of a stored ``connection``, or ``urls``. With a
        ``destination``, results are also (or only) written to a stored connection, with
        ``manifest.json`` at the end. ``format``, ``quality`` and ``max_side`` as for
        :meth:`submit`."""
        if (connection is None) == (urls is None):
            raise ValueError("give a connection (with a prefix or keys) or urls")
        source: dict[str, Any] = {"urls": list(urls)} if urls is not None else {"connection": connection}
        if connection is not None:
            source.update({"keys": list(keys)} if keys is not None else {"prefix": prefix})
        body: dict[str, Any] = {"source": source, **_job_options(model, temperature, callback_url, events)}
        body.update(_output_options(format, quality, max_side))
        if destination is not None:
            body["destination"] = destination.to_json()
        return self._create_job(body, idempotency_key or uuid.uuid4().hex)

    # --- stored connections -------------------------------------------------------------

    def create_connection(
        self,
        name: str,
        endpoint_url: str,
        bucket: str,
        access_key_id: str,
        secret_access_key: str,
        region: str | None = None,
    ) -> Connection:
        body = {
            "name": name,
            "endpoint_url": endpoint_url,
            "bucket": bucket,
            "access_key_id": access_key_id,
            "secret_access_key": secret_access_key,
        }
        if region is not None:
            body["region"] = region
        # Not retried: a repeat after a lost answer would meet the first one (409).
        return Connection.from_json(self._http.json("POST", "/v1/connections", idempotent=False, json_body=body))

    def connections(self) -> list[Connection]:
        data = self._http.json("GET", "/v1/connections", idempotent=True)
        return [Connection.from_json(entry) for entry in data["connections"]]

    def delete_connection(self, name: str) -> None:
        self._http.request("DELETE", f"/v1/connections/{_segment(name)}", idempotent=True)

    def _submit_file(
        self, path: Path, filename: str, options: dict[str, Any], key: str, on_upload: UploadProgress | None
    ) -> Job:
        size = path.stat().st_size
        report = (lambda sent: on_upload(sent, size)) if on_upload else None
        # A destination is an object, which only a JSON job request carries.
        if size <= self.direct_upload_limit and "destination" not in options:
            try:
                return self._submit_direct(path, size, filename, options, key, report)
            except ClientError as exc:
                # The API's own request limit is lower than ours. It refused before looking at
                # the Idempotency-Key, so the upload below may use the same key.
                if exc.status != 413:
                    raise
        upload_id = self._upload_presigned(path, size, filename, report)
        return self._create_job({"upload_id": upload_id, "filename": filename, **options}, key)

    def _submit_direct(
        self,
        path: Path,
        size: int,
        filename: str,
        options: dict[str, Any],
        key: str,
        report: Callable[[int], None] | None,
    ) -> Job:
        fields = {name: ",".join(value) if isinstance(value, list) else str(value) for name, value in options.items()}
        with path.open("rb") as file:
            body = MultipartFile(file, size, filename, fields, on_position=report)
            data = self._http.json(
                "POST",
                "/v1/jobs",
                idempotent=True,
                body=body,
                headers={"Content-Type": body.content_type, "Content-Length": str(len(body)), "Idempotency-Key": key},
            )
        return self._job(data)

    def _upload_presigned(self, path: Path, size: int, filename: str, report: Callable[[int], None] | None) -> str:
        """Upload ``path`` straight to storage (one PUT, or multipart parts in sequence); return the upload id."""
        # Idempotent in effect: a repeated request only leaves an unused upload, which expires.
        plan = self._http.json("POST", "/v1/uploads", idempotent=True, json_body={"size": size, "filename": filename})
        with path.open("rb") as file:
            if "multipart" not in plan:
                self._put(plan["url"], FileSlice(file, 0, size, report))
                return plan["upload_id"]
            part_size = int(plan["multipart"]["part_size"])
            parts = []
            for part in plan["multipart"]["parts"]:
                number = int(part["part_number"])
                offset = (number - 1) * part_size
                done_before = offset
                on_position = (lambda position, base=done_before: report(base + position)) if report else None
                etag = self._put(part["url"], FileSlice(file, offset, min(part_size, size - offset), on_position))
                parts.append({"part_number": number, "etag": etag})
        self._http.json("POST", plan["complete_url"], idempotent=False, json_body={"parts": parts})
        return plan["upload_id"]

    def _put(self, url: str, body: FileSlice) -> str:
        response = self._http.request(
            "PUT", url, idempotent=True, body=body, authorize=False, headers={"Content-Length": str(len(body))}
        )
        return response.headers.get("ETag", "")

    def _create_job(self, body: dict[str, Any], key: str) -> Job:
        return self._job(
            self._http.json("POST", "/v1/jobs", idempotent=True, json_body=body, headers={"Idempotency-Key": key})
        )

    # --- following jobs -----------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        return self._job(self._http.json("GET", f"/v1/jobs/{_segment(job_id)}", idempotent=True))

    def items(self, job_id: str, page_size: int = ITEMS_PAGE) -> Iterator[Item]:
        """The job's items in index order, page by page. While the job's ``expanded`` is False
        this ends at the items registered so far; more may appear later."""
        url: str | None = f"/v1/jobs/{_segment(job_id)}/items?" + urlencode({"limit": page_size})
        while url:
            page = self._http.json("GET", url, idempotent=True)
            for data in page["items"]:
                yield Item.from_json(data, self.base_url)
            url = page.get("next")

    def wait(
        self,
        job_id: str,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
        on_progress: Callable[[Job], None] | None = None,
    ) -> Job:
        """Poll until the job ends; ``on_progress`` sees every poll. WaitTimeout after ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job.is_terminal:
                return job
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WaitTimeout(job_id, timeout_s)
                time.sleep(min(poll_s, remaining))
            else:
                time.sleep(poll_s)

    def cancel(self, job_id: str) -> Job:
        """Drop the job's pending work; finished results stay. ClientError ``conflict`` if it had ended."""
        return self._job(self._http.json("POST", f"/v1/jobs/{_segment(job_id)}/cancel", idempotent=False))

    def models(self) -> list[Model]:
        data = self._http.json("GET", "/v1/models", idempotent=True)
        return [Model.from_json(model) for model in data["models"]]

    def health(self) -> Health:
        """Readiness of the service; a service that is up but not ready answers ``ready=False``."""
        response = self._http.request("GET", "/readyz", idempotent=True, allow_status=frozenset({503}))
        data = _json_or_empty(response.data)
        if response.status == 503:
            details = (data.get("error") or {}).get("details") or {}
            return Health(ready=False, checks=details.get("checks", {}), raw=data)
        return Health(ready=True, checks=data.get("checks", {}), raw=data)

    # --- downloading --------------------------------------------------------------------

    def download(
        self,
        job_id: str,
        dest_dir: str | os.PathLike[str],
        as_zip: bool = False,
        on_item: ItemDownloaded | None = None,
        on_bytes: BytesDownloaded | None = None,
    ) -> list[Path]:
        """Write the job's results under ``dest_dir``: each JPEG at its ``output_path`` (the
        archive's folder layout), or with ``as_zip`` one ``<job id>.zip`` streamed from the API.
        Returns the files written, in item order."""
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        if as_zip:
            target = dest / f"{job_id}.zip"
            self._stream_to(f"/v1/jobs/{_segment(job_id)}/results.zip", target, authorize=True, on_bytes=on_bytes)
            return [target]
        done = [item for item in self.items(job_id) if item.result_url]
        targets = [_local_path(dest, item.output_path) for item in done]

        def fetch(pair: tuple[Item, Path]) -> Path:
            item, target = pair
            self._download_item(item, target)
            if on_item is not None:
                on_item(item, target)
            return target

        with ThreadPoolExecutor(self.download_concurrency) as pool:
            return list(pool.map(fetch, zip(done, targets)))

    def _download_item(self, item: Item, target: Path) -> None:
        """The result URL answers with a redirect to a presigned storage URL, fetched without our credentials."""
        redirect = self._http.request("GET", item.result_url, idempotent=True)
        location = redirect.headers.get("Location")
        if redirect.status in (301, 302, 303, 307, 308) and location:
            self._stream_to(self._http.url(location), target, authorize=False)
        else:
            _write_atomically(target, [redirect.data])

    def _stream_to(self, url: str, target: Path, authorize: bool, on_bytes: BytesDownloaded | None = None) -> None:
        """GET ``url`` into ``target`` (via a temporary file); a body cut off midway is fetched again."""
        retry = self._http.streaming_retry()
        while True:
            response = self._http.request("GET", url, idempotent=True, stream=True, authorize=authorize)
            try:
                _write_atomically(target, response.stream(DOWNLOAD_CHUNK_BYTES), on_bytes)
                return
            except HTTPError as exc:
                try:
                    retry = retry.increment("GET", url, error=exc)
                except HTTPError:
                    raise ClientError(CONNECTION_ERROR, f"download of {target.name} was cut off: {exc}") from exc
                retry.sleep()
            finally:
                response.release_conn()

    def _job(self, data: dict[str, Any]) -> Job:
        return Job.from_json(data, self.base_url)


def _job_options(
    model: str | None, temperature: float | None, callback_url: str | None, events: Sequence[str] | None
) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if model is not None:
        options["model"] = model
    if temperature is not None:
        options["temperature"] = temperature
    if callback_url is not None:
        options["callback_url"] = callback_url
    if events is not None:
        options["events"] = list(events)
    return options


def _output_options(format: str | None, quality: int | None, max_side: int | None) -> dict[str, Any]:
    given = {"format": format, "quality": quality, "max_side": max_side}
    return {name: value for name, value in given.items() if value is not None}


def _packed_name(paths: Sequence[Path]) -> str:
    if len(paths) == 1:
        return (paths[0].resolve().name or "upload") + ".zip"
    return "upload.zip"


def _segment(job_id: str) -> str:
    if not job_id or "/" in job_id or job_id in (".", ".."):
        raise ClientError("invalid_request", f"{job_id!r} is not a job id")
    return job_id


def _local_path(dest: Path, output_path: str) -> Path:
    """Where a result goes under ``dest``; a path that would leave it is refused, whatever the server says."""
    relative = PurePosixPath(output_path.replace("\\", "/"))
    if relative.is_absolute() or not relative.parts or any(part in ("", ".", "..") for part in relative.parts):
        raise ClientError(UNSAFE_PATH, f"refusing to write a result to {output_path!r}")
    return dest.joinpath(*relative.parts)


def _write_atomically(target: Path, chunks: Iterable[bytes], on_bytes: BytesDownloaded | None = None) -> None:
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


def _json_or_empty(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
