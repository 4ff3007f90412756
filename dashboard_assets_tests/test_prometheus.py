"""The pipeline's metrics scraped by a real Prometheus server (Debian's
`prometheus` package, started on loopback): its HTTP API answers with the
values the pipeline's own tables and Redis hold, and it loads the alert rules
of deploy/, which `promtool check rules` accepts."""

import json
import shutil
import subprocess
import urllib.parse
import urllib.request

import uuid

import dagster as dg
import psycopg
import pytest
from prometheus_client import start_http_server

from dashboard_assets import serving
from dashboard_assets.db import libpq_url
from dashboard_assets.local_servers import free_port
from dashboard_assets.prometheus import registry
from dashboard_assets.resources import RedisResource
from dashboard_assets_tests.conftest import HISTORY_END, HISTORY_START, PROJECT_ROOT
from dashboard_assets_tests.helpers import execute, materialize_days, stop_process_group, tick, wait_for

RULES = PROJECT_ROOT / "deploy" / "prometheus-rules.yml"
PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")

pytestmark = pytest.mark.skipif(PROMETHEUS is None or PROMTOOL is None,
                                reason="no prometheus server (Debian's package prometheus; .ci/run installs it)")


def test_the_alert_rules_load():
    checked = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout


def test_prometheus_scrapes_what_the_pipeline_holds(database_url, redis_url, dagster_home, tmp_path):
    instance = dg.DagsterInstance.get()
    assert materialize_days(database_url, HISTORY_START, HISTORY_END, instance=instance).success
    instance.add_run(dg.DagsterRun(job_name="change_refresh", run_id=str(uuid.uuid4()),
                                   status=dg.DagsterRunStatus.NOT_STARTED))  # waiting to start
    store = RedisResource(url=redis_url).cache()
    with psycopg.connect(libpq_url(database_url)) as conn:
        (org,) = conn.execute("SELECT id::text FROM organizations ORDER BY id LIMIT 1").fetchone()
    for _ in range(3):  # a miss, then two hits
        serving.dashboard_metrics(org, "2025-03-01", "2025-03-31", database_url=database_url, dashboard_cache=store)
    cursor = tick(database_url, redis_url, None).cursor
    execute(database_url, "UPDATE orders SET status = 'cancelled' WHERE id = (SELECT id FROM orders"
            " WHERE status = 'delivered' AND created_at >= '2025-03-20' ORDER BY created_at LIMIT 1)")
    tick(database_url, redis_url, cursor)  # pending, not refreshed
    with psycopg.connect(libpq_url(database_url)) as conn:
        (pending,) = conn.execute("SELECT count(*) FROM dashboard.pending_days").fetchone()
        (lag_seconds,) = conn.execute("SELECT lag_seconds FROM dashboard.capture_progress").fetchone()
        (refreshes,) = conn.execute("SELECT count(*) FROM dashboard.refresh_log WHERE rollup = 'daily_metrics'"
                                    ).fetchone()
    assert pending > 0 and 0 < lag_seconds < 60  # the tick read the update a moment after its commit

    exporter_port, prometheus_port = free_port(), free_port()
    server, _ = start_http_server(exporter_port, addr="127.0.0.1", registry=registry(database_url, store, instance))
    (tmp_path / "prometheus.yml").write_text(json.dumps({  # YAML is a superset of JSON
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "dashboard_assets",
                            "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}],
    }))
    prometheus = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prometheus_port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"), start_new_session=True)
    try:
        answer = lambda promql: _query(prometheus_port, promql)  # noqa: E731
        wait_for(lambda: answer('dashboard_reads_total{outcome="hit"}'), 60, "Prometheus's first scrape")
        assert answer('dashboard_reads_total{outcome="hit"}') == 2
        assert answer('dashboard_reads_total{outcome="miss"}') == 1
        assert answer('dashboard_read_duration_seconds_count{outcome="hit"}') == 2
        assert answer('dashboard_read_stage_duration_seconds_count{stage="database"}') == 1
        assert answer('dashboard_pending_changes{kind="rollup_organization_days"}') == pending
        assert answer('dashboard_rollup_refreshes_total{rollup="daily_metrics"}') == refreshes
        assert answer("dashboard_capture_restarts_total") == 0
        assert answer("dashboard_capture_lag_seconds") == pytest.approx(lag_seconds)
        assert answer('dashboard_exporter_up{server="postgresql"}') == 1
        assert answer('dashboard_exporter_up{server="redis"}') == 1
        assert 0 <= answer('dashboard_rollup_last_refresh_age_seconds{rollup="daily_metrics"}') < 600
        assert answer('dashboard_asset_check_failed{asset="daily_metrics",check="reconciles_with_source"}') == 0
        assert answer('dashboard_change_refresh_runs{state="queued"}') == 1
        assert answer('dashboard_exporter_up{server="dagster"}') == 1
        rules = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{prometheus_port}/api/v1/rules").read())
        assert sum(len(group["rules"]) for group in rules["data"]["groups"]) == 8
    finally:
        stop_process_group(prometheus, timeout=30)
        server.shutdown()


def _query(port: int, promql: str) -> float | None:
    """The value of an instant query with one series (None: no series yet)."""
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        result = json.loads(urllib.request.urlopen(url, timeout=5).read())["data"]["result"]
    except OSError:
        return None
    return float(result[0]["value"][1]) if result else None
