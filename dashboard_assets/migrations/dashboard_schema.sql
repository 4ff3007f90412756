-- The project's own objects in the target database: the `dashboard` schema, the
-- rollup tables, the helper functions the refresh SQL shares, and the views
-- under the design document's names. Idempotent: safe to run on every deploy.

CREATE SCHEMA IF NOT EXISTS dashboard;

-- A battery's capacity in kWh: the `capacity_kwh` specification when it is
-- entirely a decimal number, else 0 (missing, JSON null, "13.5kWh", "n/a").
CREATE OR REPLACE FUNCTION dashboard.capacity_kwh(specifications jsonb)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN specifications ->> 'capacity_kwh' ~ '^[0-9]+(\.[0-9]+)?$'
        THEN (specifications ->> 'capacity_kwh')::numeric
        ELSE 0
    END
$$;

-- Each organization's local days [start_day, end_day] as one UTC window
-- [window_start, window_end), so that range scans on (organization_id, ts)
-- indexes read exactly the rows of those days. Inlined by the planner; the
-- queries add constant coarse bounds beside it so that row estimates hold.
CREATE OR REPLACE FUNCTION dashboard.organization_windows(start_day date, end_day date)
RETURNS TABLE (organization_id uuid, tz text, window_start timestamptz, window_end timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT o.id,
           COALESCE(o.timezone, 'Australia/Sydney'),
           start_day::timestamp AT TIME ZONE COALESCE(o.timezone, 'Australia/Sydney'),
           (end_day + 1)::timestamp AT TIME ZONE COALESCE(o.timezone, 'Australia/Sydney')
    FROM organizations o
$$;

-- Every (organization, day) of the range: the rollups are dense, so a day
-- with no activity still has its row of zeros.
CREATE OR REPLACE FUNCTION dashboard.organization_days(start_day date, end_day date)
RETURNS TABLE (organization_id uuid, metric_date date)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT o.id, d::date
    FROM organizations o
    CROSS JOIN generate_series(start_day, end_day, interval '1 day') AS d
$$;

CREATE TABLE IF NOT EXISTS dashboard.daily_metrics (
    organization_id    uuid NOT NULL,
    metric_date        date NOT NULL,
    revenue            numeric(16, 2) NOT NULL,
    kwh_deployed       numeric NOT NULL,
    delivered_orders   integer NOT NULL,
    pending_orders     integer NOT NULL,
    total_order_value  numeric(16, 2) NOT NULL,
    active_customers   integer NOT NULL,
    refreshed_at       timestamptz NOT NULL,
    PRIMARY KEY (organization_id, metric_date)
);

CREATE TABLE IF NOT EXISTS dashboard.daily_customers (
    organization_id  uuid NOT NULL,
    metric_date      date NOT NULL,
    customer_id      uuid NOT NULL,
    PRIMARY KEY (organization_id, metric_date, customer_id)
);

CREATE TABLE IF NOT EXISTS dashboard.daily_pipeline (
    organization_id            uuid NOT NULL,
    metric_date                date NOT NULL,
    new_opportunities          integer NOT NULL,
    qualified_opportunities    integer NOT NULL,
    proposal_opportunities     integer NOT NULL,
    negotiation_opportunities  integer NOT NULL,
    won_opportunities          integer NOT NULL,
    lost_opportunities         integer NOT NULL,
    weighted_pipeline          numeric NOT NULL,
    total_pipeline             numeric(16, 2) NOT NULL,
    closed_opportunities       integer NOT NULL,
    won_count                  integer NOT NULL,
    won_value                  numeric(16, 2) NOT NULL,
    avg_won_deal_size          numeric,
    refreshed_at               timestamptz NOT NULL,
    PRIMARY KEY (organization_id, metric_date)
);

CREATE TABLE IF NOT EXISTS dashboard.daily_warranty (
    organization_id      uuid NOT NULL,
    metric_date          date NOT NULL,
    total_claims         integer NOT NULL,
    pending_claims       integer NOT NULL,
    approved_claims      integer NOT NULL,
    rejected_claims      integer NOT NULL,
    resolved_claims      integer NOT NULL,
    defect_claims        integer NOT NULL,
    damage_claims        integer NOT NULL,
    performance_claims   integer NOT NULL,
    resolved_count       integer NOT NULL,
    resolution_days_sum  numeric NOT NULL,
    avg_resolution_days  numeric,
    refreshed_at         timestamptz NOT NULL,
    PRIMARY KEY (organization_id, metric_date)
);

CREATE TABLE IF NOT EXISTS dashboard.daily_jobs (
    organization_id          uuid NOT NULL,
    metric_date              date NOT NULL,
    total_jobs               integer NOT NULL,
    scheduled_jobs           integer NOT NULL,
    in_progress_jobs         integer NOT NULL,
    completed_jobs           integer NOT NULL,
    cancelled_jobs           integer NOT NULL,
    total_labor_hours        numeric NOT NULL,
    avg_labor_hours_per_job  numeric,
    refreshed_at             timestamptz NOT NULL,
    PRIMARY KEY (organization_id, metric_date)
);

CREATE TABLE IF NOT EXISTS dashboard.current_state (
    organization_id       uuid PRIMARY KEY,
    snapshot_at           timestamptz NOT NULL,
    active_installations  integer NOT NULL,
    open_warranty_claims  integer NOT NULL,
    current_pipeline      numeric NOT NULL,
    active_customers      integer NOT NULL,
    refreshed_at          timestamptz NOT NULL
);

-- Replacing a range of days deletes by metric_date across all organizations.
CREATE INDEX IF NOT EXISTS daily_metrics_metric_date_idx ON dashboard.daily_metrics (metric_date);
CREATE INDEX IF NOT EXISTS daily_customers_metric_date_idx ON dashboard.daily_customers (metric_date);
CREATE INDEX IF NOT EXISTS daily_pipeline_metric_date_idx ON dashboard.daily_pipeline (metric_date);
CREATE INDEX IF NOT EXISTS daily_warranty_metric_date_idx ON dashboard.daily_warranty (metric_date);
CREATE INDEX IF NOT EXISTS daily_jobs_metric_date_idx ON dashboard.daily_jobs (metric_date);

-- One row per refresh: what was replaced, how many rows, how long it took.
CREATE TABLE IF NOT EXISTS dashboard.refresh_log (
    id            bigserial PRIMARY KEY,
    rollup        text NOT NULL,
    start_date    date,
    end_date      date,
    rows_written  bigint NOT NULL,
    seconds       double precision NOT NULL,
    refreshed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS refresh_log_rollup_refreshed_at_idx ON dashboard.refresh_log (rollup, refreshed_at DESC);

-- The design document's names, so existing dashboard SQL keeps working.
CREATE OR REPLACE VIEW dashboard.mv_daily_metrics AS
SELECT organization_id, metric_date, revenue, kwh_deployed, delivered_orders,
       pending_orders, total_order_value, active_customers
FROM dashboard.daily_metrics;

CREATE OR REPLACE VIEW dashboard.mv_daily_pipeline AS
SELECT organization_id, metric_date, new_opportunities, qualified_opportunities,
       proposal_opportunities, negotiation_opportunities, won_opportunities,
       lost_opportunities, weighted_pipeline, total_pipeline, closed_opportunities,
       won_count, COALESCE(avg_won_deal_size, 0) AS avg_won_deal_size
FROM dashboard.daily_pipeline;

CREATE OR REPLACE VIEW dashboard.mv_daily_warranty AS
SELECT organization_id, metric_date, total_claims, pending_claims, approved_claims,
       rejected_claims, resolved_claims, defect_claims, damage_claims,
       performance_claims, avg_resolution_days
FROM dashboard.daily_warranty;

CREATE OR REPLACE VIEW dashboard.mv_daily_jobs AS
SELECT organization_id, metric_date, total_jobs, scheduled_jobs, in_progress_jobs,
       completed_jobs, cancelled_jobs, total_labor_hours,
       COALESCE(avg_labor_hours_per_job, 0) AS avg_labor_hours_per_job
FROM dashboard.daily_jobs;

CREATE OR REPLACE VIEW dashboard.mv_current_state AS
SELECT organization_id, snapshot_at, active_installations, open_warranty_claims,
       current_pipeline, active_customers
FROM dashboard.current_state;
