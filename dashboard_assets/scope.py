"""Which organizations a run refreshes: every one (schedules, backfills, the
UI), or only those named in the run's tag `dashboard/organizations` (an
operator's run for a few tenants, comma-separated ids)."""

from collections.abc import Mapping

from psycopg import sql

from dashboard_assets import cache

ORGANIZATIONS_TAG = "dashboard/organizations"
# The rows of the named organizations (every row when the parameter is NULL).
ORGANIZATIONS_FILTER = sql.SQL(
    "(%(organization_ids)s::uuid[] IS NULL OR organization_id = ANY(%(organization_ids)s::uuid[]))"
)


def tagged_organizations(run_tags: Mapping[str, str]) -> list[str] | None:
    """The organizations a run with these tags refreshes (canonical ids, or an
    error for anything else); None for every organization."""
    named = run_tags.get(ORGANIZATIONS_TAG)
    return [cache.organization_id(org) for org in named.split(",")] if named else None
