"""The change refresh: one run at a time refreshes everything that captured
changes have left pending (dashboard.pending_days and pending_organizations),
however scattered the days, and keeps doing so while changes keep coming.

A run takes the worker lock (a session advisory lock: a second run waits for
it, and a killed run's lock goes with its connection), then works in passes.
A pass reads what is pending, refreshes each rollup's changed days for
exactly the organizations changed on them (consecutive days with the same
organizations in one transaction), then, for the organizations pending
longest (ORGANIZATIONS_PER_PASS), the snapshot, the warmed cache and the
charts that read the changed tables; a chart whose table a scheduled run is
replacing stays pending for a pass after that run, instead of waiting for it.
Every REPORT_SECONDS while changes keep coming, and as soon as they stop, a
report tells Dagster what the passes refreshed: a materialization per
refreshed (rollup, day) naming its organizations, each rollup's two checks,
a materialization per undated asset; then it deletes each pending row at the
version refreshed. A row changed again meanwhile has a newer version and
stays for the next pass; a run that fails or is killed leaves what it had
not reported pending. Between passes (at most one every MIN_PASS_SECONDS)
the run reads the changes itself and marks them pending, as the change
sensor does while no run works: a change is refreshed within a second or two
of its commit instead of waiting for the sensor's next tick. It ends after
IDLE_SECONDS without changes, or after LIFETIME_SECONDS, so that a steady
stream shows a few runs an hour on the Runs page, not one per change. A
capture restart or a TRUNCATE ends it: the change sensor then requests the
refresh of everything.
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

from dashboard_assets import cache, settings
from dashboard_assets.analytics.assets import ANALYTICS_BY_NAME, refresh_analytics, warm_cache
from dashboard_assets.analytics.publish import TableBusy
from dashboard_assets.automation.changes import capture_and_mark
from dashboard_assets.db import autocommit_connection
from dashboard_assets.replica import SourceBehind, source_position_tag
from dashboard_assets.resources import PostgresResource, RedisResource
from dashboard_assets.rollups.assets import CURRENT_STATE, DAILY_ROLLUPS, check_results
from dashboard_assets.rollups.refresh import RefreshResult, Rollup, refresh

JOB_NAME = "change_refresh"
# A run ends after this long with nothing pending, or this long after it began.
IDLE_SECONDS = 15.0
LIFETIME_SECONDS = 600.0
# What passes refreshed is reported this often while changes keep coming.
REPORT_SECONDS = 30.0
# Passes begin at most this often: what changes meanwhile waits for the next.
MIN_PASS_SECONDS = 1.0
# How many organization ids a materialization lists (it always counts them).
LISTED_ORGANIZATIONS = 20
WORKER_LOCK = (zlib.crc32(b"dashboard.change_refresh") & 0x7FFFFFFF, 0)
# A pass refreshes the undated assets of at most this many organizations
# each (those pending longest): the rest wait for the next pass, so that a
# backlog never holds a pass, its report and the next read for minutes.
ORGANIZATIONS_PER_PASS = 50
_ROLLUPS = {rollup.name: rollup for rollup in (*DAILY_ROLLUPS, CURRENT_STATE)}
# The undated assets, in the order a pass refreshes them: the snapshot, the
# read path's warmed cache (it reads the rollups and the snapshot), then the
# charts, which nothing else reads.
_UNDATED_ORDER = (CURRENT_STATE.name, "dashboard_cache", *ANALYTICS_BY_NAME)


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


@dataclass
class _Unreported:
    """What passes refreshed since the last report: per rollup, the
    organizations of each refreshed day, the refreshes' results (for its
    checks) and the pending versions done; per undated asset, its
    organizations, its latest metadata and the versions done."""

    days: dict[str, dict[dt.date, set[str]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(set)))
    results: dict[str, list[RefreshResult]] = field(default_factory=lambda: defaultdict(list))
    day_versions: dict[str, set[tuple[str, dt.date, int]]] = field(default_factory=lambda: defaultdict(set))
    organizations: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    metadata: dict[str, dict] = field(default_factory=dict)
    organization_versions: dict[str, set[tuple[str, int]]] = field(default_factory=lambda: defaultdict(set))

    @property
    def empty(self) -> bool:
        return not self.results and not self.metadata


class ChangeRefresh:
    """The passes of one change refresh run and their reports.

    A pass refreshes what is pending and not yet refreshed at its version; a
    report yields, for everything refreshed since the last one, a
    materialization per (rollup, day) naming the union of its organizations,
    each rollup's two checks over all its refreshes, and a materialization per
    undated asset, and only then deletes those pending rows at the versions
    refreshed. Refreshes run as soon as changes come; the events that tell the
    UI about them are written once per report, not once per pass. A run
    killed before its report leaves the rows pending: the next run refreshes
    and reports them. A refresh that does not reconcile is reported at once
    (its days stay pending) and fails the run at its end."""

    def __init__(self, postgres: PostgresResource, redis: RedisResource | None, log=None):
        self._postgres = postgres
        self._store = redis.cache() if redis is not None else None
        self._log = log
        self._unreported = _Unreported()
        self._busy: set[str] = set()  # the tables found busy, logged once a run
        self.unreconciled: list[str] = []

    def refresh(self) -> tuple[bool, list[dg.AssetCheckEvaluation]]:
        """One pass: whether it found work, and the failed checks to report at once."""
        with autocommit_connection(self._postgres.database_url) as conn:
            work = pending_work(conn)
        done = self._unreported
        days: dict[str, dict[dt.date, set[str]]] = defaultdict(lambda: defaultdict(set))
        new_days: dict[str, list[tuple[str, dt.date, int]]] = defaultdict(list)
        for name, versions in work.day_versions.items():
            for org, day, version in versions:
                if (org, day, version) not in done.day_versions[name]:
                    days[name][day].add(org)
                    new_days[name].append((org, day, version))
        new_organizations = {asset: sorted((v for v in versions if v not in done.organization_versions[asset]),
                                           key=lambda v: v[1])[:ORGANIZATIONS_PER_PASS]
                             for asset, versions in work.organization_versions.items()}
        new_organizations = {asset: versions for asset, versions in new_organizations.items() if versions}
        if not days and not new_organizations:
            return False, []
        source_url = self._postgres.source_url_for_run(source_position_tag(work.source_lsn))
        failed: list[dg.AssetCheckEvaluation] = []
        for name, by_day in days.items():
            rollup = _ROLLUPS[name]
            refreshed = set()
            for start, end, orgs in day_groups(by_day):
                result = _refresh(rollup, self._postgres, source_url, orgs, start, end)
                if not result.committed:
                    failed += check_results(rollup, result, as_evaluations=True)
                    self.unreconciled.append(name)
                    break
                done.results[name].append(result)
                for offset in range((end - start).days + 1):
                    day = start + dt.timedelta(days=offset)
                    refreshed.add(day)
                    done.days[name][day].update(orgs)
            done.day_versions[name].update(v for v in new_days[name] if v[1] in refreshed)
        for asset in _UNDATED_ORDER:
            if asset not in new_organizations:
                continue
            orgs = sorted({org for org, _ in new_organizations[asset]})
            try:
                metadata = self._refresh_undated(asset, source_url, orgs, failed)
            except cache.UNAVAILABLE as error:
                if self._log:
                    self._log.warning(f"{asset} of {len(orgs)} organizations left pending, Redis unavailable: {error}")
                continue
            except TableBusy:  # a scheduled run replaces the whole table: the next pass after it
                if self._log and asset not in self._busy:
                    self._log.info(f"{asset} left pending while another run replaces its table")
                self._busy.add(asset)
                continue
            if metadata is not None:
                done.metadata[asset] = metadata
                done.organizations[asset].update(orgs)
                done.organization_versions[asset].update(new_organizations[asset])
        return True, failed

    def _refresh_undated(self, asset: str, source_url: str, orgs: list[str],
                         failed: list[dg.AssetCheckEvaluation]) -> dict | None:
        """Refresh an undated asset for `orgs`; the materialization's metadata
        (None: left pending)."""
        if asset == CURRENT_STATE.name:
            result = _refresh(CURRENT_STATE, self._postgres, source_url, orgs)
            if not result.committed:
                failed += check_results(CURRENT_STATE, result, as_evaluations=True)
                self.unreconciled.append(asset)
                return None
            self._unreported.results[asset].append(result)
            return {"duration_seconds": round(result.seconds, 3)}
        if self._store is None:
            return None
        if asset == "dashboard_cache":
            return warm_cache(self._postgres.database_url, self._store, orgs, None)
        spec = ANALYTICS_BY_NAME[asset]
        return refresh_analytics(spec, database_url=self._postgres.database_url,
                                 source_url=source_url if spec.reads_source else self._postgres.database_url,
                                 store=self._store, organizations=orgs, as_of=None, wait=False)

    def raise_if_unreconciled(self) -> None:
        if self.unreconciled:
            raise PendingRefreshFailed(f"{', '.join(self.unreconciled)} did not reconcile with the source: their "
                                       "changed days stay pending and keep their previous rows")

    def report(self) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
        """The events of everything refreshed since the last report; then its
        pending rows are deleted at the versions refreshed."""
        done, self._unreported = self._unreported, _Unreported()
        if done.empty:
            return
        for name, by_day in done.days.items():
            for day in sorted(by_day):
                yield dg.AssetMaterialization(asset_key=name, partition=day.isoformat(),
                                              metadata=_organizations_metadata(sorted(by_day[day])))
        for name, results in done.results.items():
            yield from check_results(_ROLLUPS[name], RefreshResult.of_batches(
                results, sum(r.seconds for r in results), 0), as_evaluations=True)
        for asset in _UNDATED_ORDER:
            if asset in done.metadata:
                yield dg.AssetMaterialization(asset_key=asset, metadata=done.metadata[asset]
                                              | _organizations_metadata(sorted(done.organizations[asset])))
        with autocommit_connection(self._postgres.database_url) as conn:
            for name, versions in done.day_versions.items():
                _done_days(conn, name, list(versions))
            for asset, versions in done.organization_versions.items():
                _done_organizations(conn, asset, list(versions))


def refresh_pending(postgres: PostgresResource, redis: RedisResource | None,
                    log=None) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """One pass over everything pending and its report. Without `redis` what
    publishes to Redis is left pending. Raises PendingRefreshFailed after
    reporting when a rollup did not reconcile (its days stay pending)."""
    change_refresh = ChangeRefresh(postgres, redis, log)
    _, failed = change_refresh.refresh()
    yield from failed
    yield from change_refresh.report()
    change_refresh.raise_if_unreconciled()


def _refresh(rollup: Rollup, postgres: PostgresResource, source_url: str, orgs: list[str],
             start: dt.date | None = None, end: dt.date | None = None) -> RefreshResult:
    return refresh(rollup, source_url=source_url, target_url=postgres.database_url, start=start, end=end,
                   organizations=orgs, organization_days_per_batch=settings.batch_organization_days(),
                   concurrent_batches=settings.concurrent_batches())


@contextmanager
def worker_lock(database_url: str, timeout_seconds: float) -> Iterator[psycopg.Connection]:
    """Hold the change refresh's worker lock (waiting up to `timeout_seconds`
    while another run holds it) on a connection, which reads the changes
    while the run works; TimeoutError when it stays taken."""
    with autocommit_connection(database_url) as conn:
        deadline = time.monotonic() + timeout_seconds
        while not conn.execute("SELECT pg_try_advisory_lock(%s, %s)", WORKER_LOCK).fetchone()[0]:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"another change refresh run held the worker lock for {timeout_seconds} s")
            time.sleep(0.5)
        try:
            yield conn
        finally:
            try:
                conn.execute("SELECT pg_advisory_unlock_all()")
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
    nothing pending (0: after one pass), or after `lifetime_seconds`. What it
    refreshed is reported (materializations, checks) every `report_seconds`
    while changes keep coming, and as soon as they stop."""

    idle_seconds: float = IDLE_SECONDS
    lifetime_seconds: float = LIFETIME_SECONDS
    report_seconds: float = REPORT_SECONDS


