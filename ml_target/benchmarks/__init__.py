"""Benchmarks of the worker against the emulated device (run with `python -m ml_target bench`)."""
