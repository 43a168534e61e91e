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
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlencode

from client.bodies import FileSlice, MultipartFile
from client.connections import ConnectionMethods
from client.downloads import BytesDownloaded, download_item, local_path, stream_to
from client.errors import ClientError, WaitTimeout
from client.job_requests import hints_json, job_headers, job_options, output_options, reference_source, waited_s
from client.packing import pack_zip
from client.transport import Transport, path_segment
from client.types import Destination, Health, Hint, Item, Job, JobPage, Model

# Up to this size a single file goes in the job request itself; beyond, it is uploaded
# straight to object storage through presigned URLs.
DIRECT_UPLOAD_LIMIT = 32 * 1024**2
ITEMS_PAGE = 500
JOBS_PAGE = 100  # the most the API gives in one page

UploadProgress = Callable[[int, int], None]  # (bytes sent, bytes in all)
ItemDownloaded = Callable[[Item, Path], None]


class Client(ConnectionMethods):
    """The Colorize API over HTTP (stored connections: :class:`client.connections.ConnectionMethods`).

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
        wait: int | None = None,
        hints: Sequence[Hint] | Mapping[str, Sequence[Hint]] | None = None,
    ) -> Job:
        """Create a job from one image or archive file, or from folders/several files (packed into a zip).

        ``callback_url`` receives signed webhook deliveries of ``events`` (started, progress,
        completed; all when None). ``format`` (jpeg, png or webp; default jpeg), ``quality``
        (1-100, jpeg and webp) and ``max_side`` (results scaled down to fit it) say how the
        results are written; None leaves each to the server. ``idempotency_key`` defaults to a
        fresh one per call, so the call's own retries can never create two jobs. ``wait`` (1 to
        60 seconds) asks the API to answer with the finished job if it ends within that time
        (``Prefer: wait``); otherwise the job comes back unfinished, as without it.
        ``destination``: results are also (or only) written to a stored connection; the file
        then goes through a presigned upload, as a JSON job request names it. ``hints``: colour
        hints (a model that takes them; see :class:`Hint`), a list for a single image, or for an
        archive (or folders, packed) a mapping from item paths, as :meth:`items` shows them, to
        lists; they win over the archive's own ``hints.json`` path by path. Raises
        FileNotFoundError for a missing path, ClientError when the API refuses.
        """
        paths = (
            [Path(path_or_paths)] if isinstance(path_or_paths, (str, os.PathLike)) else [Path(p) for p in path_or_paths]
        )
        if not paths:
            raise FileNotFoundError("no path given")
        options = job_options(model, temperature, callback_url, events)
        if destination is not None:
            options["destination"] = destination.to_json()
        options.update(output_options(format, quality, max_side))
        if hints:
            options["hints"] = hints_json(hints)
        headers = job_headers(idempotency_key, wait)
        if len(paths) == 1 and paths[0].is_file():
            return self._submit_file(paths[0], paths[0].name, options, headers, on_upload)
        packed = pack_zip(paths)
        try:
            return self._submit_file(packed, _packed_name(paths), options, headers, on_upload)
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
        wait: int | None = None,
        hints: Mapping[str, Sequence[Hint]] | None = None,
    ) -> Job:
        """Create a job from images the service reads where they are: the objects under
        ``prefix`` (or the ``keys``) of a stored ``connection``, or ``urls``. With a
        ``destination``, results are also (or only) written to a stored connection, with
        ``manifest.json`` at the end. ``hints``: colour hints by item path (a key relative to
        ``prefix``, a key named, the last part of a URL's path). ``format``, ``quality``,
        ``max_side`` and ``wait`` as for :meth:`submit`."""
        source = reference_source(connection, prefix, keys, urls)
        body: dict[str, Any] = {"source": source, **job_options(model, temperature, callback_url, events)}
        body.update(output_options(format, quality, max_side))
        if destination is not None:
            body["destination"] = destination.to_json()
        if hints:
            body["hints"] = hints_json(hints)
        return self._create_job(body, job_headers(idempotency_key, wait))

    def _submit_file(
        self,
        path: Path,
        filename: str,
        options: dict[str, Any],
        headers: dict[str, str],
        on_upload: UploadProgress | None,
    ) -> Job:
        size = path.stat().st_size
        report = (lambda sent: on_upload(sent, size)) if on_upload else None
        # A destination is an object, which only a JSON job request carries.
        if size <= self.direct_upload_limit and "destination" not in options:
            try:
                return self._submit_direct(path, size, filename, options, headers, report)
            except ClientError as exc:
                # The API's own request limit is lower than ours. It refused before looking at
                # the Idempotency-Key, so the upload below may use the same key.
                if exc.status != 413:
                    raise
        upload_id = self._upload_presigned(path, size, filename, report)
        return self._create_job({"upload_id": upload_id, "filename": filename, **options}, headers)

    def _submit_direct(
        self,
        path: Path,
        size: int,
        filename: str,
        options: dict[str, Any],
        headers: dict[str, str],
        report: Callable[[int], None] | None,
    ) -> Job:
        fields = {name: _form_field(name, value) for name, value in options.items()}
        with path.open("rb") as file:
            body = MultipartFile(file, size, filename, fields, on_position=report)
            data = self._http.json(
                "POST",
                "/v1/jobs",
                idempotent=True,
                body=body,
                headers={"Content-Type": body.content_type, "Content-Length": str(len(body)), **headers},
                extra_read_s=waited_s(headers),
            )
        return self._job(data)

    def _upload_presigned(self, path: Path, size: int, filename: str, report: Callable[[int], None] | None) -> str:
        """Upload ``path`` straight to storage (one PUT, or multipart parts in sequence); return the upload id."""
        # Idempotent in effect: a repeated request only leaves an unused upload, which expires.
        plan = self._http.json("POST", "/v1/uploads", idempotent=True, json_body={"size": size, "filename": filename})
        with path.open("rb") as file:
            if "multipart" not in plan:
                self._put(plan["url"], FileSlice(file, 0, size, report))
                return str(plan["upload_id"])
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
        return str(plan["upload_id"])

    def _put(self, url: str, body: FileSlice) -> str:
        response = self._http.request(
            "PUT", url, idempotent=True, body=body, authorize=False, headers={"Content-Length": str(len(body))}
        )
        return response.headers.get("ETag", "")

    def _create_job(self, body: dict[str, Any], headers: dict[str, str]) -> Job:
        return self._job(
            self._http.json(
                "POST", "/v1/jobs", idempotent=True, json_body=body, headers=headers, extra_read_s=waited_s(headers)
            )
        )

    # --- following jobs -----------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        return self._job(self._http.json("GET", f"/v1/jobs/{path_segment(job_id)}", idempotent=True))

    def list_jobs(
        self,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
    ) -> JobPage:
        """One page of this tenant's jobs, newest first (``limit``: up to 100; the API's default
        when None). Pass the page's ``next_cursor`` as ``cursor`` (with the same filters) for the
        next. Times are datetimes (naive ones are UTC) or ISO 8601 text."""
        query = {
            "status": status,
            "limit": limit,
            "cursor": cursor,
            "created_after": _iso(created_after),
            "created_before": _iso(created_before),
        }
        url = "/v1/jobs?" + urlencode({name: value for name, value in query.items() if value is not None})
        return JobPage.from_json(self._http.json("GET", url, idempotent=True), self.base_url)

    def iter_jobs(
        self,
        status: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        page_size: int = JOBS_PAGE,
    ) -> Iterator[Job]:
        """Every job of this tenant that matches, newest first, fetched a page at a time."""
        cursor: str | None = None
        while True:
            page = self.list_jobs(status, page_size, cursor, created_after, created_before)
            yield from page.jobs
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def items(self, job_id: str, page_size: int = ITEMS_PAGE) -> Iterator[Item]:
        """The job's items in index order, page by page. While the job's ``expanded`` is False
        this ends at the items registered so far; more may appear later."""
        url: str | None = f"/v1/jobs/{path_segment(job_id)}/items?" + urlencode({"limit": page_size})
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
        started = time.monotonic()
        while True:
            job = self.job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job.is_terminal:
                return job
            if timeout_s is not None:
                remaining = started + timeout_s - time.monotonic()
                if remaining <= 0:
                    raise WaitTimeout(job_id, timeout_s)
                time.sleep(min(poll_s, remaining))
            else:
                time.sleep(poll_s)

    def cancel(self, job_id: str) -> Job:
        """Drop the job's pending work; finished results stay. ClientError ``conflict`` if it had ended."""
        return self._job(self._http.json("POST", f"/v1/jobs/{path_segment(job_id)}/cancel", idempotent=False))

    def delete(self, job_id: str) -> None:
        """Delete the job: canceled if it runs, its source and results deleted; afterwards the API
        answers 404 for it. ClientError ``not_found`` for a job that does not exist (any more)."""
        # Not retried once sent: a repeat after a lost answer would report the deleted job as unknown.
        self._http.request("DELETE", f"/v1/jobs/{path_segment(job_id)}", idempotent=False)

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
            stream_to(
                self._http, f"/v1/jobs/{path_segment(job_id)}/results.zip", target, authorize=True, on_bytes=on_bytes
            )
            return [target]
        done = [item for item in self.items(job_id) if item.result_url]
        targets = [local_path(dest, item.output_path) for item in done]

        def fetch(pair: tuple[Item, Path]) -> Path:
            item, target = pair
            download_item(self._http, item, target)
            if on_item is not None:
                on_item(item, target)
            return target

        with ThreadPoolExecutor(self.download_concurrency) as pool:
            return list(pool.map(fetch, zip(done, targets)))

    def _job(self, data: dict[str, Any]) -> Job:
        return Job.from_json(data, self.base_url)


def _form_field(name: str, value: Any) -> str:
    """An option as a form field: hints as JSON text, other lists comma-separated."""
    if name == "hints":
        return json.dumps(value)
    return ",".join(value) if isinstance(value, list) else str(value)


def _iso(moment: datetime | str | None) -> str | None:
    return moment.isoformat() if isinstance(moment, datetime) else moment


def _packed_name(paths: Sequence[Path]) -> str:
    if len(paths) == 1:
        return (paths[0].resolve().name or "upload") + ".zip"
    return "upload.zip"


def _json_or_empty(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
