-- One JSON value per organization: revenue and units per product category
-- over the delivered orders of its last 30 local days (today included), from
-- the source tables (the rollups do not keep categories). Set-based in one
-- pass over every organization asked for: the window's delivered orders, their
-- items summed per (organization, category) (each item belongs to one order,
-- so nothing is counted twice), then one array per organization.
WITH windows AS NOT MATERIALIZED (
    SELECT organization_id, today,
           (today - 29)::timestamp AT TIME ZONE tz AS window_start,
           (today + 1)::timestamp AT TIME ZONE tz AS window_end
    FROM dashboard.organization_today(%(as_of)s, %(organization_ids)s::uuid[])
),
delivered AS (
    SELECT o.organization_id, o.id
    FROM windows w
    JOIN orders o ON o.organization_id = w.organization_id AND o.status = 'delivered'
                 AND o.created_at >= w.window_start AND o.created_at < w.window_end
),
mix AS (
    SELECT d.organization_id, p.category, sum(oi.line_total) AS revenue, sum(oi.quantity) AS units
    FROM delivered d
    JOIN order_items oi ON oi.organization_id = d.organization_id AND oi.order_id = d.id
    JOIN products p ON p.organization_id = oi.organization_id AND p.id = oi.product_id
    GROUP BY d.organization_id, p.category
),
categories AS (
    SELECT organization_id,
           jsonb_agg(jsonb_build_object('category', category, 'revenue', round(revenue, 2), 'units', units)
                     ORDER BY category) AS categories
    FROM mix
    GROUP BY organization_id
)
SELECT w.organization_id,
       jsonb_build_object(
           'organization_id', w.organization_id,
           'date_from', w.today - 29,
           'date_to', w.today,
           'categories', COALESCE(c.categories, '[]'::jsonb),
           'computed_at', dashboard.utc_iso(now())),
       now()
FROM windows w
LEFT JOIN categories c ON c.organization_id = w.organization_id
