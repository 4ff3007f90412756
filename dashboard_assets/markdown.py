"""Markdown tables for metadata that the UI renders (previews, reports)."""

from typing import Any


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of `rows`, its columns in the order they first appear."""
    columns = list(dict.fromkeys(column for row in rows for column in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(column)) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return "" if value is None else str(value).replace("|", "\\|")
