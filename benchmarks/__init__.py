"""Benchmarks: `python -m benchmarks <name>`; every figure is printed beside its same-run floor."""
