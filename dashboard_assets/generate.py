"""Deterministic synthetic source data: organizations of an installer business
with their customers, products, orders, jobs, pipeline and warranty claims,
loaded into the source tables (`migrations/source_schema.sql`) with COPY.

Every table of an organization is drawn as numpy arrays from one random
generator seeded with (seed, organization index), formatted to COPY text
vectorized and streamed in. The same arguments give byte-identical rows.

Times are drawn in the organization's local business day and converted to UTC
with its timezone, and the data carries the cases real data has and the
metrics (`docs/metrics.md`) must handle: rows exactly at local midnight and
at 23:59:59.999999, battery capacities that are numbers, numeric strings,
garbage text, JSON null or missing, orders with no items or several jobs,
completed jobs without completed_at, NULL amounts, and so on.

Internally a time is int64 microseconds since the epoch (naive local time or
UTC, as named) and a date is int64 days since the epoch.
"""

import datetime
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from dashboard_assets.automation import capture

US_PER_HOUR = 3_600_000_000
US_PER_DAY = 24 * US_PER_HOUR

TABLES = (
    "organizations", "customers", "products", "orders", "order_items", "opportunities",
    "jobs", "job_time_entries", "warranty_claims", "targets", "marketing_spend",
)

# Organizations cycle through these; NULL means Australia/Sydney.
TIMEZONES = ("Australia/Sydney", "Australia/Perth", "Pacific/Auckland", None, "Australia/Brisbane")

# Mean rows per organization and day at scale 1.
ORDERS_PER_DAY = 30
OPPORTUNITIES_PER_DAY = 20
CLAIMS_PER_DAY = 5
ORPHAN_JOBS_PER_DAY = 1  # plus 0..2 jobs per order, about 14 a day
CUSTOMERS = (2_000, 5_000)

# Rows moved to exactly local midnight and to 23:59:59.999999 per organization and time column.
DAY_EDGE_ROWS = 2

PENDING_STATUSES = np.array(["draft", "confirmed", "picking", "picked", "shipped"], dtype="T")
OPEN_STAGES = np.array(["new", "qualified", "proposal", "negotiation"], dtype="T")
OPEN_PROBABILITIES = np.array([10, 25, 50, 75])
CLAIM_TYPES = np.array(["defect", "damage", "performance", "other"], dtype="T")
CHANNELS = np.array(["google", "facebook", "referral", "events"], dtype="T")
CHANNEL_MEAN_SPEND_CENTS = np.array([40_000, 25_000, 8_000, 30_000])

# The battery specifications every organization carries, one product each.
BATTERY_CAPACITIES = (13.5, "10", "13.5", "13.5kWh", "n/a", None, "missing")
CATEGORIES = ("battery", "inverter", "solar_panel", "accessory", "service")
PRICE_RANGE_DOLLARS = {
    "battery": (7_000, 16_000), "inverter": (1_200, 4_500), "solar_panel": (180, 450),
    "accessory": (40, 600), "service": (150, 1_500),
}

# Monthly targets: metric -> value per day at scale 1 (about what the data
# delivers), and the win rate target, a ratio.
TARGETS_PER_DAY = {
    "revenue": 1_000_000, "kwh_deployed": 230, "delivered_orders": 26,
    "warranty_claims": 5, "active_customers": 25,
}
QUOTE_WIN_RATE_TARGET = 0.4
COUNT_METRICS = ("delivered_orders", "warranty_claims", "active_customers")  # whole-number targets

