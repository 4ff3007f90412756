-- dashboard.dashboard_metrics: the full-metrics JSON of one organization over
-- its local days date_from to date_to, exactly as the read path's Redis value
-- for that organization and range holds it, in one call from any language:
--
--     SELECT dashboard.dashboard_metrics($1::uuid, $2::date, $3::date);
--
-- The days before the organization's today (at as_of) come from the rollups,
-- its today live from the source tables (the refreshes' own SQL, as the
-- *_from_source functions), active installations and the pipeline from the
-- current-state snapshot; customers are distinct over the whole range, and the
-- win rate is a ratio of sums. One statement, so one snapshot.
--
-- Errors (SQLSTATE):
--   22023 invalid_parameter_value: a NULL argument, date_from after date_to,
--         a range outside 2000-01-01 .. one year after as_of, or longer than
--         1,830 days (the limits of the Python read path);
--   P0002 no_data_found: no organization has this id.
CREATE OR REPLACE FUNCTION dashboard.dashboard_metrics(organization uuid, date_from date, date_to date,
                                                       as_of timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql STABLE
-- Its statements are planned once per session, whatever the caller's
-- setting: each reads one organization through an index, so one plan fits
-- every call, and planning the live day's queries on every call (the
-- project's connections force custom plans) costs more than running them.
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    at_instant timestamptz := COALESCE(as_of, now());
    org_today date;
    past_to date;
    past record;
    utc_from timestamptz;
    utc_to timestamptz;
    live_revenue numeric := 0;
    live_kwh numeric := 0;
    live_delivered bigint := 0;
    live_won bigint := 0;
    live_closed bigint := 0;
    live_claims bigint := 0;
    live_customers uuid[] := '{}';
    installations integer;
    pipeline numeric;
    customer_count bigint;
BEGIN
    IF organization IS NULL OR date_from IS NULL OR date_to IS NULL THEN
        RAISE EXCEPTION 'organization, date_from and date_to are required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF date_from > date_to THEN
        RAISE EXCEPTION 'date_from % is after date_to %', date_from, date_to USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF date_from < date '2000-01-01' OR date_to > (at_instant AT TIME ZONE 'UTC')::date + 366 THEN
        RAISE EXCEPTION 'range %..% is outside 2000-01-01..one year from today', date_from, date_to
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF date_to - date_from + 1 > 1830 THEN
        RAISE EXCEPTION 'range %..% is longer than 1830 days', date_from, date_to
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT t.today INTO org_today FROM dashboard.organization_today(at_instant, ARRAY[organization]) t;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no organization %', organization USING ERRCODE = 'no_data_found';
    END IF;

    past_to := least(date_to, org_today - 1);
    SELECT * INTO past FROM dashboard.range_totals(organization, date_from, past_to);
    IF date_from <= org_today AND org_today <= date_to THEN
        -- the UTC bounds the refreshes pass beside the day (rollups.refresh.query_params)
        utc_from := (org_today - 1)::timestamp AT TIME ZONE 'UTC';
        utc_to := (org_today + 2)::timestamp AT TIME ZONE 'UTC';
        SELECT m.revenue, m.kwh_deployed, m.delivered_orders INTO live_revenue, live_kwh, live_delivered
        FROM dashboard.daily_metrics_from_source(org_today, org_today, ARRAY[organization], utc_from, utc_to) m;
        SELECT p.won_count, p.closed_opportunities INTO live_won, live_closed
        FROM dashboard.daily_pipeline_from_source(org_today, org_today, ARRAY[organization], utc_from, utc_to) p;
        SELECT w.total_claims INTO live_claims
        FROM dashboard.daily_warranty_from_source(org_today, org_today, ARRAY[organization], utc_from, utc_to) w;
        SELECT COALESCE(array_agg(c.customer_id), '{}') INTO live_customers
        FROM dashboard.daily_customers_from_source(org_today, org_today, ARRAY[organization], utc_from, utc_to) c;
    END IF;
    SELECT count(DISTINCT customer_id) INTO customer_count
    FROM (SELECT c.customer_id FROM dashboard.daily_customers c
          WHERE c.organization_id = organization AND c.metric_date BETWEEN date_from AND past_to
          UNION ALL
          SELECT unnest(live_customers)) range_customers;
    SELECT s.active_installations, s.current_pipeline INTO installations, pipeline
    FROM dashboard.current_state s WHERE s.organization_id = organization;

    RETURN jsonb_build_object(
        'organization_id', organization,
        'date_from', to_char(date_from, 'YYYY-MM-DD'),
        'date_to', to_char(date_to, 'YYYY-MM-DD'),
        'revenue', round(past.revenue + live_revenue, 2),
        'kwh_deployed', round(past.kwh_deployed + live_kwh, 3),
        'quote_win_rate', round((past.won_count + live_won)::numeric / NULLIF(past.closed_opportunities + live_closed, 0), 4),
        'active_installations', installations,
        'warranty_claims', past.warranty_claims + live_claims,
        'pipeline', round(pipeline, 2),
        'customers', customer_count,
        'delivered_orders', past.delivered_orders + live_delivered,
        'computed_at', dashboard.utc_iso(clock_timestamp()));
END
$$;
