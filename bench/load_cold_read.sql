-- pgbench script: one cold read, what a dashboard runs on a cache miss: the
-- full metrics of a request drawn at random from bench_load_requests (made by
-- bench/load.py: the seeded mix of organizations and ranges of the other reads).
\set n random(1, :requests)
SELECT dashboard.dashboard_metrics(organization_id, date_from, date_to, as_of) FROM bench_load_requests WHERE n = :n;
