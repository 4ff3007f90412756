"""The pipeline's metrics for Prometheus, read at each scrape from its own
state, so that any number of exporters give the same answer and none keeps a
count of its own: the read path's histograms and hit ratio from Redis (every
reading process adds to them), each rollup's refreshes and last refresh,
change capture's lag, restarts and pending work from PostgreSQL, and, given
the Dagster instance, each asset check's latest result and the change
refresh runs queued or working. Served by `dashboard-assets serve-metrics`
(docs/deploy.md says where it runs) and by the demo."""

import datetime as dt
import logging
import os
from collections.abc import Iterator

import dagster as dg
import sqlalchemy as sa
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as CheckStatus

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client import start_http_server
from prometheus_client.registry import Collector, CollectorRegistry

from dashboard_assets import cache
from dashboard_assets.automation.capture import slot_health, slot_name
from dashboard_assets.automation.change_refresh import JOB_NAME as CHANGE_REFRESH_JOB
from dashboard_assets.db import autocommit_connection, load_sql
from dashboard_assets.definitions import defs
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

    def __init__(self, database_url: str, store: cache.DashboardCache | None,
                 instance: dg.DagsterInstance | None = None):
        self._database_url = database_url
        self._store = store
        self._instance = instance
        self._check_keys = sorted(defs.resolve_asset_graph().asset_check_keys) if instance else []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"{PREFIX}_exporter_up", "Whether the exporter could read a server at this scrape "
                               "(1) or not (0).", labels=["server"])
        for server, metrics in (("redis", self._read_path), ("postgresql", self._pipeline),
                                ("dagster", self._dagster)):
            if server == "dagster" and self._instance is None:
                continue
            try:
                yield from list(metrics())
                up.add_metric([server], 1)
            except (*cache.UNAVAILABLE, *POSTGRES_ERRORS, sa.exc.OperationalError) as error:
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
            lag_bytes = slot_health(conn).get("lag_bytes")
        read_age, lag_seconds, restarts, pending_days, pending_organizations = state
        counted = CounterMetricFamily(f"{PREFIX}_rollup_refreshes", "Committed refreshes (transactions) of each "
                                      "rollup.", labels=["rollup"])
        for rollup, count in refreshes:
            counted.add_metric([rollup], count)
        yield counted
        if lag_bytes is not None:
            yield GaugeMetricFamily(f"{PREFIX}_capture_lag_bytes", "WAL written since the position change capture "
                                    "last confirmed.", value=lag_bytes)
        if lag_seconds is not None:
            yield GaugeMetricFamily(f"{PREFIX}_capture_lag_seconds", "How long after its commit capture recorded "
                                    "the newest change of its last read.", value=lag_seconds)
        if read_age is not None:
            yield GaugeMetricFamily(f"{PREFIX}_capture_last_recorded_age_seconds", "Seconds since change capture "
                                    "last recorded changes (it grows while the source is quiet).", value=read_age)
        yield CounterMetricFamily(f"{PREFIX}_capture_restarts", "Times change capture restarted from a new slot "
                                  "(and refreshed everything).", value=restarts)
        pending = GaugeMetricFamily(f"{PREFIX}_pending_changes", "Changes captured and not yet refreshed: "
                                    "(rollup, organization, day) and (asset, organization).", labels=["kind"])
        pending.add_metric(["rollup_organization_days"], pending_days)
        pending.add_metric(["organization_assets"], pending_organizations)
        yield pending

    def _dagster(self) -> Iterator[Metric]:
        checks = GaugeMetricFamily(f"{PREFIX}_asset_check_failed", "Whether the asset check's latest evaluation "
                                   "failed (1) or passed (0).", labels=["asset", "check"])
        latest = self._instance.event_log_storage.get_latest_asset_check_execution_by_key(self._check_keys)
        for key, record in sorted(latest.items()):
            if record.status in (CheckStatus.SUCCEEDED, CheckStatus.FAILED):
                checks.add_metric([key.asset_key.to_user_string(), key.name],
                                  int(record.status == CheckStatus.FAILED))
        yield checks
        runs = GaugeMetricFamily(f"{PREFIX}_change_refresh_runs", "Change refresh runs queued (waiting to start) "
                                 "and started (working).", labels=["state"])
        for state, statuses in (("queued", [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED]),
                                ("started", [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED])):
            runs.add_metric([state], self._instance.get_runs_count(
                dg.RunsFilter(job_name=CHANGE_REFRESH_JOB, statuses=statuses)))
        yield runs


def registry(database_url: str, store: cache.DashboardCache | None,
             instance: dg.DagsterInstance | None = None) -> CollectorRegistry:
    """A registry holding only the pipeline's metrics."""
    found = CollectorRegistry(auto_describe=False)
    found.register(PipelineCollector(database_url, store, instance))
    return found


def serve(database_url: str, store: cache.DashboardCache | None, host: str, port: int) -> None:
    """Serve /metrics until interrupted, with the Dagster instance's metrics
    when DAGSTER_HOME names one."""
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else None
    server, thread = start_http_server(port, addr=host, registry=registry(database_url, store, instance))
    print(f"serving the pipeline's metrics on http://{host}:{port}/metrics", flush=True)
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
