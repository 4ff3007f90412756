-- The project's own objects in the target database: the `dashboard` schema, the
-- rollup tables, the helper functions the refresh SQL shares, and the views
-- under the design document's names. Idempotent: safe to run on every deploy.


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
-- `only_organizations` narrows it to those organizations (a change-driven
-- refresh, the live read path); NULL means every organization.
DROP FUNCTION IF EXISTS dashboard.organization_windows(date, date);
DROP FUNCTION IF EXISTS dashboard.organization_windows(date, date, uuid);
CREATE OR REPLACE FUNCTION dashboard.organization_windows(start_day date, end_day date, only_organizations uuid[] DEFAULT NULL)
RETURNS TABLE (organization_id uuid, tz text, window_start timestamptz, window_end timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT o.id,
           COALESCE(o.timezone, 'Australia/Sydney'),
           start_day::timestamp AT TIME ZONE COALESCE(o.timezone, 'Australia/Sydney'),
           (end_day + 1)::timestamp AT TIME ZONE COALESCE(o.timezone, 'Australia/Sydney')
    FROM organizations o
    WHERE only_organizations IS NULL OR o.id = ANY(only_organizations)
$$;

-- Every (organization, day) of the range: the rollups are dense, so a day
-- with no activity still has its row of zeros.
DROP FUNCTION IF EXISTS dashboard.organization_days(date, date);
DROP FUNCTION IF EXISTS dashboard.organization_days(date, date, uuid);
CREATE OR REPLACE FUNCTION dashboard.organization_days(start_day date, end_day date, only_organizations uuid[] DEFAULT NULL)
RETURNS TABLE (organization_id uuid, metric_date date)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT o.id, d::date
    FROM organizations o
    CROSS JOIN generate_series(start_day, end_day, interval '1 day') AS d
    WHERE only_organizations IS NULL OR o.id = ANY(only_organizations)
$$;

-- Each organization's local date at an instant (now when NULL), for every
-- organization or only those given.
DROP FUNCTION IF EXISTS dashboard.organization_today(timestamptz);
CREATE OR REPLACE FUNCTION dashboard.organization_today(as_of timestamptz, only_organizations uuid[] DEFAULT NULL)
RETURNS TABLE (organization_id uuid, tz text, today date)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT o.id,
           COALESCE(o.timezone, 'Australia/Sydney'),
           (COALESCE(as_of, now()) AT TIME ZONE COALESCE(o.timezone, 'Australia/Sydney'))::date
    FROM organizations o
    WHERE only_organizations IS NULL OR o.id = ANY(only_organizations)
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
-- How many organizations the refresh replaced (a change-driven refresh
-- replaces only the organizations that changed).
ALTER TABLE dashboard.refresh_log ADD COLUMN IF NOT EXISTS organizations integer;
CREATE INDEX IF NOT EXISTS refresh_log_rollup_refreshed_at_idx ON dashboard.refresh_log (rollup, refreshed_at DESC);
-- The run (its root run id, shared by its retries and re-executions) a batch
-- was committed by: a re-executed backfill skips the batches it already did.
ALTER TABLE dashboard.refresh_log ADD COLUMN IF NOT EXISTS resume_key text;
CREATE INDEX IF NOT EXISTS refresh_log_resume_key_idx ON dashboard.refresh_log (resume_key, rollup);

-- The full-metrics figures of one organization over [date_from, date_to],
-- read from the rollups: sums, and distinct customers over the whole range.
CREATE OR REPLACE FUNCTION dashboard.range_totals(organization uuid, date_from date, date_to date)
RETURNS TABLE (revenue numeric, kwh_deployed numeric, delivered_orders bigint, warranty_claims bigint,
               won_count bigint, closed_opportunities bigint, customers bigint)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT m.revenue, m.kwh_deployed, m.delivered_orders, w.warranty_claims,
           p.won_count, p.closed_opportunities, c.customers
    FROM (SELECT COALESCE(sum(revenue), 0) AS revenue, COALESCE(sum(kwh_deployed), 0) AS kwh_deployed,
                 COALESCE(sum(delivered_orders), 0)::bigint AS delivered_orders
          FROM dashboard.daily_metrics
          WHERE organization_id = organization AND metric_date BETWEEN date_from AND date_to) m,
         (SELECT COALESCE(sum(total_claims), 0)::bigint AS warranty_claims
          FROM dashboard.daily_warranty
          WHERE organization_id = organization AND metric_date BETWEEN date_from AND date_to) w,
         (SELECT COALESCE(sum(won_count), 0)::bigint AS won_count,
                 COALESCE(sum(closed_opportunities), 0)::bigint AS closed_opportunities
          FROM dashboard.daily_pipeline
          WHERE organization_id = organization AND metric_date BETWEEN date_from AND date_to) p,
         (SELECT count(DISTINCT customer_id) AS customers
          FROM dashboard.daily_customers
          WHERE organization_id = organization AND metric_date BETWEEN date_from AND date_to) c
$$;

-- ISO-8601 UTC text of an instant, as the JSON values carry it.
CREATE OR REPLACE FUNCTION dashboard.utc_iso(instant timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT to_char(instant AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') $$;

-- One figure of a comparison: both values rounded, and the change in percent
-- from the unrounded ones (NULL when there is nothing to compare with).
CREATE OR REPLACE FUNCTION dashboard.comparison(current_value numeric, previous_value numeric, scale integer)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object(
        'current', round(current_value, scale),
        'previous', round(previous_value, scale),
        'change_percent', round((current_value - previous_value) / NULLIF(previous_value, 0) * 100, 2))
$$;

-- Charts and analytics: one JSON value per organization (the durable truth
-- of what Redis holds), all of the same shape.
CREATE TABLE IF NOT EXISTS dashboard.revenue_trend_12m (organization_id uuid PRIMARY KEY, payload jsonb NOT NULL, computed_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS dashboard.kwh_trend_12m (organization_id uuid PRIMARY KEY, payload jsonb NOT NULL, computed_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS dashboard.yoy_comparison (organization_id uuid PRIMARY KEY, payload jsonb NOT NULL, computed_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS dashboard.product_mix_30d (organization_id uuid PRIMARY KEY, payload jsonb NOT NULL, computed_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS dashboard.conversion_funnel_90d (organization_id uuid PRIMARY KEY, payload jsonb NOT NULL, computed_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS dashboard.target_progress (organization_id uuid PRIMARY KEY, payload jsonb NOT NULL, computed_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS dashboard.customer_lifetime_value (organization_id uuid PRIMARY KEY, payload jsonb NOT NULL, computed_at timestamptz NOT NULL);

-- Customer acquisition per organization and week (weeks start on Monday).
CREATE TABLE IF NOT EXISTS dashboard.weekly_customer_acquisition (
    organization_id  uuid NOT NULL,
    week_start       date NOT NULL,
    spend            numeric(16, 2) NOT NULL,
    new_customers    integer NOT NULL,
    cac              numeric(16, 2),
    refreshed_at     timestamptz NOT NULL,
    PRIMARY KEY (organization_id, week_start)
);
CREATE INDEX IF NOT EXISTS weekly_customer_acquisition_week_start_idx ON dashboard.weekly_customer_acquisition (week_start);

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
