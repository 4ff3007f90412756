"""What the UI shows of the data: each table asset's table name and columns
(equal to the migrated database's, so they cannot drift), the rollups'
totals as plain numbers the Plots tab draws, and a preview of what each
chart published."""

import dagster as dg

from dashboard_assets.analytics.assets import ANALYTICS, analytics_assets, customer_acquisition_cost
from dashboard_assets.analytics.preview import PREVIEW_ORGANIZATIONS
from dashboard_assets.definitions import defs
from dashboard_assets.resources import PostgresResource, RedisResource
from dashboard_assets.table_schemas import declared_tables, table_columns
from dashboard_assets_tests.analytics.conftest import AS_OF, FIRST_WEEK, LAST_WEEK
from dashboard_assets_tests.conftest import HISTORY_END, HISTORY_START
from dashboard_assets_tests.helpers import materialize_days, read_table

_CATALOG_COLUMNS = """
    SELECT attname AS name, format_type(atttypid, atttypmod) AS type
    FROM pg_attribute
    WHERE attrelid = to_regclass(:table) AND attnum > 0 AND NOT attisdropped
    ORDER BY attnum
"""


def _table_assets() -> dict[str, dg.AssetSpec]:
    """The assets that declare a table, by the table's name."""
    return {spec.metadata["dagster/table_name"].value: spec for spec in defs.resolve_all_asset_specs()
            if "dagster/table_name" in spec.metadata}


def test_every_table_asset_names_its_table_and_lists_its_columns():
    tables = _table_assets()
    assert set(tables) == {f"dashboard.{table}" for table in declared_tables()}
    assert {spec.key.to_user_string() for spec in tables.values()} == {
        "daily_metrics", "daily_pipeline", "daily_warranty", "daily_jobs", "current_state",
        *(spec.name for spec in ANALYTICS), "customer_acquisition_cost"}
    for table, spec in tables.items():
        columns = spec.metadata["dagster/column_schema"].schema.columns
        assert [(column.name, column.type) for column in columns] == table_columns(table.removeprefix("dashboard."))
        assert all(column.description for column in columns), table


def test_declared_columns_are_the_migrated_tables_columns(empty_database_url):
    for table in declared_tables():
        found = read_table(empty_database_url, _CATALOG_COLUMNS, table=f"dashboard.{table}")
        assert list(zip(found["name"], found["type"], strict=True)) == table_columns(table), table


def test_a_refresh_reports_its_totals_as_numbers(database_url):
    result = materialize_days(database_url, HISTORY_START, HISTORY_END)
    assert result.success
    stored = read_table(database_url, "SELECT sum(revenue) AS revenue, sum(delivered_orders) AS delivered_orders "
                                      "FROM dashboard.daily_metrics")
    for materialization in result.asset_materializations_for_node("daily_metrics"):
        metadata = materialization.metadata
        assert isinstance(metadata["revenue"], dg.FloatMetadataValue)
        assert metadata["revenue"].value == float(stored["revenue"][0])
        assert isinstance(metadata["delivered_orders"], dg.IntMetadataValue)
        assert metadata["delivered_orders"].value == stored["delivered_orders"][0]


def _rows(markdown: str) -> list[list[str]]:
    """The cells of a markdown table's rows, header first, without the rule under it."""
    lines = markdown.splitlines()
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines[:1] + lines[2:]]


def test_each_chart_previews_what_it_published(database_url, redis_url):
    assert materialize_days(database_url, HISTORY_START, HISTORY_END).success
    config = {"config": {"as_of": AS_OF.isoformat()}}
    result = dg.materialize(
        analytics_assets,
        resources={"postgres": PostgresResource(database_url=database_url), "redis": RedisResource(url=redis_url)},
        run_config={"ops": {spec.name: config for spec in ANALYTICS}},
    )
    assert result.success
    for spec in ANALYTICS:
        [materialization] = result.asset_materializations_for_node(spec.name)
        preview = materialization.metadata["preview"]
        assert isinstance(preview, dg.MarkdownMetadataValue), spec.name
        stored = read_table(database_url, f"SELECT organization_id, payload FROM dashboard.{spec.name} "
                                          "ORDER BY organization_id LIMIT :n", n=PREVIEW_ORGANIZATIONS)
        expected = [org for org, payload in zip(stored["organization_id"], stored["payload"], strict=True)
                    for _ in spec.preview(payload)]
        assert [row[0] for row in _rows(preview.value)[1:]] == expected, spec.name

    trend = _rows(result.asset_materializations_for_node("revenue_trend_12m")[0].metadata["preview"].value)
    first = read_table(database_url, "SELECT organization_id, payload FROM dashboard.revenue_trend_12m "
                                     "ORDER BY organization_id LIMIT 1")
    org, points = first["organization_id"][0], first["payload"][0]["points"]
    assert trend[0] == ["organization", "month", "revenue"]
    assert trend[1:4] == [[org, point["month"], str(point["revenue"])] for point in points[-3:]]
    assert points[-1]["month"] == "2025-04"


def test_customer_acquisition_previews_its_latest_weeks(database_url, redis_url):
    result = dg.materialize(
        [customer_acquisition_cost],
        resources={"postgres": PostgresResource(database_url=database_url), "redis": RedisResource(url=redis_url)},
        run_config={"ops": {"customer_acquisition_cost": {"config": {"as_of": AS_OF.isoformat()}}}},
        tags={"dagster/asset_partition_range_start": FIRST_WEEK.isoformat(),
              "dagster/asset_partition_range_end": LAST_WEEK.isoformat()},
    )
    assert result.success
    preview = _rows(result.asset_materializations_for_node("customer_acquisition_cost")[0].metadata["preview"].value)
    assert preview[0] == ["organization", "week_start", "spend", "new_customers", "cac"]
    first = read_table(database_url, "SELECT id AS organization_id FROM organizations ORDER BY id LIMIT :n",
                       n=PREVIEW_ORGANIZATIONS)["organization_id"].tolist()
    assert [row[0] for row in preview[1:]] == [org for org in first for _ in range(3)]
    assert [row[1] for row in preview[1:4]] == ["2025-03-24", "2025-03-31", "2025-04-07"]
