"""Side-by-side benchmark harness: pylb against HAProxy on the same backends and load.

Entry point: `python benchmarks/run.py` (see benchmarks/README.md). This package owns no part of
pylb; it only starts `python -m pylb` as a black box, like any other proxy under test.
"""
