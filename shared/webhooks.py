"""Webhooks: callback URLs checked against server-side request forgery, job events, signed deliveries.

A job may carry a callback URL and the events it wants (``started``, ``progress``,
``completed``). :class:`WebhookNotifier` listens to the job store and turns the job's start,
its throttled progress and its one finish into messages, each published once for delivery by
the ``webhooks`` queue (``worker/webhooks.py``); :func:`deliver` makes one attempt.

Deliveries follow the Standard Webhooks scheme (https://www.standardwebhooks.com): headers
``webhook-id`` (the same on every attempt, for the receiver to drop repeats),
``webhook-timestamp`` (unix seconds of the attempt) and ``webhook-signature``
(``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``), with the tenant's secret
``whsec_<base64>``. The body is JSON::

    {"type": "job.started" | "job.progress" | "job.completed",
     "timestamp": "<ISO 8601 time of the event>",
     "data": <the job, as GET /v1/jobs/{id} shows it>}

Callback hosts are resolved and every address checked twice: when the job is created and
again at each attempt, which then connects to the very address it checked (a DNS answer that
changes in between cannot point a delivery inside the network). Redirects are not followed.

Redis layout::

    colorize:tenant:{tenant}:webhook-secret   STRING  whsec_<base64>, made on first use
    colorize:job:{id}:webhooks                LIST    JSON attempt records, oldest first
    colorize:job:{id}:webhook-progress        HASH    step at seq   (the progress throttle)
"""

from __future__ import annotations

import base64
import ipaddress
import json
import secrets
import socket
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

import urllib3
from redis import Redis
from standardwebhooks.webhooks import Webhook

from shared.documents import COMPLETED, EVENT_TYPES, EVENTS, PROGRESS, STARTED, JobDocument, WebhookEvent
from shared.errors import InvalidRequest
from shared.jobs import KEY_PREFIX, TERMINAL_STATUSES, Job, JobListener, JobStore, iso_time
from shared.settings import Settings

MAX_URL_LENGTH = 2048
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
# Attempt records kept per job; the newest win.
MAX_RECORDS = 1000
# Receivers answer with a status; anything longer than this is not read.
MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "colorize-webhooks/1"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[IPAddress]]

# IPv6 prefixes that carry an IPv4 address in their last 32 bits (RFC 6052 NAT64).
_NAT64_PREFIXES = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class ForbiddenAddress(InvalidRequest):
    """A callback URL leads to an address the service may not call."""


# --- addresses ----------------------------------------------------------------------------


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address reaches through: mapped, 6to4, Teredo, NAT64."""
    found = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if any(address in prefix for prefix in _NAT64_PREFIXES):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def is_public_address(address: IPAddress) -> bool:
    """False for loopback, private, link-local, multicast, reserved, unspecified and other
    non-global addresses, also when wrapped in an IPv6 form (mapped, 6to4, Teredo, NAT64)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            # Judged as the IPv4 address it is; Python files the mapped range itself as private.
            return is_public_address(address.ipv4_mapped)
        if not all(is_public_address(inner) for inner in embedded_ipv4(address)):
            return False
    return address.is_global and not (
        address.is_loopback or address.is_link_local or address.is_private or address.is_multicast
        or address.is_reserved or address.is_unspecified
    )


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses deliveries may reach: public ones, plus what settings allow."""

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> "AddressPolicy":
        networks = tuple(
            ipaddress.ip_network(n.strip(), strict=False)
            for n in settings.webhook_allowed_networks.split(",") if n.strip()
        )
        return cls(allow_private=settings.webhook_allow_private, allowed_networks=networks)

    def permits(self, address: IPAddress) -> bool:
        if self.allow_private or is_public_address(address):
            return True
        candidates = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(a in network for a in candidates for network in self.allowed_networks
                   if a.version == network.version)


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in the resolver's order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidRequest(f"the callback host {host!r} does not resolve", field="callback_url") from exc
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])  # drop an IPv6 zone id
        if address not in addresses:
            addresses.append(address)
    return addresses


@dataclass(frozen=True)
class CallbackTarget:
    """A callback URL, split as a delivery needs it."""

    url: str
    scheme: str
    host: str
    port: int
    path: str  # with the query string

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def parse_callback_url(url: Any) -> CallbackTarget:
    """The URL's parts; InvalidRequest unless an absolute http(s) URL without credentials."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequest("'callback_url' must be a non-empty string", field="callback_url")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequest(f"'callback_url' is longer than {MAX_URL_LENGTH} characters", field="callback_url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidRequest("'callback_url' is not a valid URL", field="callback_url") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidRequest("'callback_url' must be an http or https URL", field="callback_url")
    if not parts.hostname:
        raise InvalidRequest("'callback_url' needs a host", field="callback_url")
    if parts.username is not None or parts.password is not None:
        raise InvalidRequest("'callback_url' must not carry credentials; deliveries are signed instead",
                             field="callback_url")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if parts.scheme == "https" else 80
    return CallbackTarget(url=url, scheme=parts.scheme, host=parts.hostname, port=port or default_port, path=path)


