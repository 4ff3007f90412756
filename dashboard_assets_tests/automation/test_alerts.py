"""Alerts against a real webhook (an HTTP server in a thread that records what
it receives), real runs on Dagster's test instance and on the instance as
`dagster.yaml` ships it, and real PostgreSQL and Redis: once per incident and
once on recovery, every kind of incident, no URL, and a webhook that fails or
is down."""

import datetime as dt
import http.server
import itertools
import json
import socket
import threading
import time
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg
import pytest

from dashboard_assets import settings
from dashboard_assets.automation import alerts
from dashboard_assets.automation.alerts import RUN_FAILED, Alert, alerts_sensor, slack_body
from dashboard_assets.automation.freshness import partition_freshness_checks
from dashboard_assets.db import libpq_url
from dashboard_assets.demo import psycopg2_url
from dashboard_assets.monitoring import dashboard_health
from dashboard_assets.resources import AlertWebhookResource, PostgresResource, RedisResource, build_resources
from dashboard_assets.rollups.assets import daily_rollup_assets
from dashboard_assets_tests.conftest import PROJECT_ROOT
from dashboard_assets_tests.helpers import materialize_days

FIRST_DAY, LAST_DAY = dt.date(2025, 3, 13), dt.date(2025, 3, 14)
DAILY_METRICS_ASSET = daily_rollup_assets[0]
UI_URL = "http://dagster.example:3000"
_instance_numbers = itertools.count()


class RecordingWebhook:
    """An HTTP server in a thread: records every JSON body posted to it, and
    answers with the scripted statuses first, then 200."""

    def __init__(self, statuses=(), port: int = 0):
        self.requests: list[tuple[int, dict]] = []
        self.statuses = list(statuses)
        webhook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = webhook.statuses.pop(0) if webhook.statuses else 200
                webhook.requests.append((status, body))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/alerts"

    @property
    def received(self) -> list[dict]:
        """The bodies it accepted."""
        return [body for status, body in self.requests if status == 200]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    server = RecordingWebhook()
    yield server
    server.stop()


