"""Charts and analytics computed from the rollups, stored in PostgreSQL and
published to Redis, and the cache warming of the read path."""
