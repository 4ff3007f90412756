"""The change refresh: one run at a time refreshes everything that captured
changes have left pending (dashboard.pending_days and pending_organizations),
however scattered the days, and keeps doing so while changes keep coming.

A run takes the worker lock (a session advisory lock: a second run waits for
it, and a killed run's lock goes with its connection), then loops: it reads
what is pending, refreshes each rollup's changed days for exactly the
organizations changed on them (consecutive days with the same organizations
in one transaction), then the snapshot, the analytics that read the changed
tables and the warmed cache of the changed organizations, and deletes each
pending row at the version it read once what it wrote is committed. A row
changed again meanwhile has a newer version and stays for the next pass; a
run that fails or is killed leaves what it had not finished pending. Each
refreshed (rollup, day) gets a materialization naming its organizations, and
each pass of a rollup its two checks. Between passes the run sleeps until
the change sensor marks more work (LISTEN), and ends after IDLE_SECONDS
without any, or after LIFETIME_SECONDS, so that a steady stream shows a few
runs an hour on the Runs page, not one per change.
"""

import datetime as dt
import time
import zlib
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import dagster as dg
import psycopg
from psycopg import sql

from dashboard_assets import cache, settings
from dashboard_assets.analytics.assets import ANALYTICS_BY_NAME, refresh_analytics, warm_cache
from dashboard_assets.automation.changes import PENDING_CHANNEL
from dashboard_assets.db import autocommit_connection
from dashboard_assets.replica import SourceBehind, source_position_tag
from dashboard_assets.resources import PostgresResource, RedisResource
from dashboard_assets.rollups.assets import CURRENT_STATE, DAILY_ROLLUPS, check_results
from dashboard_assets.rollups.refresh import RefreshResult, Rollup, refresh

JOB_NAME = "change_refresh"
# A run ends after this long with nothing pending, or this long after it began.
IDLE_SECONDS = 15.0
LIFETIME_SECONDS = 600.0
# How many organization ids a materialization lists (it always counts them).
LISTED_ORGANIZATIONS = 20
WORKER_LOCK = (zlib.crc32(b"dashboard.change_refresh") & 0x7FFFFFFF, 0)
_ROLLUPS = {rollup.name: rollup for rollup in (*DAILY_ROLLUPS, CURRENT_STATE)}
# The undated assets, in the order a pass refreshes them (the cache last: it reads the others).
_UNDATED_ORDER = (CURRENT_STATE.name, *ANALYTICS_BY_NAME, "dashboard_cache")


