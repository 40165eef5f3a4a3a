"""flitfeed's benchmark suite: one module per hot path, each runnable on its own.

``python -m benchmarks.<name> [--quick] [--json PATH]``; ``make bench`` runs all
in full mode (JSON under ``benchmarks/results/``), ``make bench-quick`` in the
CI smoke mode. Shared helpers are in :mod:`benchmarks.common`; results and how
to read them are in BENCHMARKS.md.
"""
