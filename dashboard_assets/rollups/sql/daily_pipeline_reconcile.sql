-- Range totals of dashboard.daily_pipeline straight from the source.
WITH range_opportunities AS (
    SELECT op.*
    FROM dashboard.organization_windows(%(start_date)s, %(end_date)s, %(organization_ids)s::uuid[]) w
    JOIN opportunities op ON op.organization_id = w.organization_id
                         AND op.created_at >= w.window_start AND op.created_at < w.window_end
                         AND op.created_at >= %(utc_from)s AND op.created_at < %(utc_to)s
)
SELECT
    (SELECT count(*) FROM dashboard.organization_windows(%(start_date)s, %(end_date)s, %(organization_ids)s::uuid[]))
        * (%(end_date)s::date - %(start_date)s::date + 1) AS rows,
    (SELECT count(*) FROM range_opportunities WHERE stage = 'new') AS new_opportunities,
    (SELECT count(*) FROM range_opportunities WHERE stage = 'qualified') AS qualified_opportunities,
    (SELECT count(*) FROM range_opportunities WHERE stage = 'proposal') AS proposal_opportunities,
    (SELECT count(*) FROM range_opportunities WHERE stage = 'negotiation') AS negotiation_opportunities,
    (SELECT count(*) FROM range_opportunities WHERE stage = 'won') AS won_count,
    (SELECT count(*) FROM range_opportunities WHERE stage = 'lost') AS lost_opportunities,
    (SELECT count(*) FROM range_opportunities WHERE stage IN ('won', 'lost')) AS closed_opportunities,
    (SELECT COALESCE(sum(value * probability / 100), 0) FROM range_opportunities
      WHERE stage NOT IN ('won', 'lost')) AS weighted_pipeline,
    (SELECT COALESCE(sum(value), 0) FROM range_opportunities
      WHERE stage NOT IN ('won', 'lost')) AS total_pipeline,
    (SELECT COALESCE(sum(value), 0) FROM range_opportunities WHERE stage = 'won') AS won_value