@dataclass
class PendingWork:
    """What was pending when a pass began: per rollup, the organizations of
    each day; per undated asset, its organizations; the versions read, and
    the newest WAL position the source must have replayed."""

    days: dict[str, dict[dt.date, set[str]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(set)))
    organizations: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    day_versions: dict[str, list[tuple[str, dt.date, int]]] = field(default_factory=lambda: defaultdict(list))
    organization_versions: dict[str, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    source_lsn: str | None = None

    @property
    def empty(self) -> bool:
        return not self.days and not self.organizations

    @property
    def pairs(self) -> int:
        """The (rollup, organization, day) pending."""
        return sum(len(versions) for versions in self.day_versions.values())


def pending_work(conn: psycopg.Connection) -> PendingWork:
    """Everything pending now."""
    work = PendingWork()
    lsns = []
    for rollup, org, day, version, lsn in conn.execute(
            "SELECT rollup, organization_id::text, day, version, source_lsn::text FROM dashboard.pending_days"):
        work.days[rollup][day].add(org)
        work.day_versions[rollup].append((org, day, version))
        lsns.append(lsn)
    for asset, org, version, lsn in conn.execute(
            "SELECT asset, organization_id::text, version, source_lsn::text FROM dashboard.pending_organizations"):
        work.organizations[asset].add(org)
        work.organization_versions[asset].append((org, version))
        lsns.append(lsn)
    if lsns:
        (work.source_lsn,) = conn.execute("SELECT max(lsn)::text FROM unnest(%s::pg_lsn[]) AS lsn", (lsns,)).fetchone()
    return work


def _done_days(conn: psycopg.Connection, rollup: str, versions: list[tuple[str, dt.date, int]]) -> None:
    """Delete the rollup's pending days that still have the versions refreshed."""
    orgs, days, numbers = zip(*versions) if versions else ((), (), ())
    conn.execute(
        "DELETE FROM dashboard.pending_days p USING unnest(%s::uuid[], %s::date[], %s::bigint[]) AS d(org, day, version)"
        " WHERE p.rollup = %s AND p.organization_id = d.org AND p.day = d.day AND p.version = d.version",
        (list(orgs), list(days), list(numbers), rollup))


def _done_organizations(conn: psycopg.Connection, asset: str, versions: list[tuple[str, int]]) -> None:
    """Delete the asset's pending organizations that still have the versions refreshed."""
    orgs, numbers = zip(*versions) if versions else ((), ())
    conn.execute(
        "DELETE FROM dashboard.pending_organizations p USING unnest(%s::uuid[], %s::bigint[]) AS d(org, version)"
        " WHERE p.asset = %s AND p.organization_id = d.org AND p.version = d.version",
        (list(orgs), list(numbers), asset))


def day_groups(days: dict[dt.date, set[str]]) -> list[tuple[dt.date, dt.date, list[str]]]:
    """The changed days as refreshes: consecutive days changed for the same
    organizations form one range, so that a refresh covers exactly the
    changed (organization, day) pairs."""
    groups: list[tuple[dt.date, dt.date, list[str]]] = []
    for day in sorted(days):
        orgs = sorted(days[day])
        if groups and groups[-1][1] + dt.timedelta(days=1) == day and groups[-1][2] == orgs:
            groups[-1] = (groups[-1][0], day, orgs)
        else:
            groups.append((day, day, orgs))
    return groups


def _organizations_metadata(organizations: list[str]) -> dict:
    listed = ", ".join(organizations[:LISTED_ORGANIZATIONS])
    if len(organizations) > LISTED_ORGANIZATIONS:
        listed += f", and {len(organizations) - LISTED_ORGANIZATIONS} more"
    return {"organizations": len(organizations), "organization_ids": listed}


class PendingRefreshFailed(RuntimeError):
    """A pass left work pending: a rollup's refresh did not reconcile."""


def refresh_pending(postgres: PostgresResource, redis: RedisResource | None,
                    log=None) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """One pass: refresh everything pending now, yielding a materialization per
    refreshed (rollup, day) and undated asset, and each rollup's checks.
    Without `redis` the cache is left pending. A rollup whose refresh does not
    reconcile keeps its days pending (its failed check is yielded) and the
    pass goes on with the others, then raises PendingRefreshFailed."""
    with autocommit_connection(postgres.database_url) as conn:
        work = pending_work(conn)
    if work.empty:
        return
    source_url = postgres.source_url_for_run(source_position_tag(work.source_lsn))
    unreconciled = []
    for name, by_day in work.days.items():
        rollup = _ROLLUPS[name]
        results, refreshed = [], []
        for start, end, orgs in day_groups(by_day):
            result = _refresh(rollup, postgres, source_url, orgs, start, end)
            results.append(result)
            if not result.committed:
                unreconciled.append(name)
                break
            refreshed.append((start, end, orgs))
        yield from check_results(rollup, RefreshResult.of_batches(results, sum(r.seconds for r in results), 0),
                                 as_evaluations=True)
        if name in unreconciled:
            continue
        for start, end, orgs in refreshed:
            for offset in range((end - start).days + 1):
                yield dg.AssetMaterialization(asset_key=name, partition=(start + dt.timedelta(days=offset)).isoformat(),
                                              metadata=_organizations_metadata(orgs))
        with autocommit_connection(postgres.database_url) as conn:
            _done_days(conn, name, work.day_versions[name])
    store = redis.cache() if redis is not None else None
    for asset in _UNDATED_ORDER:
        orgs = sorted(work.organizations.get(asset, ()))
        if not orgs:
            continue
        try:
            metadata = yield from _refresh_undated(asset, postgres, source_url, store, orgs)
        except cache.UNAVAILABLE as error:
            if log:
                log.warning(f"{asset} of {len(orgs)} organizations left pending, Redis unavailable: {error}")
            continue
        if metadata is None:
            continue
        yield dg.AssetMaterialization(asset_key=asset, metadata=metadata | _organizations_metadata(orgs))
        with autocommit_connection(postgres.database_url) as conn:
            _done_organizations(conn, asset, work.organization_versions[asset])
    if unreconciled:
        raise PendingRefreshFailed(f"{', '.join(unreconciled)} did not reconcile with the source: their changed "
                                   "days stay pending and keep their previous rows")


def _refresh(rollup: Rollup, postgres: PostgresResource, source_url: str, orgs: list[str],
             start: dt.date | None = None, end: dt.date | None = None) -> RefreshResult:
    return refresh(rollup, source_url=source_url, target_url=postgres.database_url, start=start, end=end,
                   organizations=orgs, organization_days_per_batch=settings.batch_organization_days(),
                   concurrent_batches=settings.concurrent_batches())


def _refresh_undated(asset: str, postgres: PostgresResource, source_url: str, store: cache.DashboardCache | None,
                     orgs: list[str]):
    """Refresh an undated asset for `orgs`; yields the snapshot's checks and
    returns the materialization's metadata (None: left pending)."""
    if asset == CURRENT_STATE.name:
        result = _refresh(CURRENT_STATE, postgres, source_url, orgs)
        yield from check_results(CURRENT_STATE, result, as_evaluations=True)
        return {"duration_seconds": round(result.seconds, 3)} if result.committed else None
    if store is None:
        return None
    if asset == "dashboard_cache":
        return warm_cache(postgres.database_url, store, orgs, None)
    spec = ANALYTICS_BY_NAME[asset]
    return refresh_analytics(spec, database_url=postgres.database_url,
                             source_url=source_url if spec.reads_source else postgres.database_url,
                             store=store, organizations=orgs, as_of=None)


@contextmanager
def worker_lock(database_url: str, timeout_seconds: float) -> Iterator[psycopg.Connection]:
    """Hold the change refresh's worker lock (waiting up to `timeout_seconds`
    while another run holds it) on a connection that also listens for pending
    work; TimeoutError when it stays taken."""
    with autocommit_connection(database_url) as conn:
        deadline = time.monotonic() + timeout_seconds
        while not conn.execute("SELECT pg_try_advisory_lock(%s, %s)", WORKER_LOCK).fetchone()[0]:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"another change refresh run held the worker lock for {timeout_seconds} s")
            time.sleep(0.5)
        try:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(PENDING_CHANNEL)))
            yield conn
        finally:
            try:
                conn.execute(sql.SQL("UNLISTEN {}; SELECT pg_advisory_unlock_all()").format(
                    sql.Identifier(PENDING_CHANNEL)))
            except psycopg.Error:
                conn.close()  # never back to the pool holding the lock
                raise