_STR = np.dtypes.StringDType()
_HEX = np.array([list(f"{b:02x}".encode()) for b in range(256)], dtype=np.uint8)
_UUID_HEX_POSITIONS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def generate(
    conn: psycopg.Connection,
    *,
    orgs: int,
    days: int,
    seed: int,
    end_date: datetime.date | None = None,
    scale: float = 1.0,
) -> dict[str, int]:
    """Load `orgs` organizations with `days` days of history ending at end_date
    (default: today in UTC), committing after each organization; returns rows
    loaded per table.

    `scale` multiplies the per-day volumes (orders, items, opportunities, jobs,
    claims) and the customer base. Organization ids depend on `seed`, so
    generations with different seeds coexist in one database; nothing is
    deleted.

    Synthetic history is loaded like a restore: with triggers off
    (`session_replication_role = replica`, which needs a superuser), and with
    change capture restarted after it, so that the loaded rows are not decoded
    as millions of changes (the change sensor then refreshes everything once).
    """
    if end_date is None:
        end_date = datetime.datetime.now(datetime.UTC).date()
    loaded = dict.fromkeys(TABLES, 0)
    conn.execute("SET session_replication_role = replica")
    try:
        for index in range(orgs):
            for table, columns in _organization_tables(seed, index, days, end_date, scale):
                loaded[table] += _copy(conn, table, columns)
            conn.commit()
    finally:
        conn.rollback()
        conn.execute("RESET session_replication_role")
        conn.commit()
    capture.restart_after_load(conn)
    return loaded


@dataclass(frozen=True)
class _Org:
    """One organization's random generator, timezone and history range."""

    rng: np.random.Generator
    timezone: str | None
    first_day: int
    last_day: int
    scale: float

    @property
    def end_local(self) -> int:
        """The last microsecond of the history, local time."""
        return (self.last_day + 1) * US_PER_DAY - 1

    @functools.cached_property
    def end_utc(self) -> int:
        return int(self.utc(np.array([self.end_local]))[0])

    def utc(self, local: np.ndarray) -> np.ndarray:
        """Local wall-clock times to UTC; a time in a DST gap moves forward
        past it, an ambiguous one is taken as standard time."""
        index = pd.DatetimeIndex(local.astype("datetime64[us]"))
        aware = index.tz_localize(
            self.timezone or "Australia/Sydney", ambiguous=False, nonexistent="shift_forward"
        )
        return aware.tz_convert(None).to_numpy().astype("datetime64[us]").astype(np.int64)

    def event_days(self, mean_per_day: float) -> np.ndarray:
        """The day of each event, Poisson(mean_per_day × scale) events a day."""
        counts = self.rng.poisson(mean_per_day * self.scale, self.last_day - self.first_day + 1)
        return np.repeat(np.arange(self.first_day, self.last_day + 1), counts)

    def local_times(self, days: np.ndarray) -> np.ndarray:
        """A time on each day: mostly business hours 7:00-19:00, some at night."""
        time_of_day = self.rng.integers(7 * US_PER_HOUR, 19 * US_PER_HOUR, len(days))
        night = self.rng.random(len(days)) < 0.08
        time_of_day[night] = self.rng.integers(0, US_PER_DAY, night.sum())
        return days * US_PER_DAY + time_of_day

    def pin_day_edges(self, local: np.ndarray, candidates: np.ndarray | None = None) -> None:
        """Move a few of the candidate times (default: all) to exactly local
        midnight of their day and a few to its last microsecond, in place."""
        pool = np.arange(len(local)) if candidates is None else np.flatnonzero(candidates)
        picked = self.rng.choice(pool, size=min(2 * DAY_EDGE_ROWS, len(pool)), replace=False)
        midnight = local[picked] // US_PER_DAY * US_PER_DAY
        local[picked] = midnight
        local[picked[DAY_EDGE_ROWS:]] += US_PER_DAY - 1

    def some(self, rate: float, candidates: np.ndarray | int) -> np.ndarray:
        """A random `rate` share of the candidate rows (a boolean mask, or an int
        n for all of n rows), at least one when there is any, so that small
        generations carry the rare cases too."""
        if isinstance(candidates, int):
            candidates = np.ones(candidates, dtype=bool)
        chosen = candidates & (self.rng.random(len(candidates)) < rate)
        if candidates.any() and not chosen.any():
            chosen[self.rng.choice(np.flatnonzero(candidates))] = True
        return chosen

    def pick(self, count: np.ndarray) -> np.ndarray:
        """A uniform index in [0, count) for each count (count >= 1)."""
        return (self.rng.random(len(count)) * count).astype(np.int64)

    def later(self, utc: np.ndarray, max_days: float) -> np.ndarray:
        """A time up to max_days after each time, never past the end of the history."""
        lag = (self.rng.random(len(utc)) * max_days * US_PER_DAY).astype(np.int64)
        return np.maximum(utc, np.minimum(utc + lag, self.end_utc))

    def uuids(self, n: int) -> np.ndarray:
        """n canonical lower-case version-4 uuids."""
        raw = self.rng.integers(0, 256, (n, 16), dtype=np.uint8)
        raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
        raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
        text = np.full((n, 36), ord("-"), dtype=np.uint8)
        text[:, _UUID_HEX_POSITIONS] = _HEX[raw].reshape(n, 32)
        return text.view("S36").ravel().astype(_STR)


