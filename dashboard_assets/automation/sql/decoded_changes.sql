-- Where a sensor tick puts what it decoded, for set-based SQL over it: the
-- distinct old and new versions of the changed rows (the columns that place a
-- change on its days; a table's other columns are NULL) and the changes kept
-- for the activity feed. Temporary, emptied at the end of each transaction.
CREATE TEMP TABLE IF NOT EXISTS decoded_versions (
    source_table     text NOT NULL,
    id               uuid,
    organization_id  uuid,
    order_id         uuid,
    job_id           uuid,
    created_at       timestamptz,
    completed_at     timestamptz
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS decoded_activity (LIKE dashboard.recent_changes) ON COMMIT DELETE ROWS;
