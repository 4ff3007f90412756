-- One JSON value per organization: delivered revenue per paying customer
-- (customers with at least one delivered order created up to as_of), overall
-- and by acquisition cohort (the local month of the customer's created_at).
-- Items are summed per order, orders per customer, before anything is joined.
WITH delivered_orders AS (
    SELECT o.organization_id, o.id, o.customer_id
    FROM orders o
    WHERE o.status = 'delivered' AND o.created_at <= COALESCE(%(as_of)s::timestamptz, now())
),
order_revenue AS (
    SELECT d.organization_id, d.customer_id, d.id, COALESCE(sum(oi.line_total), 0) AS revenue
    FROM delivered_orders d
    LEFT JOIN order_items oi ON oi.organization_id = d.organization_id AND oi.order_id = d.id
    GROUP BY d.organization_id, d.customer_id, d.id
),
customer_revenue AS (
    SELECT r.organization_id, r.customer_id, sum(r.revenue) AS revenue,
           to_char(c.created_at AT TIME ZONE t.tz, 'YYYY-MM') AS cohort
    FROM order_revenue r
    JOIN customers c ON c.organization_id = r.organization_id AND c.id = r.customer_id
    JOIN dashboard.organization_today(%(as_of)s, %(organization_ids)s::uuid[]) t ON t.organization_id = r.organization_id
    GROUP BY r.organization_id, r.customer_id, c.created_at, t.tz
),
cohorts AS (
    SELECT organization_id, cohort, count(*) AS customers, sum(revenue) AS revenue
    FROM customer_revenue
    GROUP BY organization_id, cohort
)
SELECT t.organization_id,
       jsonb_build_object(
           'organization_id', t.organization_id,
           'customers', COALESCE(sum(c.customers), 0),
           'mean_ltv', round(sum(c.revenue) / NULLIF(sum(c.customers), 0), 2),
           'cohorts', COALESCE(
               jsonb_agg(jsonb_build_object('cohort', c.cohort, 'customers', c.customers,
                                            'revenue', round(c.revenue, 2),
                                            'ltv', round(c.revenue / c.customers, 2))
                         ORDER BY c.cohort) FILTER (WHERE c.cohort IS NOT NULL),
               '[]'::jsonb),
           'computed_at', dashboard.utc_iso(now())),
       now()
FROM dashboard.organization_today(%(as_of)s, %(organization_ids)s::uuid[]) t
LEFT JOIN cohorts c ON c.organization_id = t.organization_id
GROUP BY t.organization_id
