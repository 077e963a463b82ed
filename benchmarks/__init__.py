"""On-demand performance measurements (run as modules: python -m benchmarks.NAME)."""