@dg.op(
    description="Refreshes what captured changes left pending, pass after pass while changes keep coming.",
    out={},
)
def refresh_pending_changes(context: dg.OpExecutionContext, config: ChangeRefreshConfig, postgres: PostgresResource,
                            redis: RedisResource):
    """The change refresh's one step: under the worker lock, passes over
    everything pending, reading the changes itself between them, until idle."""
    began = time.monotonic()
    passes = 0
    change_refresh = ChangeRefresh(postgres, redis, context.log)
    with worker_lock(postgres.database_url, config.lifetime_seconds) as conn:
        idle_since = reported_at = time.monotonic()
        while True:
            pass_began = time.monotonic()
            try:
                found, failed = change_refresh.refresh()
            except SourceBehind as error:  # left pending for a later pass, or the next run
                context.log.warning(str(error))
                found, failed = False, []
            yield from failed
            now = time.monotonic()
            if found:
                passes += 1
                idle_since = now
            ending = bool(failed) or now - began >= config.lifetime_seconds or now - idle_since >= config.idle_seconds
            if ending or not found or now - reported_at >= config.report_seconds:
                yield from change_refresh.report()
                reported_at = now
            if ending:
                break
            # At most a pass a second; meanwhile and then, read the changes until some come (or until idle).
            time.sleep(max(0.0, MIN_PASS_SECONDS - (time.monotonic() - pass_began)))
            changes, _ = capture_and_mark(conn, None, max(0.0, config.idle_seconds - (time.monotonic() - idle_since)),
                                          redis, context.log)
            if changes.restart_reason or changes.truncated:
                context.log.warning("change capture restarted or a source table was truncated: left to "
                                    "source_changes_sensor, which refreshes every day of every organization")
                yield from change_refresh.report()
                break
    context.log.info(f"{passes} passes in {time.monotonic() - began:.0f} s")
    change_refresh.raise_if_unreconciled()


@dg.job(
    name=JOB_NAME,
    description="Refreshes the (rollup, organization, day) and organizations that captured source changes "
                "left pending; requested by source_changes_sensor, one run at a time.",
    tags={"dagster/max_retries": "0"},
)
def change_refresh_job():
    refresh_pending_changes()
