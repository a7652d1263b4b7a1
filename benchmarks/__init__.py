"""Latency and parity harness behind `dnx bench`, and the reproducible suite (`make bench`)."""
