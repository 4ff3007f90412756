"""Which organizations a run refreshes: every one (schedules, backfills, the
UI), or only those the change sensor names in the run's tag."""

from collections.abc import Iterable, Mapping

from psycopg import sql

from dashboard_assets import cache

ORGANIZATIONS_TAG = "dashboard/organizations"
# A change-driven run names at most this many organizations; when more changed,
# it refreshes every organization (then cheaper than the long list).
MAX_NAMED_ORGANIZATIONS = 100
# The rows of the named organizations (every row when the parameter is NULL).
ORGANIZATIONS_FILTER = sql.SQL(
    "(%(organization_ids)s::uuid[] IS NULL OR organization_id = ANY(%(organization_ids)s::uuid[]))"
)


def organizations_tag(organizations: Iterable[str]) -> dict[str, str]:
    """The run tags of a run that refreshes `organizations`; none (every
    organization) above MAX_NAMED_ORGANIZATIONS."""
    named = sorted(set(organizations))
    return {ORGANIZATIONS_TAG: ",".join(named)} if 0 < len(named) <= MAX_NAMED_ORGANIZATIONS else {}


def tagged_organizations(run_tags: Mapping[str, str]) -> list[str] | None:
    """The organizations a run with these tags refreshes (canonical ids, or an
    error for anything else); None for every organization."""
    named = run_tags.get(ORGANIZATIONS_TAG)
    return [cache.organization_id(org) for org in named.split(",")] if named else None
