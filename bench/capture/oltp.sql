-- pgbench script: what an ERP does all day, one commit each: create an order
-- with three items (one statement per item) and its installation job, mark the
-- order delivered, complete the job. Customers, organizations and a battery
-- product come from bench_oltp_customers (made by bench/change_capture.py).
\set n random(1, :customers)
SELECT customer_id, organization_id, product_id FROM bench_oltp_customers WHERE n = :n \gset
BEGIN;
INSERT INTO orders (id, organization_id, customer_id, status, total_amount, created_at, updated_at) VALUES (gen_random_uuid(), ':organization_id', ':customer_id', 'confirmed', 300, now(), now()) RETURNING id AS order_id \gset
INSERT INTO order_items (id, organization_id, order_id, product_id, quantity, unit_price, line_total) VALUES (gen_random_uuid(), ':organization_id', ':order_id', ':product_id', 1, 100, 100);
INSERT INTO order_items (id, organization_id, order_id, product_id, quantity, unit_price, line_total) VALUES (gen_random_uuid(), ':organization_id', ':order_id', ':product_id', 1, 100, 100);
INSERT INTO order_items (id, organization_id, order_id, product_id, quantity, unit_price, line_total) VALUES (gen_random_uuid(), ':organization_id', ':order_id', ':product_id', 1, 100, 100);
INSERT INTO jobs (id, organization_id, order_id, customer_id, status, scheduled_date, created_at, updated_at) VALUES (gen_random_uuid(), ':organization_id', ':order_id', ':customer_id', 'scheduled', current_date, now(), now()) RETURNING id AS job_id \gset
COMMIT;
UPDATE orders SET status = 'delivered', delivered_at = now(), updated_at = now() WHERE organization_id = ':organization_id' AND id = ':order_id';
UPDATE jobs SET status = 'completed', completed_at = now(), updated_at = now() WHERE organization_id = ':organization_id' AND id = ':job_id';
