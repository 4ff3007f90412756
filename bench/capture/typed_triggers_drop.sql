-- Removes what typed_triggers.sql installed.
DROP TRIGGER IF EXISTS bench_capture_inserts ON orders;
DROP TRIGGER IF EXISTS bench_capture_updates ON orders;
DROP TRIGGER IF EXISTS bench_capture_deletes ON orders;
DROP TRIGGER IF EXISTS bench_capture_inserts ON order_items;
DROP TRIGGER IF EXISTS bench_capture_updates ON order_items;
DROP TRIGGER IF EXISTS bench_capture_deletes ON order_items;
DROP TRIGGER IF EXISTS bench_capture_inserts ON jobs;
DROP TRIGGER IF EXISTS bench_capture_updates ON jobs;
DROP TRIGGER IF EXISTS bench_capture_deletes ON jobs;
DROP FUNCTION IF EXISTS bench_capture_orders();
DROP FUNCTION IF EXISTS bench_capture_order_items();
DROP FUNCTION IF EXISTS bench_capture_jobs();
DROP TABLE IF EXISTS bench_changed_days;
