-- The design document's five materialized views, as written there (in a
-- schema of their own), with one change: its `(capacity_kwh)::numeric` cast
-- fails on garbage such as "13.5kWh", so garbage counts 0 here. Everything
-- else, the fan-out joins and the server-clock days included, is as written.
DROP SCHEMA IF EXISTS baseline CASCADE;
CREATE SCHEMA baseline;

CREATE MATERIALIZED VIEW baseline.mv_daily_metrics AS
SELECT
    o.organization_id,
    DATE(o.created_at) as metric_date,
    COALESCE(SUM(CASE WHEN o.status = 'delivered' THEN oi.line_total ELSE 0 END), 0) as revenue,
    COALESCE(SUM(CASE WHEN j.status = 'completed'
        THEN CASE WHEN p.specifications->>'capacity_kwh' ~ '^[0-9]+(\.[0-9]+)?$'
                  THEN (p.specifications->>'capacity_kwh')::numeric ELSE 0 END
        ELSE 0 END), 0) as kwh_deployed,
    COUNT(DISTINCT CASE WHEN o.status = 'delivered' THEN o.id END) as delivered_orders,
    COUNT(DISTINCT CASE WHEN o.status IN ('draft', 'confirmed', 'picking', 'picked', 'shipped') THEN o.id END) as pending_orders,
    COALESCE(SUM(o.total_amount), 0) as total_order_value,
    COUNT(DISTINCT o.customer_id) as active_customers
FROM orders o
LEFT JOIN order_items oi ON o.id = oi.order_id AND o.organization_id = oi.organization_id
LEFT JOIN jobs j ON o.id = j.order_id AND o.organization_id = j.organization_id
LEFT JOIN products p ON oi.product_id = p.id
WHERE o.created_at >= CURRENT_DATE - INTERVAL '2 years'
GROUP BY o.organization_id, DATE(o.created_at);
CREATE UNIQUE INDEX idx_mv_daily_metrics_org_date ON baseline.mv_daily_metrics(organization_id, metric_date);
CREATE INDEX idx_mv_daily_metrics_date_range ON baseline.mv_daily_metrics(metric_date, organization_id);

CREATE MATERIALIZED VIEW baseline.mv_daily_pipeline AS
SELECT
    organization_id,
    DATE(created_at) as metric_date,
    COUNT(*) FILTER (WHERE stage = 'new') as new_opportunities,
    COUNT(*) FILTER (WHERE stage = 'qualified') as qualified_opportunities,
    COUNT(*) FILTER (WHERE stage = 'proposal') as proposal_opportunities,
    COUNT(*) FILTER (WHERE stage = 'negotiation') as negotiation_opportunities,
    COUNT(*) FILTER (WHERE stage = 'won') as won_opportunities,
    COUNT(*) FILTER (WHERE stage = 'lost') as lost_opportunities,
    COALESCE(SUM(value * probability / 100), 0) as weighted_pipeline,
    COALESCE(SUM(value), 0) as total_pipeline,
    COUNT(*) FILTER (WHERE stage IN ('won', 'lost')) as closed_opportunities,
    COUNT(*) FILTER (WHERE stage = 'won') as won_count,
    COALESCE(AVG(value) FILTER (WHERE stage = 'won'), 0) as avg_won_deal_size
FROM opportunities
WHERE created_at >= CURRENT_DATE - INTERVAL '2 years'
GROUP BY organization_id, DATE(created_at);
CREATE UNIQUE INDEX idx_mv_daily_pipeline_org_date ON baseline.mv_daily_pipeline(organization_id, metric_date);

CREATE MATERIALIZED VIEW baseline.mv_daily_warranty AS
SELECT
    wc.organization_id,
    DATE(wc.created_at) as metric_date,
    COUNT(*) as total_claims,
    COUNT(*) FILTER (WHERE wc.status = 'pending') as pending_claims,
    COUNT(*) FILTER (WHERE wc.status = 'approved') as approved_claims,
    COUNT(*) FILTER (WHERE wc.status = 'rejected') as rejected_claims,
    COUNT(*) FILTER (WHERE wc.status = 'resolved') as resolved_claims,
    COUNT(*) FILTER (WHERE wc.claim_type = 'defect') as defect_claims,
    COUNT(*) FILTER (WHERE wc.claim_type = 'damage') as damage_claims,
    COUNT(*) FILTER (WHERE wc.claim_type = 'performance') as performance_claims,
    AVG(EXTRACT(EPOCH FROM (wc.resolved_at - wc.created_at)) / 86400)
        FILTER (WHERE wc.resolved_at IS NOT NULL) as avg_resolution_days
FROM warranty_claims wc
WHERE wc.created_at >= CURRENT_DATE - INTERVAL '2 years'
GROUP BY wc.organization_id, DATE(wc.created_at);
CREATE UNIQUE INDEX idx_mv_daily_warranty_org_date ON baseline.mv_daily_warranty(organization_id, metric_date);

CREATE MATERIALIZED VIEW baseline.mv_daily_jobs AS
SELECT
    j.organization_id,
    DATE(j.created_at) as metric_date,
    COUNT(*) as total_jobs,
    COUNT(*) FILTER (WHERE j.status = 'scheduled') as scheduled_jobs,
    COUNT(*) FILTER (WHERE j.status = 'in_progress') as in_progress_jobs,
    COUNT(*) FILTER (WHERE j.status = 'completed') as completed_jobs,
    COUNT(*) FILTER (WHERE j.status = 'cancelled') as cancelled_jobs,
    COALESCE(SUM(jte.hours), 0) as total_labor_hours,
    COALESCE(AVG(jte.hours), 0) as avg_labor_hours_per_job
FROM jobs j
LEFT JOIN job_time_entries jte ON j.id = jte.job_id AND j.organization_id = jte.organization_id
WHERE j.created_at >= CURRENT_DATE - INTERVAL '2 years'
GROUP BY j.organization_id, DATE(j.created_at);
CREATE UNIQUE INDEX idx_mv_daily_jobs_org_date ON baseline.mv_daily_jobs(organization_id, metric_date);

CREATE MATERIALIZED VIEW baseline.mv_current_state AS
SELECT
    organization_id,
    NOW() as snapshot_at,
    (SELECT COUNT(*) FROM jobs
     WHERE organization_id = o.organization_id
     AND status IN ('in_progress', 'scheduled')) as active_installations,
    (SELECT COUNT(*) FROM warranty_claims
     WHERE organization_id = o.organization_id
     AND status = 'pending') as open_warranty_claims,
    (SELECT COALESCE(SUM(value * probability / 100), 0) FROM opportunities
     WHERE organization_id = o.organization_id
     AND stage NOT IN ('won', 'lost')) as current_pipeline,
    (SELECT COUNT(DISTINCT id) FROM customers
     WHERE organization_id = o.organization_id
     AND status = 'active') as active_customers
FROM (SELECT id AS organization_id FROM organizations) o;
CREATE UNIQUE INDEX idx_mv_current_state_org ON baseline.mv_current_state(organization_id);