def _organization_tables(
    seed: int, index: int, days: int, end_date: datetime.date, scale: float
) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """Every table of organization `index` as (table, {column: COPY text})."""
    last_day = (end_date - datetime.date(1970, 1, 1)).days
    org = _Org(
        rng=np.random.default_rng([seed, index]),
        timezone=TIMEZONES[index % len(TIMEZONES)],
        first_day=last_day - days + 1,
        last_day=last_day,
        scale=scale,
    )
    org_id = org.uuids(1)[0]
    yield "organizations", _organization(org, org_id, f"Installer {index + 1} (seed {seed})")
    customers = _customers(org)
    products = _products(org, org_id)
    yield "products", products.columns
    orders = _orders(org, org_id, customers)
    order_items = _order_items(org, org_id, orders, products)  # also sets orders' total_amount
    yield "orders", orders.columns
    yield "order_items", order_items
    yield "customers", _customer_columns(org, org_id, customers, orders)
    yield "opportunities", _opportunities(org, org_id, customers)
    jobs = _jobs(org, org_id, orders, customers)
    yield "jobs", jobs.columns
    yield "job_time_entries", _job_time_entries(org, org_id, jobs)
    yield "warranty_claims", _warranty_claims(org, org_id, orders, customers)
    yield "targets", _targets(org, org_id)
    yield "marketing_spend", _marketing_spend(org, org_id)


@dataclass
class _Rows:
    """A generated table: its COPY columns and the raw arrays later tables use."""

    columns: dict[str, np.ndarray]
    ids: np.ndarray
    utc: np.ndarray | None = None  # created_at
    local: np.ndarray | None = None  # created_at, local time
    customer: np.ndarray | None = None  # index into the customers
    extra: dict[str, np.ndarray] | None = None


def _organization(org: _Org, org_id: str, name: str) -> dict[str, np.ndarray]:
    created = org.utc(np.array([(org.first_day - 1_000) * US_PER_DAY + 9 * US_PER_HOUR]))
    return {
        "id": np.array([org_id], dtype=_STR),
        "name": np.array([name], dtype=_STR),
        "timezone": _nullable(np.array([org.timezone or ""], dtype=_STR), np.array([org.timezone is None])),
        "created_at": _timestamps(created),
        "updated_at": _timestamps(org.later(created, 30)),
    }


def _customers(org: _Org) -> _Rows:
    """The customer base, sorted by created_at: most before the history, the
    rest joining during it. The columns come later (they need the orders)."""
    n = max(20, round(org.rng.integers(*CUSTOMERS) * org.scale))
    before = max(1, int(n * 0.6))
    days = np.concatenate([
        org.rng.integers(org.first_day - 730, org.first_day, before),
        org.rng.integers(org.first_day, org.last_day + 1, n - before),
    ])
    local = np.sort(org.local_times(days))
    return _Rows(columns={}, ids=org.uuids(n), utc=org.utc(local), local=local)


