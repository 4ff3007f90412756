-- dashboard.daily_pipeline: opportunities by their local created_at day.
WITH day_opportunities AS (
    SELECT op.organization_id, (op.created_at AT TIME ZONE w.tz)::date AS metric_date,
           op.stage, op.value, op.probability,
           op.stage NOT IN ('won', 'lost') AS is_open
    FROM dashboard.organization_windows(%(start_date)s, %(end_date)s, %(organization_ids)s::uuid[]) w
    JOIN opportunities op ON op.organization_id = w.organization_id
                         AND op.created_at >= w.window_start AND op.created_at < w.window_end
                         AND op.created_at >= %(utc_from)s AND op.created_at < %(utc_to)s
),
per_day AS (
    SELECT organization_id, metric_date,
           count(*) FILTER (WHERE stage = 'new') AS new_opportunities,
           count(*) FILTER (WHERE stage = 'qualified') AS qualified_opportunities,
           count(*) FILTER (WHERE stage = 'proposal') AS proposal_opportunities,
           count(*) FILTER (WHERE stage = 'negotiation') AS negotiation_opportunities,
           count(*) FILTER (WHERE stage = 'won') AS won_opportunities,
           count(*) FILTER (WHERE stage = 'lost') AS lost_opportunities,
           sum(value * probability / 100) FILTER (WHERE is_open) AS weighted_pipeline,
           sum(value) FILTER (WHERE is_open) AS total_pipeline,
           count(*) FILTER (WHERE stage IN ('won', 'lost')) AS closed_opportunities,
           sum(value) FILTER (WHERE stage = 'won') AS won_value
    FROM day_opportunities
    GROUP BY organization_id, metric_date
)
SELECT d.organization_id,
       d.metric_date,
       COALESCE(p.new_opportunities, 0) AS new_opportunities,
       COALESCE(p.qualified_opportunities, 0) AS qualified_opportunities,
       COALESCE(p.proposal_opportunities, 0) AS proposal_opportunities,
       COALESCE(p.negotiation_opportunities, 0) AS negotiation_opportunities,
       COALESCE(p.won_opportunities, 0) AS won_opportunities,
       COALESCE(p.lost_opportunities, 0) AS lost_opportunities,
       COALESCE(p.weighted_pipeline, 0) AS weighted_pipeline,
       COALESCE(p.total_pipeline, 0) AS total_pipeline,
       COALESCE(p.closed_opportunities, 0) AS closed_opportunities,
       COALESCE(p.won_opportunities, 0) AS won_count,
       COALESCE(p.won_value, 0) AS won_value,
       COALESCE(p.won_value, 0) / NULLIF(p.won_opportunities, 0) AS avg_won_deal_size,
       now() AS refreshed_at
FROM dashboard.organization_days(%(start_date)s, %(end_date)s, %(organization_ids)s::uuid[]) d
LEFT JOIN per_day p ON p.organization_id = d.organization_id AND p.metric_date = d.metric_date
