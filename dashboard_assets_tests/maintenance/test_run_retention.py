"""Run retention on the instance as dagster.yaml ships it (PostgreSQL
storage): old runs go with their events, and every asset's and partition's
materialized status, latest materialization and latest check evaluations
stay exactly as they were."""

import datetime as dt

import dagster as dg
import pytest

from dashboard_assets import settings
from dashboard_assets.demo import psycopg2_url
from dashboard_assets.maintenance.run_retention import purge_runs, run_retention_job
from dashboard_assets.rollups.assets import CURRENT_STATE, DAILY_ROLLUPS, RECONCILES_WITH_SOURCE, VALUES_ARE_POSSIBLE
from dashboard_assets_tests.automation.test_change_refresh import cancel_a_delivered_order_of
from dashboard_assets_tests.conftest import PROJECT_ROOT
from dashboard_assets_tests.helpers import materialize_days, run_change_refresh, tick

MARCH = (dt.date(2025, 3, 1), dt.date(2025, 3, 31))
UNDATED = (CURRENT_STATE.name, "dashboard_cache", "product_mix_30d")  # what a changed order refreshes


@pytest.fixture
def instance(postgres_server, tmp_path, monkeypatch):
    url = postgres_server.create_database(f"dagster_{tmp_path.name}")
    (tmp_path / "dagster.yaml").symlink_to(PROJECT_ROOT / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", psycopg2_url(url))
    with dg.DagsterInstance.from_config(str(tmp_path)) as shipped:
        yield shipped


def what_the_ui_shows(instance: dg.DagsterInstance) -> dict:
    """Per asset: the materialized partitions, each one's latest materialization,
    the latest materialization of an undated asset, the latest evaluation of each check."""
    shown = {}
    for rollup in DAILY_ROLLUPS:
        key = dg.AssetKey(rollup.name)
        partitions = instance.get_materialized_partitions(key)
        shown[rollup.name] = instance.event_log_storage.get_latest_storage_id_by_partition(
            key, dg.DagsterEventType.ASSET_MATERIALIZATION, partitions=partitions)
    for name in UNDATED:
        shown[name] = [record.storage_id for record in instance.fetch_materializations(dg.AssetKey(name), limit=1).records]
    checks = [dg.AssetCheckKey(dg.AssetKey(rollup.name), check) for rollup in (*DAILY_ROLLUPS, CURRENT_STATE)
              for check in (RECONCILES_WITH_SOURCE, VALUES_ARE_POSSIBLE)]
    shown["checks"] = {key: execution.id for key, execution in
                       instance.event_log_storage.get_latest_asset_check_execution_by_key(checks).items()}
    return shown


def test_old_runs_go_and_every_partition_s_status_and_latest_materialization_stay(database_url, redis_url,
                                                                                  instance):
    first_backfill = materialize_days(database_url, *MARCH, instance=instance)
    cursor = tick(database_url, redis_url, None).cursor
    cancel_a_delivered_order_of(database_url, dt.date(2025, 3, 20))
    tick(database_url, redis_url, cursor)
    change_refresh = run_change_refresh(database_url, redis_url, instance=instance)
    ten_days = materialize_days(database_url, MARCH[0], MARCH[0] + dt.timedelta(days=9), instance=instance)
    second_backfill = materialize_days(database_url, *MARCH, instance=instance)
    assert all(run.success for run in (first_backfill, change_refresh, ten_days, second_backfill))
    shown = what_the_ui_shows(instance)
    assert all(shown[rollup.name] for rollup in DAILY_ROLLUPS) and all(shown[name] for name in UNDATED)

    result = purge_runs(instance, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))
    # every partition of the first two backfills was materialized again later; the change refresh is
    # the latest of the snapshot, the cache and the analytics, and the last backfill of every partition
    assert sorted(result.deleted) == sorted([first_backfill.run_id, ten_days.run_id])
    assert sorted(result.kept) == sorted([change_refresh.run_id, second_backfill.run_id])
    assert instance.get_run_by_id(first_backfill.run_id) is None
    assert not instance.all_logs(first_backfill.run_id)
    assert what_the_ui_shows(instance) == shown
    assert instance.get_materialized_partitions(dg.AssetKey("daily_metrics")) == set(shown["daily_metrics"])


def test_recent_runs_stay_and_the_retention_comes_from_the_operating_contract(database_url, instance, monkeypatch):
    assert materialize_days(database_url, *MARCH, instance=instance).success
    assert materialize_days(database_url, *MARCH, instance=instance).success
    monkeypatch.setenv(settings.RUN_RETENTION_DAYS, "1")
    assert run_retention_job.execute_in_process(instance=instance).success
    backfills = [r for r in instance.get_run_records() if r.dagster_run.job_name != "run_retention"]
    assert len(backfills) == 2  # neither a day old
    monkeypatch.setenv(settings.RUN_RETENTION_DAYS, "a week")
    with pytest.raises(settings.SettingsError, match=settings.RUN_RETENTION_DAYS):
        settings.run_retention_days()
