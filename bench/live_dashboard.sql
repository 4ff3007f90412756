-- The live dashboard query a team writes without pre-aggregation: every
-- figure straight from the source tables on each request, for one
-- organization and range (server-clock days, as in the design document).
SELECT
    (SELECT COALESCE(sum(oi.line_total), 0) FROM orders o
       JOIN order_items oi ON oi.organization_id = o.organization_id AND oi.order_id = o.id
      WHERE o.organization_id = %(org)s AND o.status = 'delivered'
        AND o.created_at >= %(date_from)s AND o.created_at < %(date_to)s::date + 1) AS revenue,
    (SELECT COALESCE(sum(oi.quantity * CASE WHEN p.specifications->>'capacity_kwh' ~ '^[0-9]+(\.[0-9]+)?$'
                                            THEN (p.specifications->>'capacity_kwh')::numeric ELSE 0 END), 0)
       FROM jobs j
       JOIN order_items oi ON oi.organization_id = j.organization_id AND oi.order_id = j.order_id
       JOIN products p ON p.id = oi.product_id AND p.category = 'battery'
      WHERE j.organization_id = %(org)s AND j.status = 'completed'
        AND j.completed_at >= %(date_from)s AND j.completed_at < %(date_to)s::date + 1) AS kwh_deployed,
    (SELECT count(*) FILTER (WHERE stage = 'won')::numeric / NULLIF(count(*) FILTER (WHERE stage IN ('won', 'lost')), 0)
       FROM opportunities WHERE organization_id = %(org)s
        AND created_at >= %(date_from)s AND created_at < %(date_to)s::date + 1) AS quote_win_rate,
    (SELECT count(*) FROM jobs WHERE organization_id = %(org)s AND status IN ('scheduled', 'in_progress'))
        AS active_installations,
    (SELECT count(*) FROM warranty_claims WHERE organization_id = %(org)s
        AND created_at >= %(date_from)s AND created_at < %(date_to)s::date + 1) AS warranty_claims,
    (SELECT COALESCE(sum(value * probability / 100), 0) FROM opportunities
      WHERE organization_id = %(org)s AND stage NOT IN ('won', 'lost')) AS pipeline,
    (SELECT count(DISTINCT customer_id) FROM orders WHERE organization_id = %(org)s
        AND created_at >= %(date_from)s AND created_at < %(date_to)s::date + 1) AS customers,
    (SELECT count(*) FROM orders WHERE organization_id = %(org)s AND status = 'delivered'
        AND created_at >= %(date_from)s AND created_at < %(date_to)s::date + 1) AS delivered_orders
