-- One JSON value per organization: revenue and units per product category
-- over the delivered orders of its last 30 local days (today included), from
-- the source tables (the rollups do not keep categories). Items are summed per
-- category; each item belongs to one order, so nothing is counted twice.
WITH windows AS (
    SELECT organization_id, today,
           (today - 29)::timestamp AT TIME ZONE tz AS window_start,
           (today + 1)::timestamp AT TIME ZONE tz AS window_end
    FROM dashboard.organization_today(%(as_of)s, %(organization_ids)s::uuid[])
),
mix AS (
    SELECT w.organization_id, p.category,
           COALESCE(sum(oi.line_total), 0) AS revenue,
           COALESCE(sum(oi.quantity), 0) AS units
    FROM windows w
    JOIN orders o ON o.organization_id = w.organization_id AND o.status = 'delivered'
                 AND o.created_at >= w.window_start AND o.created_at < w.window_end
    JOIN order_items oi ON oi.organization_id = o.organization_id AND oi.order_id = o.id
    JOIN products p ON p.organization_id = oi.organization_id AND p.id = oi.product_id
    GROUP BY w.organization_id, p.category
)
SELECT w.organization_id,
       jsonb_build_object(
           'organization_id', w.organization_id,
           'date_from', w.today - 29,
           'date_to', w.today,
           'categories', COALESCE(
               (SELECT jsonb_agg(jsonb_build_object('category', m.category, 'revenue', round(m.revenue, 2),
                                                    'units', m.units) ORDER BY m.category)
                FROM mix m WHERE m.organization_id = w.organization_id),
               '[]'::jsonb),
           'computed_at', dashboard.utc_iso(now())),
       now()
FROM windows w
