"""The pipeline's metrics for Prometheus, read at each scrape from its own
state, so that any number of exporters give the same answer and none keeps a
count of its own: the read path's histograms and hit ratio from Redis (every
reading process adds to them), each rollup's refreshes and last refresh,
change capture's lag, restarts and pending work from PostgreSQL. Served by
`dashboard-assets serve-metrics` (docs/deploy.md says where it runs)."""

import datetime as dt
import logging
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client import start_http_server
from prometheus_client.registry import Collector, CollectorRegistry

from dashboard_assets import cache
from dashboard_assets.automation.capture import slot_name
from dashboard_assets.db import autocommit_connection, load_sql
from dashboard_assets.monitoring import refresh_ages
from dashboard_assets.read_stats import read_histograms, read_window
from dashboard_assets.retries import POSTGRES_ERRORS

log = logging.getLogger(__name__)
_SQL = "dashboard_assets.automation.sql"
PREFIX = "dashboard"


class PipelineCollector(Collector):
    """Every metric, collected anew at each scrape. A server out of reach
    leaves its metrics out of that scrape (and `dashboard_exporter_up` says
    which), never fails it."""

    def __init__(self, database_url: str, store: cache.DashboardCache | None):
        self._database_url = database_url
        self._store = store

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"{PREFIX}_exporter_up", "Whether the exporter could read a server at this scrape "
                               "(1) or not (0).", labels=["server"])
        for server, metrics in (("redis", self._read_path), ("postgresql", self._pipeline)):
            try:
                yield from list(metrics())
                up.add_metric([server], 1)
            except (*cache.UNAVAILABLE, *POSTGRES_ERRORS) as error:
                log.warning("%s unreadable at this scrape: %s", server, error)
                up.add_metric([server], 0)
        yield up

    def _read_path(self) -> Iterator[Metric]:
        if self._store is None:
            return
        histograms = read_histograms(self._store)
        reads = HistogramMetricFamily(f"{PREFIX}_read_duration_seconds", "A dashboard read from the call to the "
                                      "answer, by outcome (hit: from Redis; miss: computed by PostgreSQL).",
                                      labels=["outcome"])
        stages = HistogramMetricFamily(f"{PREFIX}_read_stage_duration_seconds", "A stage of a read: the Redis "
                                       "lookup (every read), the database's answer (rollups and live today, on a "
                                       "miss).", labels=["stage"])
        total = CounterMetricFamily(f"{PREFIX}_reads", "Dashboard reads, by outcome.", labels=["outcome"])
        for name, (buckets, seconds) in histograms.items():
            kind, label = name.split(":")
            (reads if kind == "read" else stages).add_metric([label], buckets, seconds)
            if kind == "read":
                total.add_metric([label], buckets[-1][1])
        yield from (reads, stages, total)
        window = read_window(self._store, dt.datetime.now(dt.UTC))
        if window["cache_hit_rate"] is not None:
            yield GaugeMetricFamily(f"{PREFIX}_cache_hit_ratio", "Reads answered from Redis over the current and "
                                    "previous UTC hour.", value=window["cache_hit_rate"])

    def _pipeline(self) -> Iterator[Metric]:
        ages = GaugeMetricFamily(f"{PREFIX}_rollup_last_refresh_age_seconds", "Seconds since the rollup's last "
                                 "committed refresh.", labels=["rollup"])
        for rollup, age in refresh_ages(self._database_url, dt.datetime.now(dt.UTC)).items():
            if age is not None:
                ages.add_metric([rollup], age)
        yield ages
        with autocommit_connection(self._database_url) as conn:
            state = conn.execute(load_sql(_SQL, "pipeline_state.sql"), {"slot": slot_name(conn)}).fetchone()
            refreshes = conn.execute(load_sql(_SQL, "refresh_counts.sql")).fetchall()
        lag_bytes, read_age, restarts, pending_days, pending_organizations = state
        counted = CounterMetricFamily(f"{PREFIX}_rollup_refreshes", "Committed refreshes (transactions) of each "
                                      "rollup.", labels=["rollup"])
        for rollup, count in refreshes:
            counted.add_metric([rollup], count)
        yield counted
        if lag_bytes is not None:
            yield GaugeMetricFamily(f"{PREFIX}_capture_lag_bytes", "WAL written since the position change capture "
                                    "last confirmed.", value=lag_bytes)
        if read_age is not None:
            yield GaugeMetricFamily(f"{PREFIX}_capture_last_read_age_seconds", "Seconds since change capture last "
                                    "read the slot and recorded its position.", value=read_age)
        yield CounterMetricFamily(f"{PREFIX}_capture_restarts", "Times change capture restarted from a new slot "
                                  "(and refreshed everything).", value=restarts)
        pending = GaugeMetricFamily(f"{PREFIX}_pending_changes", "Changes captured and not yet refreshed: "
                                    "(rollup, organization, day) and (asset, organization).", labels=["kind"])
        pending.add_metric(["rollup_organization_days"], pending_days)
        pending.add_metric(["organization_assets"], pending_organizations)
        yield pending


def registry(database_url: str, store: cache.DashboardCache | None) -> CollectorRegistry:
    """A registry holding only the pipeline's metrics."""
    found = CollectorRegistry(auto_describe=False)
    found.register(PipelineCollector(database_url, store))
    return found


def serve(database_url: str, store: cache.DashboardCache | None, host: str, port: int) -> None:
    """Serve /metrics until interrupted."""
    server, thread = start_http_server(port, addr=host, registry=registry(database_url, store))
    print(f"serving the pipeline's metrics on http://{host}:{port}/metrics", flush=True)
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
