"""The read path's counters in Redis: outcomes (hit, miss) and latencies per
UTC hour, kept two days."""

import datetime as dt
import statistics

from dashboard_assets.cache import DashboardCache

LATENCY_SAMPLES = 1000
STATS_TTL_SECONDS = 2 * 86400


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The value below which `fraction` of the sorted values lie (nearest rank), to 3 decimals."""
    return round(sorted_values[max(0, int(len(sorted_values) * fraction) - 1)], 3)


def _hour(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).strftime("%Y%m%d%H")


def record_read(store: DashboardCache, outcome: str, seconds: float, now: dt.datetime | None = None) -> None:
    """Count one read (`hit` or `miss`) and keep its latency, in one round trip."""
    hour = _hour(now or dt.datetime.now(dt.UTC))
    stats, latencies = store.keys.read_stats(hour), store.keys.read_latencies(hour)
    pipe = store.client.pipeline(transaction=False)
    pipe.hincrby(stats, outcome, 1)
    pipe.lpush(latencies, round(seconds * 1000, 3))
    pipe.ltrim(latencies, 0, LATENCY_SAMPLES - 1)
    pipe.expire(stats, STATS_TTL_SECONDS)
    pipe.expire(latencies, STATS_TTL_SECONDS)
    pipe.execute()


def read_window(store: DashboardCache, now: dt.datetime) -> dict[str, float | int | None]:
    """Reads, hit rate and latency percentiles over the current and previous UTC hour."""
    hours = [_hour(now - dt.timedelta(hours=back)) for back in (1, 0)]
    pipe = store.client.pipeline(transaction=False)
    for hour in hours:
        pipe.hgetall(store.keys.read_stats(hour))
        pipe.lrange(store.keys.read_latencies(hour), 0, -1)
    answers = pipe.execute()
    hits = sum(int(a.get(b"hit", 0)) for a in answers[0::2])
    misses = sum(int(a.get(b"miss", 0)) for a in answers[0::2])
    latencies = sorted(float(ms) for a in answers[1::2] for ms in a)
    reads = hits + misses
    return {
        "reads": reads,
        "cache_hit_rate": round(hits / reads, 4) if reads else None,
        "read_p50_ms": round(statistics.median(latencies), 3) if latencies else None,
        "read_p99_ms": percentile(latencies, 0.99) if latencies else None,
    }
