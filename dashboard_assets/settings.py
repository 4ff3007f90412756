"""The operating contract's environment variables, read in one place."""

import datetime as dt
import os
import re
import urllib.parse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DATABASE_URL = "DASHBOARD_DATABASE_URL"
SOURCE_DATABASE_URL = "DASHBOARD_SOURCE_DATABASE_URL"
REDIS_URL = "DASHBOARD_REDIS_URL"
REDIS_PREFIX = "DASHBOARD_REDIS_PREFIX"
TIMEZONE = "DASHBOARD_TIMEZONE"
HISTORY_START = "DASHBOARD_HISTORY_START"
ALERT_WEBHOOK_URL = "DASHBOARD_ALERT_WEBHOOK_URL"
UI_URL = "DASHBOARD_UI_URL"

DEFAULT_TIMEZONE = "Australia/Sydney"
DEFAULT_REDIS_PREFIX = "dashboard"
DEFAULT_UI_URL = "http://127.0.0.1:3000"


class SettingsError(ValueError):
    """An environment variable of the operating contract has a malformed value."""


def reporting_timezone() -> str:
    """The IANA timezone that schedules and partitions are expressed in."""
    name = os.environ.get(TIMEZONE) or DEFAULT_TIMEZONE
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise SettingsError(f"{TIMEZONE}={name!r} is not an IANA timezone") from error
    return name


def history_start(today: dt.date | None = None) -> dt.date:
    """The first daily partition: DASHBOARD_HISTORY_START, else 1 January two years back."""
    value = os.environ.get(HISTORY_START)
    if not value:
        today = today or dt.date.today()
        return dt.date(today.year - 2, 1, 1)
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise SettingsError(f"{HISTORY_START}={value!r} is not a YYYY-MM-DD date")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as error:
        raise SettingsError(f"{HISTORY_START}={value!r} is not a valid date") from error


def require_http_url(name: str, value: str) -> str:
    """`value` if it is an http(s) URL with a host; the error names the
    variable, not the value (a webhook URL is a secret)."""
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{name} is not an http:// or https:// URL with a host")
    return value
