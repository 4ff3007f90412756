"""Daily-partitioned rollup tables and the current-state snapshot."""