def worker_running(conn: psycopg.Connection) -> bool:
    """Whether a change refresh run holds the worker lock now."""
    return conn.execute(
        "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND database = ("
        " SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND classid = %s AND objid = %s AND objsubid = 2 AND granted)", WORKER_LOCK).fetchone()[0]


class ChangeRefreshConfig(dg.Config):
    """How long a change refresh run goes on: it ends after `idle_seconds` with
    nothing pending (0: after one pass), or after `lifetime_seconds`."""

    idle_seconds: float = IDLE_SECONDS
    lifetime_seconds: float = LIFETIME_SECONDS


@dg.op(
    description="Refreshes what captured changes left pending, pass after pass while changes keep coming.",
    out={},
)
def refresh_pending_changes(context: dg.OpExecutionContext, config: ChangeRefreshConfig, postgres: PostgresResource,
                            redis: RedisResource):
    """The change refresh's one step: under the worker lock, a pass over
    everything pending whenever the change sensor marks more, until idle."""
    began = time.monotonic()
    passes = 0
    with worker_lock(postgres.database_url, config.lifetime_seconds) as listener:
        idle_since = time.monotonic()
        while True:
            try:
                for event in refresh_pending(postgres, redis, context.log):
                    yield event
                    idle_since = time.monotonic()
            except SourceBehind as error:  # left pending for a later pass, or the next run
                context.log.warning(str(error))
            passes += 1
            now = time.monotonic()
            if now - began >= config.lifetime_seconds or now - idle_since >= config.idle_seconds:
                break
            # Sleep until more work is marked (or for the rest of the idle time).
            for _ in listener.notifies(timeout=config.idle_seconds - (now - idle_since), stop_after=1):
                pass
    context.log.info(f"{passes} passes in {time.monotonic() - began:.0f} s")


@dg.job(
    name=JOB_NAME,
    description="Refreshes the (rollup, organization, day) and organizations that captured source changes "
                "left pending; requested by source_changes_sensor, one run at a time.",
    tags={"dagster/max_retries": "0"},
)
def change_refresh_job():
    refresh_pending_changes()
