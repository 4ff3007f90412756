"""A small markdown preview of what a chart or analytics asset published, for
its materialization in the UI: a few rows of each of the first organizations'
values, so the table stays small whatever the number of tenants."""

from collections.abc import Callable, Iterable
from typing import Any

from dashboard_assets.markdown import markdown_table

PREVIEW_ORGANIZATIONS = 3

# What one organization's published value shows: a few rows of it.
PreviewRows = Callable[[dict[str, Any]], list[dict[str, Any]]]


def pick(items: list[dict[str, Any]], *columns: str) -> list[dict[str, Any]]:
    """Each item's `columns`, in that order (a JSON value's keys come in no useful order)."""
    return [{column: item.get(column) for column in columns} for item in items]


def preview_markdown(published: Iterable[tuple[str, dict[str, Any]]], rows: PreviewRows) -> str:
    """A markdown table of `rows(value)` for the first PREVIEW_ORGANIZATIONS
    (organization, value) pairs by organization id, each row led by its organization."""
    table = [{"organization": org, **row}
             for org, value in sorted(published, key=lambda item: item[0])[:PREVIEW_ORGANIZATIONS]
             for row in rows(value)]
    return markdown_table(table) if table else "Nothing published."
