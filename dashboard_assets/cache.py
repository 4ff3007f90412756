"""The Redis contract: key building, TTLs, pipelined writes, and invalidation
per organization.

Every key of an organization is also recorded in that organization's index
(a sorted set scored by expiry time), so invalidating one organization costs
in proportion to its own keys and never scans the keyspace (no KEYS, no SCAN).
Anything but a canonical lower-case uuid or an ISO date is refused before it
reaches Redis.
"""

import datetime as dt
import json
import re
import time
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import redis
from redis.cluster import RedisCluster

_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,64}")

MINUTE, HOUR, DAY = 60, 3600, 86400
TTL_SECONDS = {
    "metrics": 5 * MINUTE,
    "summary": 5 * MINUTE,
    "revenue_trend_12m": DAY,
    "kwh_trend_12m": DAY,
    "yoy_comparison": DAY,
    "product_mix_30d": 15 * MINUTE,
    "conversion_funnel_90d": 15 * MINUTE,
    "target_progress": 30 * MINUTE,
    "customer_acquisition_cost": 7 * DAY,
    "customer_lifetime_value": 7 * DAY,
    "activity": MINUTE,
}
_INDEX_TTL = max(TTL_SECONDS.values())

# What a read or write of the cache raises while Redis, or a cluster slot's
# master, is out of reach: the cluster client raises some of its errors
# (a slot no node serves, no node reachable) outside redis.RedisError.
UNAVAILABLE = (redis.RedisError, redis.exceptions.RedisClusterException)


class InvalidKeyPart(ValueError):
    """A value that may not become part of a cache key."""


def organization_id(value: object) -> str:
    """A canonical lower-case uuid, or InvalidKeyPart."""
    if not isinstance(value, str) or not _CANONICAL_UUID.fullmatch(value):
        raise InvalidKeyPart(f"organization id must be a canonical lower-case uuid, got {str(value)[:80]!r}")
    return value


def iso_date(value: object) -> dt.date:
    """A date from a date or a YYYY-MM-DD string, or InvalidKeyPart."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise InvalidKeyPart(f"date must be YYYY-MM-DD, got {str(value)[:80]!r}")


@dataclass(frozen=True)
class Keys:
    """The contract's key names under a configurable prefix."""

    prefix: str = "dashboard"

    def __post_init__(self) -> None:
        if not _PREFIX.fullmatch(self.prefix):
            raise InvalidKeyPart(f"key prefix must match {_PREFIX.pattern}, got {self.prefix[:80]!r}")

    def metrics(self, org: str, date_from: object, date_to: object) -> str:
        return f"{self.metrics_prefix(org)}{iso_date(date_from)}:{iso_date(date_to)}"

    def metrics_prefix(self, org: str) -> str:
        """What every date-range metrics key of the organization starts with."""
        return f"{self.prefix}:{organization_id(org)}:"

    def summary(self, org: str) -> str:
        return f"{self.prefix}:summary:{organization_id(org)}"

    def chart(self, org: str, chart: str) -> str:
        return f"{self.prefix}:charts:{organization_id(org)}:{chart}"

    def targets(self, org: str) -> str:
        return f"{self.prefix}:targets:{organization_id(org)}"

    def analytics(self, org: str, name: str) -> str:
        return f"{self.prefix}:analytics:{organization_id(org)}:{name}"

    def activity(self, org: str, page: int) -> str:
        if not isinstance(page, int) or page < 1:
            raise InvalidKeyPart(f"activity page must be a whole number from 1, got {page!r}")
        return f"{self.prefix}:activity:{organization_id(org)}:{page}"

    def read_stats(self, hour: str) -> str:
        """Hash of read outcomes (hit, miss) counted in one UTC hour (YYYYMMDDHH)."""
        return f"{self.prefix}:stats:reads:{hour}"

    def read_histogram(self, name: str) -> str:
        """Hash of a read-path histogram (Prometheus buckets, sum), never expiring."""
        return f"{self.prefix}:stats:histogram:{name}"

    def read_latencies(self, hour: str) -> str:
        """List of the hour's most recent read latencies in milliseconds."""
        return f"{self.prefix}:stats:latency_ms:{hour}"

    def index(self, org: str) -> str:
        """The sorted set of the organization's keys, scored by expiry time."""
        return f"{self.prefix}:index:{organization_id(org)}"


@dataclass(frozen=True)
class Entry:
    """One value to cache: its organization, key, JSON value and TTL."""

    organization_id: str
    key: str
    value: Any
    ttl_seconds: int


class DashboardCache:
    """Reads and writes of the contract's JSON values."""

    def __init__(self, client: redis.Redis | RedisCluster, prefix: str = "dashboard"):
        self.client = client
        self.keys = Keys(prefix)

    def get(self, key: str) -> Any | None:
        raw = self.client.get(key)
        return None if raw is None else json.loads(raw)

    def write(self, entries: Iterable[Entry]) -> int:
        """Write every entry with its TTL and record it in its organization's
        index, in one pipelined round trip; returns the number written."""
        now = time.time()
        by_organization: dict[str, list[Entry]] = defaultdict(list)
        pipe = self.client.pipeline(transaction=False)
        for entry in entries:
            pipe.set(entry.key, json.dumps(entry.value, separators=(",", ":")), ex=entry.ttl_seconds)
            by_organization[organization_id(entry.organization_id)].append(entry)
        for org, org_entries in by_organization.items():
            index = self.keys.index(org)
            pipe.zadd(index, {e.key: now + e.ttl_seconds for e in org_entries})
            pipe.zremrangebyscore(index, "-inf", now)  # forget keys that have expired
            pipe.expire(index, _INDEX_TTL)
        pipe.execute()
        return sum(len(e) for e in by_organization.values())

    def invalidate(self, org: str, batch: int = 500) -> int:
        """Delete every cached key of one organization; returns how many."""
        index = self.keys.index(org)
        deleted = 0
        while keys := self.client.zrange(index, 0, batch - 1):
            deleted += self._delete(index, keys)
        self.client.delete(index)
        return deleted

    def invalidate_metrics(self, org: str, keep: Collection[str] = ()) -> int:
        """Delete one organization's read-path values (its date-range metrics and
        summary) but those in `keep` (about to be overwritten); the read path
        recomputes them on demand; charts, analytics and the activity feed stay
        until their own refresh. Returns how many."""
        index = self.keys.index(org)
        range_prefix, summary = self.keys.metrics_prefix(org), self.keys.summary(org)
        keys = [k for k in self.client.zrange(index, 0, -1)
                if ((name := k.decode()).startswith(range_prefix) or name == summary) and name not in keep]
        return self._delete(index, keys) if keys else 0

    def _delete(self, index: str, keys: list[bytes]) -> int:
        """One DEL per key (keys of one organization hash to different Redis
        Cluster slots, so a multi-key DEL would fail there), one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.delete(key)
        pipe.zrem(index, *keys)
        return sum(pipe.execute()[:-1])
