"""The read path's counters in Redis: outcomes (hit, miss) and latencies per
UTC hour, kept two days; and cumulative histograms of the whole read by
outcome, of the cache lookup and of the database's answer on a miss, in
Prometheus's buckets, which every process that reads adds to and
`dashboard-assets serve-metrics` exposes."""

import datetime as dt
import statistics

from dashboard_assets.cache import DashboardCache

LATENCY_SAMPLES = 1000
STATS_TTL_SECONDS = 2 * 86400
# Upper bounds (seconds) of the read histograms' buckets, +Inf besides.
READ_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# The histograms: the whole read by outcome; its stages.
READ_HISTOGRAMS = ("read:hit", "read:miss", "stage:cache", "stage:database")


def bucket(seconds: float) -> str:
    """The histogram bucket (its upper bound) of a duration."""
    return next((repr(bound) for bound in READ_BUCKETS if seconds <= bound), "+Inf")


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The value below which `fraction` of the sorted values lie (nearest rank), to 3 decimals."""
    return round(sorted_values[max(0, int(len(sorted_values) * fraction) - 1)], 3)


def _hour(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).strftime("%Y%m%d%H")


def record_read(store: DashboardCache, outcome: str, seconds: float, now: dt.datetime | None = None, *,
                cache_seconds: float | None = None, database_seconds: float | None = None) -> None:
    """Count one read (`hit` or `miss`), keep its latency and add it (and its
    stages' durations) to the histograms, in one round trip."""
    hour = _hour(now or dt.datetime.now(dt.UTC))
    stats, latencies = store.keys.read_stats(hour), store.keys.read_latencies(hour)
    pipe = store.client.pipeline(transaction=False)
    pipe.hincrby(stats, outcome, 1)
    pipe.lpush(latencies, round(seconds * 1000, 3))
    pipe.ltrim(latencies, 0, LATENCY_SAMPLES - 1)
    pipe.expire(stats, STATS_TTL_SECONDS)
    pipe.expire(latencies, STATS_TTL_SECONDS)
    for name, duration in ((f"read:{outcome}", seconds), ("stage:cache", cache_seconds),
                           ("stage:database", database_seconds)):
        if duration is not None:
            histogram = store.keys.read_histogram(name)
            pipe.hincrby(histogram, bucket(duration), 1)
            pipe.hincrbyfloat(histogram, "sum", duration)
    pipe.execute()


def read_histograms(store: DashboardCache) -> dict[str, tuple[list[tuple[str, int]], float]]:
    """Each read histogram as Prometheus wants it: cumulative (upper bound,
    count) pairs ending with +Inf, and the sum of the durations."""
    pipe = store.client.pipeline(transaction=False)
    for name in READ_HISTOGRAMS:
        pipe.hgetall(store.keys.read_histogram(name))
    found = {}
    for name, fields in zip(READ_HISTOGRAMS, pipe.execute()):
        counts = {key.decode(): value for key, value in fields.items()}
        total, cumulative = 0, []
        for bound in [*map(repr, READ_BUCKETS), "+Inf"]:
            total += int(counts.get(bound, 0))
            cumulative.append((bound, total))
        found[name] = (cumulative, float(counts.get("sum", 0)))
    return found


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
