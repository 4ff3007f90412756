"""The SQL the pipeline runs: every value a parameter, and every join in the
refresh queries on organization_id (so they run unchanged on Citus with the
source tables distributed by organization_id)."""

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dashboard_assets"
SQL_FILES = sorted(p for p in PACKAGE.rglob("*.sql") if p.name != "source_schema.sql")
REFRESH_SQL_FILES = sorted([*PACKAGE.glob("rollups/sql/*.sql"), *PACKAGE.glob("analytics/sql/*.sql")])
# Joins to sets that are not tenant tables (generated series, unnested arrays,
# per-organization windows that are themselves keyed by organization).
_NOT_A_TENANT_TABLE = re.compile(r"JOIN\s+(LATERAL|dashboard\.organization_(today|windows|days)|generate_series|unnest|\()",
                                 re.IGNORECASE)


def _joins(sql: str) -> list[str]:
    """Each JOIN clause up to the next JOIN, WHERE, GROUP or closing paren line."""
    sql = re.sub(r"--[^\n]*", "", sql)
    return [m.group(0) for m in re.finditer(r"\bJOIN\b.*?(?=\bJOIN\b|\bWHERE\b|\bGROUP BY\b|\n\)|\Z)", sql, re.S | re.I)]


@pytest.mark.parametrize("path", REFRESH_SQL_FILES, ids=lambda p: p.name)
def test_every_join_of_tenant_tables_includes_organization_id(path):
    for join in _joins(path.read_text()):
        if _NOT_A_TENANT_TABLE.match(join) or re.match(r"JOIN\s+\w+\s+\w+\s+ON\s+true", join, re.I):
            continue
        assert "organization_id" in join, f"{path.name}: {join[:200]}"


@pytest.mark.parametrize("path", SQL_FILES, ids=lambda p: p.name)
def test_values_are_parameters_not_formatted_in(path):
    text = path.read_text()
    assert "{" not in text.replace("{metric}", "").replace("{label}", "").replace("{scale}", "").replace("'{}'", "")
    assert "%s" not in text.replace("%(", "")  # named parameters only
