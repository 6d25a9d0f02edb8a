"""Benchmarks: Frontdesk's intake, pipeline and worker measured side by side with baselines.

`make bench` (or `python -m bench.run`) runs every scenario on loopback, each bounded in
time, prints a table and writes JSON. See bench/README.md and docs/benchmarks.md.
"""
