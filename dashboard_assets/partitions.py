"""The daily partitions every rollup shares."""

import datetime as dt

import dagster as dg

from dashboard_assets import settings

# One partition per day of the reporting timezone, from the history start up to
# and including today (today's partition fills in as the day goes on).
daily_partitions_def = dg.DailyPartitionsDefinition(
    start_date=settings.history_start().isoformat(),
    timezone=settings.reporting_timezone(),
    end_offset=1,
)


def partition_days() -> tuple[dt.date, dt.date]:
    """The first and the last day that has a partition now."""
    return (dt.date.fromisoformat(daily_partitions_def.get_first_partition_key()),
            dt.date.fromisoformat(daily_partitions_def.get_last_partition_key()))
