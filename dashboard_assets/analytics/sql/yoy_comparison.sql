-- One JSON value per organization: 1 January to its local today against the
-- same span a year earlier (29 February maps to 28 February), from the rollups.
WITH spans AS (
    SELECT organization_id,
           make_date(extract(year FROM today)::int, 1, 1) AS current_from,
           today AS current_to,
           make_date(extract(year FROM today)::int - 1, 1, 1) AS previous_from,
           (today - interval '1 year')::date AS previous_to
    FROM dashboard.organization_today(%(as_of)s, %(organization_ids)s::uuid[])
)
SELECT s.organization_id,
       jsonb_build_object(
           'organization_id', s.organization_id,
           'current_from', s.current_from,
           'current_to', s.current_to,
           'previous_from', s.previous_from,
           'previous_to', s.previous_to,
           'metrics', jsonb_build_object(
               'revenue', dashboard.comparison(c.revenue, p.revenue, 2),
               'kwh_deployed', dashboard.comparison(c.kwh_deployed, p.kwh_deployed, 3),
               'delivered_orders', dashboard.comparison(c.delivered_orders, p.delivered_orders, 0),
               'warranty_claims', dashboard.comparison(c.warranty_claims, p.warranty_claims, 0),
               'quote_win_rate', dashboard.comparison(
                   c.won_count::numeric / NULLIF(c.closed_opportunities, 0),
                   p.won_count::numeric / NULLIF(p.closed_opportunities, 0), 4),
               'customers', dashboard.comparison(c.customers, p.customers, 0)),
           'computed_at', dashboard.utc_iso(now())),
       now()
FROM spans s
CROSS JOIN LATERAL dashboard.range_totals(s.organization_id, s.current_from, s.current_to) c
CROSS JOIN LATERAL dashboard.range_totals(s.organization_id, s.previous_from, s.previous_to) p
