"""API keys: each bound to one tenant, stored hashed in Redis, created and revoked from the command line
(``colorize keys create|list|revoke``, :mod:`cli.keys`); and the policy (from ``settings.auth``) that
says when the API asks for one.

A key reads ``ck_<key id>_<secret>``. The key id is public (listed, logged) and finds the
record in one lookup; the secret is 256 random bits, shown once when the key is created and
never stored.

Records live under ``colorize:apikey:<key id>``, indexed by ``colorize:apikeys`` (:mod:`shared.redis_keys`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from redis import Redis
from redis.typing import EncodableT, FieldT

from shared.errors import NotFound
from shared.network.addresses import parse_address
from shared.redis_keys import NAMESPACE, RedisKeys
from shared.settings import Settings
from shared.storage.object_keys import tenant_prefix

TOKEN_PREFIX = "ck"
_KEY_ID_BYTES = 8
_SECRET_BYTES = 32
_TOKEN = re.compile(rf"{TOKEN_PREFIX}_([0-9a-f]{{{2 * _KEY_ID_BYTES}}})_([A-Za-z0-9_-]{{43}})")


def hash_token(token: str) -> str:
    """The stored form of a key.

    SHA-256 and not a slow password hash: a key holds 256 random bits, so there is nothing to
    guess from its hash however fast the hash is, while a slow one would cost CPU on every
    request. The whole token is hashed, so a hash only ever matches under its own key id.
    """
    return hashlib.sha256(token.encode()).hexdigest()


def parse_token(token: str) -> str | None:
    """The key id of a well-formed key, else None."""
    match = _TOKEN.fullmatch(token.strip())
    return match.group(1) if match else None


def check_tenant(tenant: str) -> str:
    """``tenant`` when it can name a tenant (it is the storage namespace too); else InvalidRequest."""
    tenant_prefix(tenant)
    return tenant


@dataclass(frozen=True)
class ApiKey:
    id: str
    tenant: str
    name: str | None
    created_at: float
    revoked: bool
    revoked_at: float | None


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    token: str  # the only time the full key exists outside its holder's hands


class KeyStore:
    """The API keys of one Redis database."""

    def __init__(self, redis: Redis, clock: Callable[[], float] = time.time, namespace: str = NAMESPACE) -> None:
        self.redis = redis
        self._clock = clock
        self._keys = RedisKeys(namespace)
        self.index_key = self._keys.api_key_index

    def record_key(self, key_id: str) -> str:
        return self._keys.api_key(key_id)

    def create(self, tenant: str, name: str | None = None) -> NewKey:
        check_tenant(tenant)
        now = self._clock()
        while True:
            key_id = secrets.token_hex(_KEY_ID_BYTES)
            token = f"{TOKEN_PREFIX}_{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
            fields: dict[FieldT, EncodableT] = {
                "id": key_id,
                "tenant": tenant,
                "name": name or "",
                "hash": hash_token(token),
                "created_at": repr(now),
                "revoked": "0",
                "revoked_at": "",
            }
            # HSETNX on the id first: a colliding id (vanishingly rare) draws again instead of overwriting.
            if self.redis.hsetnx(self.record_key(key_id), "id", key_id):
                break
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.record_key(key_id), mapping=fields)
        pipe.zadd(self.index_key, {key_id: now})
        pipe.execute()
        return NewKey(key=self.get(key_id), token=token)

    def get(self, key_id: str) -> ApiKey:
        # The service's Redis clients answer bytes (they are made without decode_responses).
        raw = cast("dict[bytes, bytes]", self.redis.hgetall(self.record_key(key_id)))
        if not raw or b"hash" not in raw:
            raise NotFound(f"no API key with id {key_id!r}", key_id=key_id)
        return _key_from_hash(raw)

    def list(self, tenant: str | None = None) -> list[ApiKey]:
        """Every key (of ``tenant``), oldest first; revoked ones included."""
        ids = [key_id.decode() for key_id in cast("list[bytes]", self.redis.zrange(self.index_key, 0, -1))]
        pipe = self.redis.pipeline(transaction=False)
        for key_id in ids:
            pipe.hgetall(self.record_key(key_id))
        keys = [_key_from_hash(raw) for raw in pipe.execute() if raw and b"hash" in raw]
        return [key for key in keys if tenant is None or key.tenant == tenant]

    def revoke(self, key_id: str) -> ApiKey:
        """Refuse the key from now on (idempotent); the record stays for the listing."""
        key = self.get(key_id)
        if not key.revoked:
            self.redis.hset(self.record_key(key_id), mapping={"revoked": "1", "revoked_at": repr(self._clock())})
        return self.get(key_id)

    def authenticate(self, token: str) -> ApiKey | None:
        """The key ``token`` is, revoked or not; None when it is no key of this store."""
        key_id = parse_token(token)
        if key_id is None:
            return None
        raw = cast("dict[bytes, bytes]", self.redis.hgetall(self.record_key(key_id)))
        if not raw or b"hash" not in raw:
            return None
        # Constant time: how much of the hash matched must not show in the response time.
        if not hmac.compare_digest(raw[b"hash"].decode(), hash_token(token.strip())):
            return None
        return _key_from_hash(raw)


def _key_from_hash(raw: dict[bytes, bytes]) -> ApiKey:
    text = {k.decode(): v.decode() for k, v in raw.items()}
    return ApiKey(
        id=text["id"],
        tenant=text["tenant"],
        name=text.get("name") or None,
        created_at=float(text["created_at"]),
        revoked=text.get("revoked") == "1",
        revoked_at=float(text["revoked_at"]) if text.get("revoked_at") else None,
    )


# --- when a key is needed -------------------------------------------------------------------


LOCAL_TENANT = "local"
AUTH_KEYS, AUTH_OPEN = "keys", "open"


@dataclass(frozen=True)
class AuthPolicy:
    mode: str  # AUTH_KEYS | AUTH_OPEN
    open_to_any_peer: bool  # open mode serves clients beyond the loopback interface without a key
    summary: str  # one line saying who gets in, for the start-up log

    def open_for(self, peer: str | None, via_proxy: bool = False) -> bool:
        """Whether a request from the socket peer ``peer`` acts as tenant ``local`` without a key.
        One a proxy forwarded (``via_proxy``) came from somewhere else, whatever its peer."""
        if self.mode != AUTH_OPEN:
            return False
        return self.open_to_any_peer or (not via_proxy and peer is not None and is_loopback(peer))


def is_loopback(host: str) -> bool:
    """True for loopback addresses and ``localhost``; any other name counts as reachable from outside."""
    if host == "localhost":
        return True
    address = parse_address(host)
    return address is not None and address.is_loopback


def auth_policy(settings: Settings) -> AuthPolicy:
    """The policy ``settings`` ask for; ValueError for open mode on a public interface without the override."""
    host = settings.api_host
    loopback = is_loopback(host)
    mode = settings.auth or (AUTH_OPEN if loopback else AUTH_KEYS)
    if mode == AUTH_KEYS:
        why = "COLORIZE_AUTH=keys" if settings.auth else f"COLORIZE_AUTH is unset and {host} is not a loopback address"
        return AuthPolicy(AUTH_KEYS, False, f"authentication: API keys required ({why})")
    if not loopback and not settings.auth_allow_open_public:
        raise ValueError(
            f"refusing to serve without authentication (COLORIZE_AUTH=open) on {host}, which is not a "
            "loopback address: use COLORIZE_AUTH=keys, bind COLORIZE_API_HOST=127.0.0.1, or set "
            "COLORIZE_AUTH_ALLOW_OPEN_PUBLIC=true to accept anyone who can reach it"
        )
    if settings.auth_allow_open_public:
        return AuthPolicy(
            AUTH_OPEN,
            True,
            f"authentication OFF on {host} for every client: "
            f"anyone who reaches it acts as tenant '{LOCAL_TENANT}' (COLORIZE_AUTH_ALLOW_OPEN_PUBLIC)",
        )
    why = "COLORIZE_AUTH=open" if settings.auth else f"COLORIZE_AUTH is unset and {host} is a loopback address"
    return AuthPolicy(
        AUTH_OPEN,
        False,
        f"authentication OFF ({why}): loopback clients act as tenant "
        f"'{LOCAL_TENANT}' without a key, others need one; COLORIZE_AUTH=keys requires keys",
    )
