"""Reading items by reference: objects of a tenant's connected bucket, and URLs, each read when
its item is processed (:mod:`shared.storage.sources`). Every failure is the item's own error.

A URL's host is resolved and checked at each read, and the request goes to the very address
checked (:func:`shared.network.addresses.pinned_pool`); so do a connection's S3 requests,
whose client is reused only while its endpoint's host resolves as when it was checked. Redirects
are not followed (an item that answers one fails with ``source_unreachable``). Bodies are read
to at most ``limits.max_entry_bytes``, each read within the whole-transfer deadline and minimum
rate of ``limits`` (:mod:`shared.storage.transfer_deadlines`: ``source_too_slow``), by the
process's I/O threads, a few at a time per tenant: a tenant's reads beyond its share wait in its
queue, holding no thread, and one still waiting may be canceled. A number a source answers (its
Content-Length) is taken only as a few ASCII digits; anything else fails that item alone, as does
any other failure of one read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import urllib3

from shared.errors import (
    ColorizeError,
    EntryTooLarge,
    InvalidRequest,
    ItemError,
    NotFound,
    SourceForbidden,
    SourceNotFound,
    SourceUnreachable,
)
from shared.network.addresses import (
    AddressPolicy,
    ForbiddenAddress,
    Resolver,
    permitted_addresses,
    pinned_pool,
    resolve,
)
from shared.settings import Settings
from shared.storage.customer_buckets import ConnectedBucket
from shared.storage.pinned_connections import watched_pool
from shared.storage.sources import parse_reference
from shared.storage.transfer_deadlines import TransferDeadline, read_body
from shared.tenancy.stored_connections import ConnectionStore
from shared.webhooks.callback_urls import parse_callback_url
from worker.retry_policy import TRANSIENT_ERRORS

log = logging.getLogger(__name__)

USER_AGENT = "colorize-sources/1"
FETCH_TIMEOUT_S = 30.0
# Reads of sources under way in one process (each waits on the network, not on a core), and
# of one tenant's: a tenant's slow sources cannot take every thread.
IO_THREADS = 16
TENANT_READS = 4
# A connection's client is reused this long: a changed or deleted connection counts soon after.
BUCKET_REUSE_S = 60.0
# The most digits of a Content-Length taken: 19 hold any size a store serves, and int() of a
# longer string (4,300 digits or more raise) is not asked for.
MAX_LENGTH_DIGITS = 19


@dataclass
class _TenantReads:
    """One tenant's reads: how many are under way, and those waiting for one of them to end."""

    running: int = 0
    waiting: deque[tuple[str, Future[bytes]]] = field(default_factory=deque)


