"""Schedules, freshness, and the change sensor: nobody runs anything by hand."""