@pytest.fixture(params=["test instance", "shipped instance"])
def instance(request, postgres_server, tmp_path, monkeypatch):
    """The instance the sensor reads: Dagster's test instance (SQLite), and the
    instance as `dagster.yaml` ships it, on a PostgreSQL database of its own."""
    if request.param == "test instance":
        with dg.instance_for_test() as test_instance:
            yield test_instance
        return
    url = postgres_server.create_database(f"dagster_alerts_{next(_instance_numbers)}")
    (tmp_path / "dagster.yaml").symlink_to(PROJECT_ROOT / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", psycopg2_url(url))
    with dg.DagsterInstance.from_config(str(tmp_path)) as shipped:
        yield shipped


def tick(instance: dg.DagsterInstance, cursor: str | None, webhook_resource: AlertWebhookResource) -> dg.SensorResult:
    """One evaluation of the alert sensor, as the daemon runs it."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"alert_webhook": webhook_resource})
    return alerts_sensor(context)


def summary(body: dict) -> tuple[str, str, str, str, str]:
    """(headline, asset, check, partitions, run link) of a received alert."""
    headline = body["blocks"][0]["text"]["text"]
    fields = dict(field["text"].strip("*").split("*\n") for field in body["blocks"][1]["fields"])
    return (headline, fields["Asset"], fields.get("Check", ""), fields["Partitions"],
            fields["Run"].strip("<>").split("|")[0])


def inflate_revenue(database_url: str) -> None:
    """A real trigger that makes every written daily_metrics row disagree with the source."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute("""
            CREATE FUNCTION inflate_revenue() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN NEW.revenue := NEW.revenue + 1; RETURN NEW; END $$;
            CREATE TRIGGER inflate_revenue BEFORE INSERT ON dashboard.daily_metrics
            FOR EACH ROW EXECUTE FUNCTION inflate_revenue();""")


def refresh_daily_metrics(database_url: str, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return materialize_days(database_url, FIRST_DAY, LAST_DAY, assets=[DAILY_METRICS_ASSET], instance=instance,
                            raise_on_error=False)


def report_health(database_url: str, redis_url: str, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """dashboard_health on a database whose rollups were never refreshed: rollups_within_freshness warns."""
    return dg.materialize([dashboard_health], instance=instance, resources={
        "postgres": PostgresResource(database_url=database_url), "redis": RedisResource(url=redis_url)})


def test_a_failed_run_and_reconciliation_alert_once_and_recover_once(database_url, webhook, instance):
    hook = AlertWebhookResource(url=webhook.url, ui_url=UI_URL)
    cursor = tick(instance, None, hook).cursor
    inflate_revenue(database_url)
    failed = refresh_daily_metrics(database_url, instance)
    assert not failed.success
    cursor = tick(instance, cursor, hook).cursor
    link = f"{UI_URL}/runs/{failed.run_id}"
    assert [summary(body) for body in webhook.received] == [
        (":red_circle: *Run failed*: daily_metrics", "daily_metrics", "", "2025-03-13…2025-03-14", link),
        (":red_circle: *Blocking check failed*: reconciles_with_source on daily_metrics",
         "daily_metrics", "reconciles_with_source", "2025-03-13…2025-03-14", link),
    ]
    run_alert, check_alert = webhook.received
    assert "Steps failed: ['daily_metrics']" in run_alert["text"]
    assert '"revenue"' in check_alert["blocks"][2]["elements"][0]["text"]  # the mismatch, from the check

    assert not refresh_daily_metrics(database_url, instance).success  # the same failure again
    cursor = tick(instance, cursor, hook).cursor
    cursor = tick(instance, cursor, hook).cursor
    assert len(webhook.received) == 2

    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute("DROP TRIGGER inflate_revenue ON dashboard.daily_metrics")
    recovered = refresh_daily_metrics(database_url, instance)
    assert recovered.success
    cursor = tick(instance, cursor, hook).cursor
    tick(instance, cursor, hook)
    link = f"{UI_URL}/runs/{recovered.run_id}"
    assert [summary(body) for body in webhook.received[2:]] == [
        (":large_green_circle: *Recovered: run failed*: daily_metrics", "daily_metrics", "",
         "2025-03-13…2025-03-14", link),
        (":large_green_circle: *Recovered: blocking check failed*: reconciles_with_source on daily_metrics",
         "daily_metrics", "reconciles_with_source", "2025-03-13…2025-03-14", link),
    ]
    assert "failing since" in webhook.received[2]["text"]


def test_stale_partitions_and_a_health_warning_alert(database_url, redis_url, webhook, instance):
    """The generated data ends in April 2025: today's partitions are missing."""
    hook = AlertWebhookResource(url=webhook.url)
    cursor = tick(instance, None, hook).cursor
    checked = dg.materialize([*daily_rollup_assets, *partition_freshness_checks], instance=instance,
                             selection=dg.AssetSelection.checks(*partition_freshness_checks),
                             resources={"postgres": PostgresResource(database_url=database_url)})
    assert checked.success and not any(c.passed for c in checked.get_asset_check_evaluations())
    assert report_health(database_url, redis_url, instance).success
    tick(instance, cursor, hook)
    alerts = sorted(summary(body)[:3] for body in webhook.received)
    assert alerts == sorted(
        [(f":red_circle: *Stale partitions*: recent_partitions_are_fresh on {rollup.key.to_user_string()}",
          rollup.key.to_user_string(), "recent_partitions_are_fresh") for rollup in daily_rollup_assets]
        + [(":red_circle: *Health warning*: rollups_within_freshness on dashboard_health", "dashboard_health",
            "rollups_within_freshness")])
    stale = next(body for body in webhook.received if "Stale" in body["text"])
    assert "missing_today" in stale["blocks"][2]["elements"][0]["text"]
    today = dt.datetime.now(ZoneInfo(settings.reporting_timezone())).date()
    assert summary(stale)[3:] == (f"{today - dt.timedelta(days=1)}…{today}",
                                  f"{settings.DEFAULT_UI_URL}/runs/{checked.run_id}")


def test_without_the_variable_alerts_are_logged_and_not_sent(database_url, redis_url, webhook, monkeypatch, capfd):
    monkeypatch.delenv(settings.ALERT_WEBHOOK_URL, raising=False)
    monkeypatch.setenv(settings.UI_URL, "https://dagster.example.com")
    unset = build_resources()["alert_webhook"]
    with dg.instance_for_test() as instance:
        cursor = tick(instance, None, unset).cursor
        health = report_health(database_url, redis_url, instance)
        capfd.readouterr()
        logged = tick(instance, cursor, unset)
        assert webhook.requests == []
        assert ("WARNING - alert, not sent (DASHBOARD_ALERT_WEBHOOK_URL unset): Health warning: "
                "rollups_within_freshness on dashboard_health (not partitioned), "
                f"run {health.run_id} https://dagster.example.com/runs/{health.run_id} — stale: ") \
            in capfd.readouterr().err  # the sensor's log
        assert json.loads(logged.cursor)["undelivered"] == []

        monkeypatch.setenv(settings.ALERT_WEBHOOK_URL, webhook.url)  # the same incident is not alerted again
        tick(instance, logged.cursor, build_resources()["alert_webhook"])
        assert webhook.requests == []
        assert report_health(database_url, redis_url, instance).success
        tick(instance, None, build_resources()["alert_webhook"])  # a sensor without a cursor reports what is red
    assert [summary(body)[1:3] for body in webhook.received] == [("dashboard_health", "rollups_within_freshness")]


def test_a_webhook_answering_500_is_retried(database_url, redis_url):
    webhook = RecordingWebhook(statuses=[500])
    try:
        with dg.instance_for_test() as instance:
            assert report_health(database_url, redis_url, instance).success
            result = tick(instance, None, AlertWebhookResource(url=webhook.url))
    finally:
        webhook.stop()
    assert [status for status, _ in webhook.requests] == [500, 200]
    assert webhook.requests[0][1] == webhook.requests[1][1]
    assert json.loads(result.cursor)["undelivered"] == []


def test_a_webhook_refusing_connections_never_fails_the_tick_and_gets_the_alert_later(database_url, redis_url,
                                                                                    capfd):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hook = AlertWebhookResource(url=f"http://127.0.0.1:{port}/hooks/alerts")
    with dg.instance_for_test() as instance:
        assert report_health(database_url, redis_url, instance).success
        capfd.readouterr()
        started = time.monotonic()
        down = tick(instance, None, hook)
        assert time.monotonic() - started >= 3.0  # three attempts, 1 s and 2 s apart
        assert ("WARNING - 1 alerts not delivered, kept for the next tick: not delivered after 3 attempts: "
                "[Errno 111] Connection refused") in capfd.readouterr().err
        assert down.skip_reason.skip_message == "1 new alerts, 1 waiting for the webhook"
        webhook = RecordingWebhook(port=port)  # the webhook is back
        try:
            back = tick(instance, down.cursor, hook)
        finally:
            webhook.stop()
    assert [summary(body)[1:3] for body in webhook.received] == [("dashboard_health", "rollups_within_freshness")]
    assert json.loads(back.cursor)["undelivered"] == []


@dg.asset
def sometimes_failing(context: dg.AssetExecutionContext) -> None:
    """Fails in a run tagged `fail`."""
    if "fail" in context.run.tags:
        raise RuntimeError("failing on purpose")


def test_runs_are_read_in_the_order_they_ended_a_few_per_tick(monkeypatch, webhook):
    """Failures and successes are read from two lists: when one is cut at the
    limit, the other is read only as far, so that no run is skipped."""
    monkeypatch.setattr(alerts, "RUN_EVENTS_PER_TICK", 2)
    hook = AlertWebhookResource(url=webhook.url)
    with dg.instance_for_test() as instance:
        cursor = tick(instance, None, hook).cursor
        for tags in ({"fail": ""}, {"fail": ""}, {}, {"fail": ""}, {}):
            dg.materialize([sometimes_failing], instance=instance, tags=tags, raise_on_error=False)
        for _ in range(3):
            cursor = tick(instance, cursor, hook).cursor
    assert [summary(body)[0] for body in webhook.received] == [
        ":red_circle: *Run failed*: sometimes_failing",
        ":large_green_circle: *Recovered: run failed*: sometimes_failing",
        ":red_circle: *Run failed*: sometimes_failing",
        ":large_green_circle: *Recovered: run failed*: sometimes_failing",
    ]


def test_the_body_shows_error_text_literally():
    alert = Alert(RUN_FAILED, "daily_metrics", "", "2025-03-14", "run-1", "expected <numeric> & got 'x'")
    body = slack_body(alert, "http://127.0.0.1:3000/runs/run-1")
    assert body["blocks"][2]["elements"][0]["text"] == "expected &lt;numeric&gt; &amp; got 'x'"
    assert body["blocks"][1]["fields"][-1]["text"] == "*Run*\n<http://127.0.0.1:3000/runs/run-1|run-1>"


def test_a_malformed_url_is_refused_naming_the_variable():
    with dg.instance_for_test() as instance, pytest.raises(Exception) as refused:
        tick(instance, None, AlertWebhookResource(url="hooks.example.com/alerts"))
    assert "DASHBOARD_ALERT_WEBHOOK_URL is not an http:// or https:// URL with a host" in str(refused.value.__cause__)
