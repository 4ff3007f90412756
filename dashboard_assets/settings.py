"""The operating contract's environment variables, read in one place."""

import datetime as dt
import os
import re
import urllib.parse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DATABASE_URL = "DASHBOARD_DATABASE_URL"
SOURCE_DATABASE_URL = "DASHBOARD_SOURCE_DATABASE_URL"
SOURCE_REPLAY_TIMEOUT = "DASHBOARD_SOURCE_REPLAY_TIMEOUT_SECONDS"
REDIS_URL = "DASHBOARD_REDIS_URL"
REDIS_PREFIX = "DASHBOARD_REDIS_PREFIX"
TIMEZONE = "DASHBOARD_TIMEZONE"
HISTORY_START = "DASHBOARD_HISTORY_START"
BATCH_ORGANIZATION_DAYS = "DASHBOARD_BATCH_ORGANIZATION_DAYS"
CONCURRENT_BATCHES = "DASHBOARD_CONCURRENT_BATCHES"
ALERT_WEBHOOK_URL = "DASHBOARD_ALERT_WEBHOOK_URL"
UI_URL = "DASHBOARD_UI_URL"
RUN_RETENTION_DAYS = "DASHBOARD_RUN_RETENTION_DAYS"

DEFAULT_TIMEZONE = "Australia/Sydney"
DEFAULT_REDIS_PREFIX = "dashboard"
DEFAULT_UI_URL = "http://127.0.0.1:3000"
# A refresh's batch holds at most this many organization-days (whole days):
# 730 days of up to 136 organizations are one transaction, and 1,000
# organizations are refreshed 100 days at a time.
DEFAULT_BATCH_ORGANIZATION_DAYS = 100_000
# Batches of one refresh that run at once, each on a connection of its own.
DEFAULT_CONCURRENT_BATCHES = 2
# How long a step waits for a replica source to replay what its run must see.
DEFAULT_SOURCE_REPLAY_TIMEOUT_SECONDS = 60
# Finished runs are kept this many days (those holding a latest event, for ever).
DEFAULT_RUN_RETENTION_DAYS = 7


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


def positive_int(name: str, default: int) -> int:
    """The positive whole number in variable `name`, else `default`."""
    value = os.environ.get(name)
    if not value:
        return default
    if not re.fullmatch(r"[1-9]\d{0,8}", value):
        raise SettingsError(f"{name}={value!r} is not a positive whole number")
    return int(value)


def batch_organization_days() -> int:
    """The organization-days one transaction of a refresh holds at most."""
    return positive_int(BATCH_ORGANIZATION_DAYS, DEFAULT_BATCH_ORGANIZATION_DAYS)


def concurrent_batches() -> int:
    """How many batches of one refresh run at once."""
    return positive_int(CONCURRENT_BATCHES, DEFAULT_CONCURRENT_BATCHES)


def run_retention_days() -> int:
    """How many days finished runs are kept."""
    return positive_int(RUN_RETENTION_DAYS, DEFAULT_RUN_RETENTION_DAYS)


def require_http_url(name: str, value: str) -> str:
    """`value` if it is an http(s) URL with a host; the error names the
    variable, not the value (a webhook URL is a secret)."""
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{name} is not an http:// or https:// URL with a host")
    return value
