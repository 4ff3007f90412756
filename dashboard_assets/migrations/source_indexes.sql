-- Indexes on the source tables that the refresh and read queries need. Each is
-- built CONCURRENTLY (no write lock on a live database), one statement at a
-- time outside a transaction.

-- The design document's composite indexes that the queries use.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_orders_org_date_status ON orders (organization_id, created_at DESC, status);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_order_items_revenue_calc ON order_items (organization_id, order_id) INCLUDE (line_total, quantity, unit_price, product_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_opportunities_pipeline_calc ON opportunities (organization_id, stage) INCLUDE (value, probability, expected_close_date);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_jobs_org_status ON jobs (organization_id, status);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_warranty_claims_org_status_date ON warranty_claims (organization_id, status, created_at DESC);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_customers_org_status ON customers (organization_id, status);

-- One day of one organization is one contiguous range of each of these.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_opportunities_org_created ON opportunities (organization_id, created_at);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_jobs_org_created ON jobs (organization_id, created_at);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_warranty_claims_org_created ON warranty_claims (organization_id, created_at);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_jobs_org_completed ON jobs (organization_id, completed_at) INCLUDE (order_id) WHERE status = 'completed';
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_jobs_org_order_completed ON jobs (organization_id, order_id) INCLUDE (completed_at) WHERE status = 'completed';
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_job_time_entries_org_job ON job_time_entries (organization_id, job_id) INCLUDE (hours);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_marketing_spend_org_date ON marketing_spend (organization_id, spend_date);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_targets_org_period ON targets (organization_id, period_start);