class ReferenceReader:
    """One worker process's reads by reference, with its connections' clients kept a while."""

    def __init__(self, connections: ConnectionStore, settings: Settings, resolver: Resolver = resolve) -> None:
        self.connections = connections
        self.settings = settings
        self._resolver = resolver
        self._buckets: dict[tuple[str, str], tuple[float, ConnectedBucket]] = {}
        self._io = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="source-reads")
        self._tenants: dict[str, _TenantReads] = {}
        self._lock = threading.Lock()

    def bucket(self, tenant: str, name: str) -> ConnectedBucket:
        """The tenant's connection ``name``; SourceNotFound when it has none of that name."""
        now = time.monotonic()
        cached = self._buckets.get((tenant, name))
        # Reused only while its endpoint's name still resolves to the addresses it was checked
        # at: an answer that changes is checked again (DNS rebinding).
        if cached is not None and now - cached[0] < BUCKET_REUSE_S and cached[1].resolves_as_checked(self._resolver):
            return cached[1]
        try:
            connection = self.connections.get(tenant, name)
        except NotFound as exc:
            raise SourceNotFound(f"no connection named {name!r}", connection=name) from exc
        except ColorizeError as exc:  # stored under another key, or connections are off
            raise SourceUnreachable(exc.message, connection=name) from exc
        bucket = ConnectedBucket(connection, self.settings, self._resolver)
        self._buckets[(tenant, name)] = (now, bucket)
        return bucket

    def read_many(self, tenant: str, references: Mapping[int, str]) -> dict[int, bytes | ItemError]:
        """Each item's bytes, or its error, read by the process's I/O threads (at most
        TENANT_READS of them at a time for one tenant)."""
        futures = {index: self.submit(tenant, reference) for index, reference in references.items()}
        results: dict[int, bytes | ItemError] = {}
        for index, future in futures.items():
            try:
                results[index] = read_result(future, references[index])
            except ItemError as exc:
                results[index] = exc
        return results

    def submit(self, tenant: str, reference: str) -> Future[bytes]:
        """Start reading ``reference`` on the process's I/O threads: at once while the tenant has
        fewer than TENANT_READS reads under way, else once one of them ends. Canceling the future
        drops a read still waiting; one under way runs to its end (its deadline bounds it)."""
        future: Future[bytes] = Future()
        with self._lock:
            self._tenants.setdefault(tenant, _TenantReads()).waiting.append((reference, future))
        self._start_waiting(tenant)
        return future

    def _start_waiting(self, tenant: str) -> None:
        starting: list[tuple[str, Future[bytes]]] = []
        with self._lock:
            reads = self._tenants[tenant]
            while reads.running < TENANT_READS and reads.waiting:
                reference, future = reads.waiting.popleft()
                if future.set_running_or_notify_cancel():  # False: canceled while it waited
                    reads.running += 1
                    starting.append((reference, future))
        for reference, future in starting:
            self._io.submit(self._read_into, tenant, reference, future)

    def _read_into(self, tenant: str, reference: str, future: Future[bytes]) -> None:
        try:
            data = self.read(tenant, reference)
        except BaseException as exc:  # noqa: BLE001  # the future's reader gets it, whatever it is
            self._ended(tenant)
            future.set_exception(exc)
        else:
            self._ended(tenant)
            future.set_result(data)

    def _ended(self, tenant: str) -> None:
        """A read of the tenant has ended: the next one waiting takes its place."""
        with self._lock:
            self._tenants[tenant].running -= 1
        self._start_waiting(tenant)

    def read(self, tenant: str, reference: str) -> bytes:
        connection, where = parse_reference(reference)
        limit = self.settings.limits.max_entry_bytes
        if connection is not None:
            return self.bucket(tenant, connection).get(where, limit)
        return self.fetch_url(where)

    def fetch_url(self, url: str) -> bytes:
        limit = self.settings.limits.max_entry_bytes
        try:
            target = parse_callback_url(url, field="source.urls")
            policy = AddressPolicy.from_settings(self.settings)
            address = permitted_addresses(target, policy, self._resolver, field="source.urls")[0]
        except ForbiddenAddress as exc:
            raise SourceForbidden(f"{url}: {exc.message}", address=exc.details.get("address")) from exc
        except InvalidRequest as exc:
            raise SourceUnreachable(f"{url}: {exc.message}") from exc
        limits = self.settings.limits
        # Each wait on the network is bounded as well: a source that sends nothing is dropped at
        # once, not at the next tick of the deadline's watch.
        pool = watched_pool(pinned_pool(target, address, min(FETCH_TIMEOUT_S, limits.source_deadline_s)))
        with TransferDeadline(url, limits.source_deadline_s, limits.source_min_bytes_per_s) as clock:
            try:
                headers = {"Host": target.host_header, "User-Agent": USER_AGENT}
                response = pool.urlopen(
                    "GET", target.path, headers=headers, redirect=False, assert_same_host=False, preload_content=False
                )
                try:
                    _check_status(url, response.status)
                    declared = declared_length(url, response.headers.get("Content-Length"))
                    if declared is not None and declared > limit:
                        raise EntryTooLarge(f"{url}: larger than {limit} bytes", limit=limit)
                    return read_body(response.read, limit, clock)
                finally:
                    response.release_conn()
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                clock.check()  # a connection cut at the deadline is the source's slowness
                raise SourceUnreachable(f"{url}: {type(exc).__name__}: {getattr(exc, 'reason', None) or exc}") from exc
            finally:
                pool.close()


def read_result(future: Future[bytes], reference: str) -> bytes:
    """The bytes a read (:meth:`ReferenceReader.submit`) gave, waiting for them; raises the item's
    ItemError, or the transient failure that stops the chunk. Any other failure of the read fails
    its item alone, as SourceUnreachable."""
    try:
        return future.result()
    except ItemError:
        raise
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:  # one odd answer fails its item, not the batch
        log.warning("reading %s failed", reference, exc_info=True)
        raise SourceUnreachable(f"the source could not be read ({type(exc).__name__})") from exc


def declared_length(url: str, value: str | None) -> int | None:
    """A Content-Length as a number; SourceUnreachable unless 1 to MAX_LENGTH_DIGITS ASCII digits."""
    if value is None:
        return None
    value = value.strip()
    if not (0 < len(value) <= MAX_LENGTH_DIGITS and value.isascii() and value.isdigit()):
        raise SourceUnreachable(f"{url}: answered a Content-Length that is not a byte count ({value[:20]!r})")
    return int(value)


def _check_status(url: str, status: int) -> None:
    if status == 200:
        return
    if status in (404, 410):
        raise SourceNotFound(f"{url}: not found ({status})", status=status)
    if status in (401, 403):
        raise SourceForbidden(f"{url}: access refused ({status})", status=status)
    if 300 <= status < 400:
        raise SourceUnreachable(f"{url}: answered a redirect ({status}), which is not followed", status=status)
    raise SourceUnreachable(f"{url}: answered {status}", status=status)
