"""A source on a streaming replica: before a step takes its snapshot there,
the replica must have replayed everything the run has to see.

A pass of the change refresh must see the newest WAL position its pending
work was captured at, and a run the change sensor requests the position it
read the changes up to (the run tag `dashboard/source_lsn`); any other run (a
schedule, a backfill, the UI) must see at least what the primary had flushed
when the step started. A step whose source is the target's database has
nothing to wait for, and on a primary the check holds at once. A replica
still behind after the timeout fails the step with SourceBehind, which the
retry policy retries (retries.py): a change is never consumed by a refresh
of rows older than it.
"""

import time
from collections.abc import Mapping

from dashboard_assets.automation.pgoutput import lsn_text, lsn_value
from dashboard_assets.db import autocommit_connection

SOURCE_POSITION_TAG = "dashboard/source_lsn"
POLL_SECONDS = 0.1
_REPLAYED = "SELECT coalesce(NOT pg_is_in_recovery() OR pg_last_wal_replay_lsn() >= %s::pg_lsn, false)"
_REPLAY_POSITION = "SELECT coalesce(pg_last_wal_replay_lsn()::text, 'nothing')"
_FLUSHED = "SELECT pg_current_wal_flush_lsn()::text"


class SourceBehind(RuntimeError):
    """The source replica has not replayed the WAL position a run must see
    within the timeout."""


def source_position_tag(position: str) -> dict[str, str]:
    """The run tag of a run that must see everything committed up to `position`."""
    return {SOURCE_POSITION_TAG: position}


def wait_for_source(source_url: str, target_url: str, run_tags: Mapping[str, str], timeout_seconds: float) -> None:
    """Return once the source has replayed the run's position (its tag, else
    the target's flushed position now); nothing to wait for when the source
    is the target's database. SourceBehind after `timeout_seconds`."""
    if source_url == target_url:
        return
    position = run_tags.get(SOURCE_POSITION_TAG)
    if position is None:
        with autocommit_connection(target_url) as conn:
            (position,) = conn.execute(_FLUSHED).fetchone()
    wait_until_replayed(source_url, position, timeout_seconds)


def wait_until_replayed(source_url: str, position: str, timeout_seconds: float) -> None:
    """Poll the source until it has replayed `position` (a primary has);
    SourceBehind after `timeout_seconds`."""
    try:
        position = lsn_text(lsn_value(position))
    except ValueError as error:
        raise ValueError(f"{SOURCE_POSITION_TAG}={position!r} is not a WAL position such as 16/B374D848") from error
    deadline = time.monotonic() + timeout_seconds
    with autocommit_connection(source_url) as conn:
        while not conn.execute(_REPLAYED, (position,)).fetchone()[0]:
            if time.monotonic() >= deadline:
                (replayed,) = conn.execute(_REPLAY_POSITION).fetchone()
                raise SourceBehind(
                    f"the source replica has replayed WAL up to {replayed}, not yet {position}, which this run "
                    f"must see, after {timeout_seconds} s: replication lags or replay is paused "
                    "(pg_stat_replication on the primary shows the lag)")
            time.sleep(POLL_SECONDS)