def permitted_addresses(target: CallbackTarget, policy: AddressPolicy, resolver: Resolver = resolve) -> list[IPAddress]:
    """The target's addresses; ForbiddenAddress when any one of them is not permitted."""
    addresses = resolver(target.host, target.port)
    if not addresses:
        raise InvalidRequest(f"the callback host {target.host!r} does not resolve", field="callback_url")
    for address in addresses:
        if not policy.permits(address):
            raise ForbiddenAddress(
                "'callback_url' leads to a loopback, private or otherwise non-public address",
                field="callback_url", address=str(address),
            )
    return addresses


def parse_events(raw: Any) -> tuple[str, ...]:
    """The event filter: a list or a comma-separated string of EVENTS; all of them when absent."""
    if raw is None or raw == "":
        return EVENTS
    names = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidRequest("'events' must be a list of event names", field="events", allowed=list(EVENTS))
    chosen = {n.strip() for n in names if n.strip()}
    if not chosen:
        raise InvalidRequest("'events' must name at least one event", field="events", allowed=list(EVENTS))
    unknown = sorted(chosen - set(EVENTS))
    if unknown:
        raise InvalidRequest(f"unknown webhook events: {', '.join(unknown)}", field="events", allowed=list(EVENTS))
    return tuple(e for e in EVENTS if e in chosen)


@dataclass(frozen=True)
class WebhookRequest:
    url: str
    events: tuple[str, ...]


def parse_webhook(source: Mapping[str, Any], settings: Settings, resolver: Resolver = resolve) -> WebhookRequest | None:
    """A job request's ``callback_url`` and ``events``, checked; None when it has no callback."""
    url = source.get("callback_url")
    if url is None or url == "":
        if source.get("events"):
            raise InvalidRequest("'events' needs a 'callback_url'", field="events")
        return None
    target = parse_callback_url(url)
    permitted_addresses(target, AddressPolicy.from_settings(settings), resolver)
    return WebhookRequest(url=target.url, events=parse_events(source.get("events")))


# --- secrets and signatures ---------------------------------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


