"""Every Redis key the service uses, named in one place.

Stores build their keys here and nowhere else; Lua scripts receive them by name
(:class:`KeyedScript`). ``{...}`` in a key is a Redis Cluster hash tag: one job's keys share a
slot, and so do one tenant's quota keys, so one script may touch them together::

    colorize:job:{id}                        HASH    the job: id tenant status model temperature
                                                     source_filename source_kind source_key total done
                                                     failed expanded created_at started_at finished_at
                                                     expires_at error_code error_message callback_url
                                                     webhook_events output_format output_quality
                                                     output_max_side (shared.imaging.output_options)
                                                     hints unmatched_hints unmatched_hint_count
    colorize:job:{id}:items                  HASH    index -> JSON {"path", "output_path", "size", "hints"?}
    colorize:job:{id}:status                 HASH    index -> "done" | "failed"   (absent: pending)
    colorize:job:{id}:errors                 HASH    index -> JSON {"code", "message"}
    colorize:job:{id}:attempts               HASH    index -> processing attempts started
    colorize:job:{id}:inputs                 HASH    index -> where the unfinished item's bytes are
                                                     (shared.storage.item_inputs)
    colorize:job:{id}:input-objects          HASH    input object name -> unfinished items it holds
    colorize:job:{id}:expander               STRING  the expansion lease (a redis-py Lock token)
    colorize:job:{id}:hint-map               STRING  JSON {path: [hint, ...]}: a request's hints for an
                                                     archive or a source, until it is expanded
    colorize:job:{id}:webhooks               LIST    JSON webhook delivery attempts, oldest first
    colorize:job:{id}:webhook-progress       HASH    step at seq   (the progress event throttle);
                                                     events (the last event's number), settled:<n>
    colorize:{bulk}:tenants                  LIST    tenants with bulk chunks waiting, in turn order
    colorize:{bulk}:tenant:<tenant>          LIST    the tenant's jobs with bulk chunks waiting, in turn order
    colorize:{bulk}:job:<id>                 LIST    the job's waiting chunks, JSON {"items", "at"}
    colorize:{bulk}:turn:<task id>           STRING  "<job id> <chunk JSON>": the chunk a turn task took
    colorize:upload:{id}                     HASH    id tenant filename size key multipart_id state
                                                     job_id created_at expires_at
    colorize:purge                           ZSET    purge member (below) -> unix time after which its
                                                     stored objects are deleted
    colorize:active                          ZSET    unfinished job id -> unix time it counts as
                                                     stalled unless it moves before
    colorize:workers                         ZSET    worker name -> unix time of its last heartbeat
    colorize:tenant:<tenant>:webhook-secret  STRING  whsec_<base64>, made on first use
    colorize:tenant:<tenant>:jobs            ZSET    job id -> unix time it was created (the listing;
                                                     a member goes when its job is purged or deleted)
    colorize:tenant:<tenant>:connections     HASH    connection name -> JSON {"endpoint_url", "region",
                                                     "bucket", "created_at", "credentials" (Fernet token)}
    colorize:job:{id}:destination            STRING  JSON {"connection", "prefix", "keep_in_service"}: where
                                                     the job's results go besides (or instead of) the store
    colorize:quota:{tenant}:rate             HASH    tokens ts   (the request token bucket)
    colorize:quota:{tenant}:inflight         ZSET    job id -> unix time its place was reserved
    colorize:quota:{tenant}:images:<day>     STRING  images taken that UTC day (YYYYMMDD)
    colorize:quota:{tenant}:stored           STRING  bytes the tenant keeps in storage, uploads in progress included
    colorize:quota:{tenant}:stored-by        HASH    owner (job:<id> | upload:<id>) -> bytes counted for it
    colorize:auth-failures:<address>         HASH    tokens ts   (wrong API keys from one client address)
    colorize:apikey:<key id>                 HASH    id tenant name hash created_at revoked revoked_at
    colorize:apikeys                         ZSET    key id -> created_at
    colorize:idempotency:{tenant}:<sha256>   STRING  JSON {"fingerprint", "owner", "job_id"}

The bulk lane's keys share the hash tag ``{bulk}``: its claim script reaches the lists of the
tenants and jobs it meets, in the slot of the keys it is given, by the key prefixes named here.

Purge members name what owns stored objects: ``job:<tenant>:<id>`` and
``upload:<tenant>:<id>:<multipart id or empty>``.

``Settings.redis_key_prefix`` (empty unless set) goes in front of all of these, and of the
broker's keys, which are kombu's own: the queues ``colorize`` and ``webhooks``, ``unacked*``
and ``_kombu.binding.*``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis

NAMESPACE = "colorize"

# The job purge member as the job scripts build it, from locals ``tenant`` and ``job_id``.
LUA_JOB_PURGE_MEMBER = "'job:' .. tenant .. ':' .. job_id"


def job_purge_member(tenant: str, job_id: str) -> str:
    return f"job:{tenant}:{job_id}"


def upload_purge_member(tenant: str, upload_id: str, multipart_id: str | None) -> str:
    return f"upload:{tenant}:{upload_id}:{multipart_id or ''}"


@dataclass(frozen=True)
class JobKeys:
    """The keys of one job."""

    record: str
    items: str
    statuses: str
    errors: str
    attempts: str
    inputs: str
    input_objects: str
    expander: str
    deliveries: str
    webhook_progress: str
    hint_map: str

    @property
    def state(self) -> tuple[str, ...]:
        """The keys the job scripts change, which expire with the job."""
        return self.record, self.items, self.statuses, self.errors, self.attempts, self.inputs, self.input_objects

    @property
    def every(self) -> tuple[str, ...]:
        """Every key of the job: what deleting it removes."""
        return (*self.state, self.expander, self.deliveries, self.webhook_progress, self.hint_map)


@dataclass(frozen=True)
class RedisKeys:
    """Key names under one namespace (``Settings.redis_namespace``; tests use their own to stay apart)."""

    namespace: str = NAMESPACE

    def job(self, job_id: str) -> JobKeys:
        record = f"{self.namespace}:job:{{{job_id}}}"
        return JobKeys(
            record=record,
            items=f"{record}:items",
            statuses=f"{record}:status",
            errors=f"{record}:errors",
            attempts=f"{record}:attempts",
            inputs=f"{record}:inputs",
            input_objects=f"{record}:input-objects",
            expander=f"{record}:expander",
            deliveries=f"{record}:webhooks",
            webhook_progress=f"{record}:webhook-progress",
            hint_map=f"{record}:hint-map",
        )

    def upload(self, upload_id: str) -> str:
        return f"{self.namespace}:upload:{{{upload_id}}}"

    @property
    def purge(self) -> str:
        return f"{self.namespace}:purge"

    @property
    def active(self) -> str:
        return f"{self.namespace}:active"

    # The bulk lane (shared.jobs.bulk_lane). Its claim script meets tenants and jobs as it goes
    # round: it builds their keys from the prefixes, which a tenant's name or a job's id ends.

    @property
    def bulk_tenants(self) -> str:
        return f"{self.namespace}:{{bulk}}:tenants"

    @property
    def bulk_tenant_jobs_prefix(self) -> str:
        return f"{self.namespace}:{{bulk}}:tenant:"

    def bulk_tenant_jobs(self, tenant: str) -> str:
        return self.bulk_tenant_jobs_prefix + tenant

    @property
    def bulk_job_chunks_prefix(self) -> str:
        return f"{self.namespace}:{{bulk}}:job:"

    def bulk_job_chunks(self, job_id: str) -> str:
        return self.bulk_job_chunks_prefix + job_id

    def bulk_turn(self, turn_id: str) -> str:
        return f"{self.namespace}:{{bulk}}:turn:{turn_id}"

    @property
    def workers(self) -> str:
        return f"{self.namespace}:workers"

    def tenant_jobs(self, tenant: str) -> str:
        """The tenant's jobs by creation time (:class:`shared.jobs.listing.JobListing`)."""
        return f"{self.namespace}:tenant:{tenant}:jobs"

    def webhook_secret(self, tenant: str) -> str:
        return f"{self.namespace}:tenant:{tenant}:webhook-secret"

    def connections(self, tenant: str) -> str:
        return f"{self.namespace}:tenant:{tenant}:connections"

    def job_destination(self, job_id: str) -> str:
        return f"{self.namespace}:job:{{{job_id}}}:destination"

    def quota(self, tenant: str, name: str) -> str:
        """``name``: ``rate``, ``inflight``, ``images:<YYYYMMDD>``, ``stored`` or ``stored-by``."""
        return f"{self.namespace}:quota:{{{tenant}}}:{name}"

    def auth_failures(self, address: str) -> str:
        return f"{self.namespace}:auth-failures:{address}"

    def api_key(self, key_id: str) -> str:
        return f"{self.namespace}:apikey:{key_id}"

    @property
    def api_key_index(self) -> str:
        return f"{self.namespace}:apikeys"

    def idempotency(self, tenant: str, key_digest: str) -> str:
        return f"{self.namespace}:idempotency:{{{tenant}}}:{key_digest}"


class KeyedScript:
    """A Lua script whose keys have names: each becomes a local variable bound to its
    ``KEYS`` slot, and callers pass the keys as a mapping, so neither side counts positions."""

    def __init__(self, redis: Redis, key_names: Sequence[str], body: str) -> None:
        self.key_names = tuple(key_names)
        prelude = "".join(f"local {name} = KEYS[{slot}]\n" for slot, name in enumerate(self.key_names, 1))
        self._script = redis.register_script(prelude + body)

    def __call__(self, keys: Mapping[str, str], args: Sequence[Any] = ()) -> Any:
        return self._script(keys=[keys[name] for name in self.key_names], args=list(args))
