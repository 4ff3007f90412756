"""The operating contract's environment variables, read in one place."""

import datetime as dt
import os
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DATABASE_URL = "DASHBOARD_DATABASE_URL"
SOURCE_DATABASE_URL = "DASHBOARD_SOURCE_DATABASE_URL"
SOURCE_REPLAY_TIMEOUT = "DASHBOARD_SOURCE_REPLAY_TIMEOUT_SECONDS"
REDIS_URL = "DASHBOARD_REDIS_URL"
REDIS_PREFIX = "DASHBOARD_REDIS_PREFIX"
TIMEZONE = "DASHBOARD_TIMEZONE"
HISTORY_START = "DASHBOARD_HISTORY_START"

DEFAULT_TIMEZONE = "Australia/Sydney"
DEFAULT_REDIS_PREFIX = "dashboard"
# How long a step waits for a replica source to replay what its run must see.
DEFAULT_SOURCE_REPLAY_TIMEOUT_SECONDS = 60


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