class WebhookSecrets:
    """One signing secret per tenant, made on first use and kept until rotated."""

    def __init__(self, redis: Redis, namespace: str = KEY_PREFIX) -> None:
        self.redis = redis
        self._ns = namespace

    def key(self, tenant: str) -> str:
        return f"{self._ns}:tenant:{tenant}:webhook-secret"

    def get_or_create(self, tenant: str) -> str:
        key = self.key(tenant)
        self.redis.set(key, new_secret(), nx=True)  # concurrent first uses agree on one secret
        return self.redis.get(key).decode()

    def rotate(self, tenant: str) -> str:
        secret = new_secret()
        self.redis.set(self.key(tenant), secret)
        return secret


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` value: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``."""
    return Webhook(secret).sign(message_id, datetime.fromtimestamp(timestamp, timezone.utc), body)


def signed_headers(secret: str, message_id: str, timestamp: int, body: str) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


# --- messages -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookMessage:
    """One event for one job, as published for delivery: the body is fixed, every attempt sends it as is."""

    id: str
    job_id: str
    tenant: str
    event: str
    url: str
    body: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, str]) -> "WebhookMessage":
        return cls(**{k: raw[k] for k in ("id", "job_id", "tenant", "event", "url", "body")})


def message_for(job: Job, event: str, at: float, public_url: str | None, sequence: int | None = None) -> WebhookMessage:
    # Ids follow from the job and event, so a message published twice is one message to the receiver.
    suffix = f"_{sequence}" if sequence is not None else ""
    body = WebhookEvent(type=EVENT_TYPES[event], timestamp=iso_time(at), data=JobDocument.of(job, public_url))
    return WebhookMessage(
        id=f"msg_{job.id}_{event}{suffix}", job_id=job.id, tenant=job.tenant, event=event,
        url=job.callback_url or "", body=json.dumps(body.model_dump(mode="json"), separators=(",", ":")),
    )


# KEYS: throttle hash   ARGV: now interval_s step expires_at   -> sequence number, or 0 when held back
_LUA_PROGRESS_GATE = """
local last_step = tonumber(redis.call('HGET', KEYS[1], 'step') or '0')
local last_at = tonumber(redis.call('HGET', KEYS[1], 'at') or '-1e18')
local step = tonumber(ARGV[3])
if step <= last_step then return 0 end
if tonumber(ARGV[1]) - last_at < tonumber(ARGV[2]) then return 0 end
local sequence = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('HSET', KEYS[1], 'step', step, 'at', ARGV[1])
redis.call('EXPIREAT', KEYS[1], math.ceil(tonumber(ARGV[4])))
return sequence
"""


@dataclass(frozen=True)
class _Subscription:
    url: str
    events: frozenset[str]


class WebhookNotifier(JobListener):
    """Publishes the webhook messages of jobs with a callback URL; a job store listener."""

    # Subscriptions remembered per process (they never change), so that items of jobs without
    # a callback cost no Redis round trip after the first.
    CACHE_SIZE = 4096

    def __init__(self, redis: Redis, settings: Settings, publish: Callable[[dict[str, str]], None],
                 clock: Callable[[], float] = time.time, namespace: str = KEY_PREFIX) -> None:
        self.redis = redis
        self.settings = settings
        self._publish = publish
        self._clock = clock
        self._ns = namespace
        self._jobs = JobStore(redis, settings, clock=clock, namespace=namespace)
        self._log = DeliveryLog(redis, namespace)
        self._gate = redis.register_script(_LUA_PROGRESS_GATE)
        self._subscriptions: dict[str, _Subscription | None] = {}

    def progress_key(self, job_id: str) -> str:
        return f"{self._jobs.job_key(job_id)}:webhook-progress"

    def job_started(self, job_id: str) -> None:
        if self._wants(job_id, STARTED):
            self._emit(job_id, STARTED)

    def item_finished(self, job_id: str, index: int, outcome: str, error_code: str | None) -> None:
        if not self._wants(job_id, PROGRESS):
            return
        status, expanded, total, done, failed, expires_at = self.redis.hmget(
            self._jobs.job_key(job_id), ["status", "expanded", "total", "done", "failed", "expires_at"])
        if status is None or status.decode() in TERMINAL_STATUSES:
            return  # the completed event says the rest
        total, processed = int(total or 0), int(done or 0) + int(failed or 0)
        if expanded == b"1" and processed >= total:
            return
        step_pct = self.settings.webhook_progress_step_pct
        step = processed if step_pct == 0 else (processed * 100 // total // step_pct if total else 0)
        sequence = self._gate(keys=[self.progress_key(job_id)],
                              args=[repr(self._clock()), self.settings.webhook_progress_interval_s, step,
                                    float(expires_at)])
        if sequence:
            self._emit(job_id, PROGRESS, int(sequence))

    def job_finished(self, job_id: str) -> None:
        if self._subscription(job_id) is None:
            return
        job = self._jobs.get(job_id)
        # The job's expiry was renewed as it finished; its webhook records follow it.
        self._log.keep_until(job_id, job.expires_at)
        if COMPLETED in job.webhook_events:
            self._publish(message_for(job, COMPLETED, self._clock(), self.settings.public_url).to_dict())

    def _emit(self, job_id: str, event: str, sequence: int | None = None) -> None:
        job = self._jobs.get(job_id)
        self._publish(message_for(job, event, self._clock(), self.settings.public_url, sequence).to_dict())

    def _wants(self, job_id: str, event: str) -> bool:
        subscription = self._subscription(job_id)
        return subscription is not None and event in subscription.events

    def _subscription(self, job_id: str) -> _Subscription | None:
        if job_id not in self._subscriptions:
            url, events = self.redis.hmget(self._jobs.job_key(job_id), ["callback_url", "webhook_events"])
            if len(self._subscriptions) >= self.CACHE_SIZE:
                self._subscriptions.clear()
            self._subscriptions[job_id] = (
                _Subscription(url.decode(), frozenset(events.decode().split(","))) if url else None
            )
        return self._subscriptions[job_id]


# --- delivery -----------------------------------------------------------------------------

DELIVERED, FAILED, REFUSED = "delivered", "failed", "refused"


@dataclass(frozen=True)
class DeliveryAttempt:
    """One attempt at delivering a message, as ``GET /v1/jobs/{id}/webhooks`` lists it."""

    message_id: str
    event: str
    attempt: int
    outcome: str  # delivered | failed | refused
    status_code: int | None
    error: str | None
    started_at: str
    duration_ms: int
    next_attempt_at: str | None = None

    @property
    def retryable(self) -> bool:
        return self.outcome == FAILED


def retry_delay_s(attempt: int, settings: Settings) -> float:
    """Seconds before the attempt after ``attempt`` (1-based): doubling from the base, capped."""
    # The broker hands a message unacknowledged for visibility_timeout_s to another worker; a
    # retry waiting longer than that in a worker's memory would be delivered twice.
    cap = min(settings.webhook_retry_max_s, settings.visibility_timeout_s / 2)
    return min(settings.webhook_retry_base_s * 2 ** (attempt - 1), cap)


def deliver(message: WebhookMessage, secret: str, attempt: int, settings: Settings,
            resolver: Resolver = resolve, clock: Callable[[], float] = time.time) -> DeliveryAttempt:
    """One attempt: resolve and check the callback host, then POST the signed message to the checked address."""
    started = clock()
    started_monotonic = time.monotonic()

    def result(outcome: str, status_code: int | None = None, error: str | None = None) -> DeliveryAttempt:
        return DeliveryAttempt(
            message_id=message.id, event=message.event, attempt=attempt, outcome=outcome, status_code=status_code,
            error=error, started_at=iso_time(started),
            duration_ms=round((time.monotonic() - started_monotonic) * 1000),
        )

    try:
        target = parse_callback_url(message.url)
        address = permitted_addresses(target, AddressPolicy.from_settings(settings), resolver)[0]
    except ForbiddenAddress as exc:
        return result(REFUSED, error=f"{exc.message} ({exc.details.get('address')})")
    except InvalidRequest as exc:
        return result(FAILED, error=exc.message)  # a host that stopped resolving may come back
    headers = {
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **signed_headers(secret, message.id, int(clock()), message.body),
    }
    try:
        status = _post(target, address, headers, message.body.encode(), settings.webhook_timeout_s)
    except urllib3.exceptions.HTTPError as exc:
        return result(FAILED, error=_describe(exc))
    except OSError as exc:
        return result(FAILED, error=f"{type(exc).__name__}: {exc}")
    if 200 <= status < 300:
        return result(DELIVERED, status_code=status)
    return result(FAILED, status_code=status, error=f"the receiver answered {status}")


def _post(target: CallbackTarget, address: IPAddress, headers: dict[str, str], body: bytes, timeout_s: float) -> int:
    timeout = urllib3.Timeout(connect=timeout_s, read=timeout_s, total=timeout_s)
    options: dict[str, Any] = dict(timeout=timeout, retries=False, maxsize=1)
    if target.scheme == "https":
        # Connected to the checked address; TLS still names and verifies the callback host.
        pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
            str(address), target.port, server_hostname=target.host, assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED", **options)
    else:
        pool = urllib3.HTTPConnectionPool(str(address), target.port, **options)
    try:
        response = pool.urlopen("POST", target.path, body=body, headers=headers, redirect=False,
                                assert_same_host=False, preload_content=False)
        try:
            response.read(MAX_RESPONSE_BYTES)
        finally:
            response.release_conn()
        return response.status
    finally:
        pool.close()


def _describe(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return f"{type(exc).__name__}: {reason or exc}"


class DeliveryLog:
    """Every delivery attempt of a job's messages, kept as long as the job."""

    def __init__(self, redis: Redis, namespace: str = KEY_PREFIX) -> None:
        self.redis = redis
        self._ns = namespace

    def key(self, job_id: str) -> str:
        return f"{self._ns}:job:{{{job_id}}}:webhooks"

    def record(self, job_id: str, attempt: DeliveryAttempt) -> None:
        key = self.key(job_id)
        expires_at = self.redis.hget(f"{self._ns}:job:{{{job_id}}}", "expires_at")
        pipe = self.redis.pipeline(transaction=True)
        pipe.rpush(key, json.dumps(asdict(attempt), separators=(",", ":")))
        pipe.ltrim(key, -MAX_RECORDS, -1)
        if expires_at is not None:
            pipe.expireat(key, int(float(expires_at)) + 1)
        else:
            pipe.expire(key, 3600)  # the job is gone; keep the record briefly only
        pipe.execute()

    def keep_until(self, job_id: str, expires_at: float) -> None:
        self.redis.expireat(self.key(job_id), int(expires_at) + 1)

    def attempts(self, job_id: str) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.redis.lrange(self.key(job_id), 0, -1)]

