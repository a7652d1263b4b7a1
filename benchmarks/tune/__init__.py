"""`dnx tune`: the fastest deployment that keeps a latency SLO and an accuracy budget, found by measurement.

See docs/tune.md; the entry point is :func:`dnx.benchmarks.tune.run.tune`.
"""
