"""Benchmarks: ``python -m benchmarks.<name> [--quick] [--json PATH]`` (see BENCHMARKS.md)."""
