"""Benchmarks of the pipeline on generated data (`make bench`)."""
