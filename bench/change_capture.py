"""What change capture costs a bulk load: one INSERT of 100,000 order items
into the generated database, with the capture triggers and without them
(session_replication_role = replica), alternating, each rolled back."""

import statistics
import time

import psycopg

from dashboard_assets.db import libpq_url

ITEMS = 100_000
_BULK_INSERT = """
    INSERT INTO order_items (id, organization_id, order_id, product_id, quantity, unit_price, line_total)
    SELECT gen_random_uuid(), o.organization_id, o.id, p.id, 1, 100, 100
    FROM orders o
    CROSS JOIN generate_series(1, 10) AS copies
    JOIN LATERAL (SELECT id FROM products WHERE organization_id = o.organization_id ORDER BY id LIMIT 1) p ON true
    LIMIT %s
"""


def measure(url: str, repeat: int) -> dict:
    timings: dict[str, list[float]] = {"with_triggers": [], "without_triggers": []}
    with psycopg.connect(libpq_url(url)) as conn:
        for _ in range(repeat):
            for variant in timings:
                if variant == "without_triggers":
                    conn.execute("SET session_replication_role = replica")
                began = time.perf_counter()
                inserted = conn.execute(_BULK_INSERT, (ITEMS,)).rowcount
                timings[variant].append(time.perf_counter() - began)
                assert inserted == ITEMS, inserted
                conn.rollback()
                conn.execute("RESET session_replication_role")
    with_triggers = statistics.median(timings["with_triggers"])
    without = statistics.median(timings["without_triggers"])
    return {
        "bulk_insert_rows": ITEMS,
        "bulk_insert_with_triggers_seconds": round(with_triggers, 3),
        "bulk_insert_without_triggers_seconds": round(without, 3),
        "change_capture_overhead_ratio": round(with_triggers / without, 2),
    }