def _existing_customer(org: _Org, customers: _Rows, utc: np.ndarray) -> np.ndarray:
    """For each time, a random customer created at or before it."""
    count = np.maximum(1, np.searchsorted(customers.utc, utc, side="right"))
    return org.pick(count)


def _customer_columns(org: _Org, org_id: str, customers: _Rows, orders: _Rows) -> dict[str, np.ndarray]:
    """Customers with orders are mostly active and carry their last order's
    local date; the others are prospects or inactive."""
    n = len(customers.ids)
    last_order = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last_order, orders.customer, orders.local)
    has_orders = last_order >= 0
    status = np.where(
        has_orders,
        np.where(org.rng.random(n) < 0.85, "active", "inactive"),
        np.where(org.rng.random(n) < 0.7, "prospect", "inactive"),
    ).astype(_STR)
    last_order_utc = np.zeros(n, dtype=np.int64)
    last_order_utc[has_orders] = org.utc(last_order[has_orders])
    first_names = np.array(["Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie"], dtype=_STR)
    last_names = np.array(["Nguyen", "Smith", "Patel", "Brown", "Wilson", "Chen", "Taylor", "Walker"], dtype=_STR)
    names = first_names[org.rng.integers(0, 8, n)] + " " + last_names[org.rng.integers(0, 8, n)]
    return {
        "id": customers.ids,
        "organization_id": _constant(org_id, n),
        "name": names + " " + np.arange(1, n + 1).astype(_STR),
        "status": status,
        "created_at": _timestamps(customers.utc),
        "updated_at": _timestamps(np.maximum(customers.utc, last_order_utc)),
        "last_order_date": _nullable(_dates(np.maximum(last_order, 0) // US_PER_DAY), ~has_orders),
    }


def _products(org: _Org, org_id: str) -> _Rows:
    """15-40 products: one battery per capacity variant of BATTERY_CAPACITIES,
    the rest over all categories (extra batteries with numeric capacities)."""
    n = int(org.rng.integers(15, 41))
    extra = np.array(CATEGORIES)[org.rng.integers(0, len(CATEGORIES), n - len(BATTERY_CAPACITIES))]
    categories = ["battery"] * len(BATTERY_CAPACITIES) + extra.tolist()
    capacities = list(BATTERY_CAPACITIES) + org.rng.choice([5.0, 6.5, 9.8, 10.0, 16.0], len(extra)).tolist()
    specifications, names, skus, cents = [], [], [], []
    for k, (category, capacity) in enumerate(zip(categories, capacities, strict=True)):
        low, high = PRICE_RANGE_DOLLARS[category]
        cents.append(int(org.rng.integers(low * 100, high * 100)))
        spec = {"warranty_years": 10} if category in ("battery", "inverter", "solar_panel") else {}
        if category == "battery" and capacity != "missing":
            spec["capacity_kwh"] = capacity
        specifications.append(json.dumps(spec, sort_keys=True))
        names.append(f"{category.replace('_', ' ').title()} {k + 1}")
        skus.append(f"{category[:3].upper()}-{k + 1:03d}")
    category_array = np.array(categories, dtype=_STR)
    columns = {
        "id": org.uuids(n),
        "organization_id": _constant(org_id, n),
        "sku": np.array(skus, dtype=_STR),
        "name": np.array(names, dtype=_STR),
        "category": category_array,
        "specifications": np.array(specifications, dtype=_STR),
        "unit_price": _money(np.array(cents)),
    }
    # Orders favour batteries, so kWh deployed sees every capacity variant.
    weight = np.where(category_array == "battery", 3.0, 1.0)
    return _Rows(columns=columns, ids=columns["id"], extra={"cents": np.array(cents), "weight": weight / weight.sum()})


def _orders(org: _Org, org_id: str, customers: _Rows) -> _Rows:
    """Orders sorted by created_at. Each has a delivery lag; an order whose
    delivery is still ahead is pending at a status by its progress, older ones
    are mostly delivered (delivered_at days later), some cancelled or stuck.
    total_amount is filled in by `_order_items`."""
    local = org.local_times(org.event_days(ORDERS_PER_DAY))
    org.pin_day_edges(local)
    local.sort()
    n = len(local)
    utc = org.utc(local)
    customer = _existing_customer(org, customers, utc)
    lag = ((0.5 + org.rng.exponential(4.5, n)) * US_PER_DAY).astype(np.int64)
    elapsed = org.end_utc - utc
    in_flight = utc + lag > org.end_utc
    outcome = org.rng.random(n)
    status = np.full(n, "delivered", dtype=_STR)
    status[outcome < 0.10] = "cancelled"
    stuck = (outcome >= 0.10) & (outcome < 0.13)
    status[stuck] = PENDING_STATUSES[org.rng.integers(0, 5, n)][stuck]
    progress = np.minimum(4, elapsed * 5 // lag)
    status[in_flight] = PENDING_STATUSES[progress[in_flight]]
    delivered = status == "delivered"
    delivered_at = utc + lag
    updated = np.where(delivered, delivered_at, org.later(utc, 3))
    updated = np.where(delivered & (org.rng.random(n) < 0.1), org.later(delivered_at, 20), updated)
    columns = {
        "id": org.uuids(n),
        "organization_id": _constant(org_id, n),
        "customer_id": customers.ids[customer],
        "status": status,
        "created_at": _timestamps(utc),
        "updated_at": _timestamps(updated),
        "delivered_at": _nullable(_timestamps(delivered_at), ~delivered),
    }
    return _Rows(columns=columns, ids=columns["id"], utc=utc, local=local, customer=customer,
                 extra={"delivered": delivered})


def _order_items(org: _Org, org_id: str, orders: _Rows, products: _Rows) -> dict[str, np.ndarray]:
    """About 3 items per order (a few orders none); quantity mostly 1-4, a few
    0; line_total = quantity × unit_price, a few NULL. Also sets the orders'
    total_amount: the sum of line totals, some discounted, some NULL."""
    n_orders = len(orders.ids)
    per_order = np.where(org.some(0.03, n_orders), 0, 1 + org.rng.poisson(2.0, n_orders))
    order = np.repeat(np.arange(n_orders), per_order)
    n = len(order)
    product = org.rng.choice(len(products.ids), n, p=products.extra["weight"])
    quantity = org.rng.choice([1, 2, 3, 4], n, p=[0.56, 0.25, 0.12, 0.07])
    quantity[org.some(0.01, n)] = 0
    unit_cents = products.extra["cents"][product]
    line_cents = quantity * unit_cents
    line_null = org.some(0.02, n)
    total = np.bincount(order, weights=np.where(line_null, 0, line_cents), minlength=n_orders).astype(np.int64)
    discounted = org.some(0.10, total > 0)
    total[discounted] -= (total[discounted] * org.rng.uniform(0.02, 0.15, n_orders)[discounted]).astype(np.int64)
    orders.columns["total_amount"] = _nullable(_money(total), org.some(0.04, ~discounted))
    return {
        "id": org.uuids(n),
        "organization_id": _constant(org_id, n),
        "order_id": orders.ids[order],
        "product_id": products.ids[product],
        "quantity": quantity.astype(_STR),
        "unit_price": _money(unit_cents),
        "line_total": _nullable(_money(line_cents), line_null),
    }


def _opportunities(org: _Org, org_id: str, customers: _Rows) -> dict[str, np.ndarray]:
    """Each opportunity closes after a lag (won 40%, lost 60%) unless that is
    still ahead or it went stale; open ones sit at a stage by progress."""
    local = org.local_times(org.event_days(OPPORTUNITIES_PER_DAY))
    org.pin_day_edges(local)
    n = len(local)
    utc = org.utc(local)
    lag = ((1 + org.rng.exponential(20, n)) * US_PER_DAY).astype(np.int64)
    closed = (local + lag <= org.end_local) & (org.rng.random(n) < 0.92)
    won = closed & (org.rng.random(n) < 0.4)
    progress = np.minimum(3, (org.end_local - local) * 4 // lag)
    stage = OPEN_STAGES[progress]
    stage[closed] = np.where(won, "won", "lost")[closed]
    probability = np.where(closed, np.where(won, 100, 0), OPEN_PROBABILITIES[progress])
    probability_null = org.some(0.01, ~closed)
    value = np.exp(org.rng.normal(np.log(1_200_000), 0.6, n)).astype(np.int64)
    close_utc = org.utc(local + lag)
    return {
        "id": org.uuids(n),
        "organization_id": _constant(org_id, n),
        "customer_id": customers.ids[_existing_customer(org, customers, utc)],
        "stage": stage,
        "value": _nullable(_money(value), org.some(0.05, n)),
        "probability": _nullable(probability.astype(_STR), probability_null),
        "expected_close_date": _dates(local // US_PER_DAY + org.rng.integers(14, 91, n)),
        "actual_close_date": _nullable(_dates((local + lag) // US_PER_DAY), ~closed),
        "created_at": _timestamps(utc),
        "updated_at": _timestamps(np.where(closed, close_utc, org.later(utc, 10))),
    }


def _jobs(org: _Org, org_id: str, orders: _Rows, customers: _Rows) -> _Rows:
    """0, 1 or 2 jobs per order (the second weeks later) plus jobs without an
    order. A job is scheduled 1-21 days after its creation and completes on
    that day or a few days later if that is in the past; some are cancelled,
    some completed without completed_at, some stuck in progress."""
    per_order = org.rng.choice([0, 1, 2], len(orders.ids), p=[0.62, 0.30, 0.08])
    order = np.repeat(np.arange(len(orders.ids)), per_order)
    second = np.zeros(len(order), dtype=bool)
    second[1:] = order[1:] == order[:-1]
    lag_days = np.where(org.rng.random(len(order)) < 0.7, org.rng.uniform(0.05, 7, len(order)),
                        org.rng.uniform(7, 42, len(order)))
    lag_days[second] += org.rng.uniform(1, 30, second.sum())
    from_orders = orders.local[order] + (lag_days * US_PER_DAY).astype(np.int64)
    kept = from_orders <= org.end_local
    orphans = org.local_times(org.event_days(ORPHAN_JOBS_PER_DAY))
    order = order[kept]
    local = np.concatenate([from_orders[kept], orphans])
    with_order = np.arange(len(local)) < len(order)
    n = len(local)
    # Move some creation times to the day edges, never before their order's.
    later_day = np.ones(n, dtype=bool)
    later_day[with_order] = local[with_order] // US_PER_DAY > orders.local[order] // US_PER_DAY
    org.pin_day_edges(local, later_day)
    utc = org.utc(local)
    customer = _existing_customer(org, customers, utc)
    customer[with_order] = orders.customer[order]
    order_id = _constant("\\N", n)
    order_id[with_order] = orders.ids[order]

    scheduled = local // US_PER_DAY + 1 + org.rng.integers(0, 21, n)
    days_late = np.where(org.rng.random(n) < 0.15, org.rng.integers(1, 4, n), 0)
    completion = (scheduled + days_late) * US_PER_DAY + org.rng.integers(7 * US_PER_HOUR, 18 * US_PER_HOUR, n)
    cancelled = org.rng.random(n) < 0.04
    completed = ~cancelled & (completion <= org.end_local) & (org.rng.random(n) < 0.97)
    status = np.where(scheduled <= org.last_day, "in_progress", "scheduled").astype(_STR)
    status[completed] = "completed"
    status[cancelled] = "cancelled"
    completed_null = org.some(0.015, completed)
    org.pin_day_edges(completion, completed & ~completed_null)
    completed_utc = org.utc(completion)
    has_completion = completed & ~completed_null
    columns = {
        "id": org.uuids(n),
        "organization_id": _constant(org_id, n),
        "order_id": order_id,
        "customer_id": customers.ids[customer],
        "status": status,
        "scheduled_date": _dates(scheduled),
        "completed_at": _nullable(_timestamps(completed_utc), ~has_completion),
        "created_at": _timestamps(utc),
        "updated_at": _timestamps(np.where(has_completion, completed_utc, org.later(utc, 3))),
    }
    return _Rows(columns=columns, ids=columns["id"], utc=utc, local=local)


def _job_time_entries(org: _Org, org_id: str, jobs: _Rows) -> dict[str, np.ndarray]:
    """0-3 entries per job on its created day or up to a week later, logged
    in the evening; hours in quarter hours, a few NULL."""
    job = np.repeat(np.arange(len(jobs.ids)), org.rng.integers(0, 4, len(jobs.ids)))
    n = len(job)
    entry_day = np.minimum(jobs.local[job] // US_PER_DAY + org.rng.integers(0, 8, n), org.last_day)
    logged = org.utc(entry_day * US_PER_DAY + org.rng.integers(16 * US_PER_HOUR, 21 * US_PER_HOUR, n))
    quarter_hours = org.rng.integers(2, 41, n)
    return {
        "id": org.uuids(n),
        "organization_id": _constant(org_id, n),
        "job_id": jobs.ids[job],
        "hours": _nullable(_money(quarter_hours * 25), org.some(0.02, n)),
        "entry_date": _dates(entry_day),
        "created_at": _timestamps(np.maximum(logged, jobs.utc[job])),
    }


def _warranty_claims(org: _Org, org_id: str, orders: _Rows, customers: _Rows) -> dict[str, np.ndarray]:
    """Claims mostly on an earlier delivered order. A claim is decided after a
    fractional-day lag if that is in the past (mostly resolved, a few of those
    without resolved_at), else pending or approved."""
    local = org.local_times(org.event_days(CLAIMS_PER_DAY))
    org.pin_day_edges(local)
    n = len(local)
    utc = org.utc(local)
    delivered = np.flatnonzero(orders.extra["delivered"])
    earlier = np.searchsorted(orders.utc[delivered], utc)
    with_order = (earlier > 0) & (org.rng.random(n) < 0.85)
    order = delivered[org.pick(earlier[with_order])]
    customer = _existing_customer(org, customers, utc)
    customer[with_order] = orders.customer[order]
    order_id = _constant("\\N", n)
    order_id[with_order] = orders.ids[order]
    lag = ((0.05 + org.rng.exponential(6, n)) * US_PER_DAY).astype(np.int64)
    decided = local + lag <= org.end_local
    outcome = org.rng.random(n)
    status = np.where(outcome < 0.75, "resolved", np.where(outcome < 0.9, "rejected", "approved")).astype(_STR)
    status[~decided] = np.where(outcome < 0.65, "pending", "approved")[~decided]
    resolved = status == "resolved"
    resolved_null = org.some(0.03, resolved)
    decided_utc = np.minimum(utc + lag, org.end_utc)
    return {
        "id": org.uuids(n),
        "organization_id": _constant(org_id, n),
        "customer_id": customers.ids[customer],
        "order_id": order_id,
        "status": status,
        "claim_type": CLAIM_TYPES[org.rng.choice(4, n, p=[0.4, 0.25, 0.25, 0.1])],
        "created_at": _timestamps(utc),
        "updated_at": _timestamps(np.where(decided, decided_utc, org.later(utc, 2))),
        "resolved_at": _nullable(_timestamps(decided_utc), ~resolved | resolved_null),
    }


def _targets(org: _Org, org_id: str) -> dict[str, np.ndarray]:
    """A target per metric for every month of the history (the last one
    being the current month): the daily rate × scale × days in the month
    (counts whole), and the quote_win_rate ratio, each ±15%."""
    months = np.arange(
        np.datetime64(org.first_day, "D").astype("datetime64[M]"),
        np.datetime64(org.last_day, "D").astype("datetime64[M]") + 1,
    )
    period_start = months.astype("datetime64[D]").astype(np.int64)
    period_end = (months + 1).astype("datetime64[D]").astype(np.int64) - 1
    metrics = np.array([*TARGETS_PER_DAY, "quote_win_rate"], dtype=_STR)
    metric = np.tile(np.arange(len(metrics)), len(months))
    month = np.repeat(np.arange(len(months)), len(metrics))
    n = len(metric)
    per_month = np.array(list(TARGETS_PER_DAY.values())) * org.scale * (period_end - period_start + 1)[:, None]
    value = np.column_stack([per_month, np.full(len(months), QUOTE_WIN_RATE_TARGET)]).ravel()
    cents = value * 100 * org.rng.uniform(0.85, 1.15, n)
    counts = np.isin(metrics, COUNT_METRICS)[metric]
    cents[counts] = (cents[counts] / 100).round() * 100
    return {
        "id": org.uuids(n),
        "organization_id": _constant(org_id, n),
        "metric": metrics[metric],
        "period_start": _dates(period_start[month]),
        "period_end": _dates(period_end[month]),
        "target_value": _money(cents.round()),
    }


def _marketing_spend(org: _Org, org_id: str) -> dict[str, np.ndarray]:
    """One row per day and channel; events spend is lumpy (mostly 0)."""
    days = np.repeat(np.arange(org.first_day, org.last_day + 1), len(CHANNELS))
    channel = np.tile(np.arange(len(CHANNELS)), org.last_day - org.first_day + 1)
    n = len(days)
    cents = org.rng.gamma(2.0, CHANNEL_MEAN_SPEND_CENTS[channel] / 2.0 * org.scale)
    events = CHANNELS[channel] == "events"
    cents = np.where(events & (org.rng.random(n) < 0.85), 0, np.where(events, cents * 6, cents))
    return {
        "id": org.uuids(n),
        "organization_id": _constant(org_id, n),
        "spend_date": _dates(days),
        "channel": CHANNELS[channel],
        "amount": _money(cents.astype(np.int64)),
    }


# COPY text formatting: every column an array of StringDType text, NULL as \N.


def _copy(conn: psycopg.Connection, table: str, columns: dict[str, np.ndarray]) -> int:
    """Stream `columns` into `table` with COPY (text format); the row count."""
    names = list(columns)
    rows = columns[names[0]]
    for name in names[1:]:
        rows = rows + "\t" + columns[name]
    rows = rows + "\n"
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, names))
    )
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write("".join(rows.tolist()))
    return len(rows)


def _constant(text: str, n: int) -> np.ndarray:
    return np.full(n, text, dtype=_STR)


def _nullable(text: np.ndarray, null: np.ndarray) -> np.ndarray:
    out = text.astype(_STR, copy=True)
    out[null] = "\\N"
    return out


def _money(cents: np.ndarray) -> np.ndarray:
    """Non-negative integer cents as exact decimal text (1234 -> "12.34")."""
    cents = cents.astype(np.int64)
    return (cents // 100).astype(_STR) + "." + np.strings.zfill((cents % 100).astype(_STR), 2)


def _timestamps(utc: np.ndarray) -> np.ndarray:
    """UTC microseconds as ISO 8601 with a Z."""
    return np.datetime_as_string(utc.astype("datetime64[us]"), unit="us", timezone="UTC").astype(_STR)


def _dates(days: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(days.astype("datetime64[D]")).astype(_STR)
